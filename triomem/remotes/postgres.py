"""``PostgresRemote``: the replication contract over PostgreSQL with pgvector.

Usage::

    remote = await PostgresRemote.connect("postgresql://user:pw@db.example/triomem",
                                          dim=384, model="minilm-l6-v2")
    try:
        info = await remote.handshake(DeviceInfo(origin, wall_ms()))
        results = await remote.push("personal:ann", versions)
        page = await remote.pull("personal:ann", after_seq=0, limit=500)
        with trio.move_on_after(0.2):
            hits = await remote.search("personal:ann", "port of the db", vector, k=10)
    finally:
        await remote.aclose()

**Embedding dimension.** ``dim`` and ``model`` are this device's embedder. The first client to
reach an empty database creates the schema, and its ``dim`` / ``model`` become the remote's
for good (``vector(dim)`` column, recorded in ``triomem_schema``). A client whose embedder
differs still replicates everything: its vectors are simply not stored, and its searches use
only the full-text leg. ``remote.layout`` tells which model the remote indexes.

**Connections.** One writer connection (handshake, push, schema) and ``read_connections``
reader connections (pull, search), each owned by a ``PgWorker``: one thread at a time, reads
abandoned and cancelled server-side at the caller's deadline, writes never abandoned.
Connections open lazily and reopen after a failure, so a remote built while the server is
down starts working when it comes back; ``connect`` opens the writer eagerly to fail fast.

Every method raises only the typed errors of ``triomem.actors._remote`` (psycopg errors are
mapped by SQLSTATE class: 08/40/53/57 and timeouts transient, 28 auth, 22/23 permanent), plus
``ValueError`` for arguments that are a caller's bug and ``trio.ClosedResourceError`` after
``aclose``. Credentials are never shown: ``repr`` and messages use the masked DSN.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import psycopg
import trio
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from triomem.actors._remote import (
    ClockSkew,
    DeviceInfo,
    MemoryVersion,
    PullPage,
    PushResult,
    RemoteHit,
    RemoteInfo,
    UpgradeNeeded,
)

from . import _pg_sql
from ._pg_errors import check_url, mask_dsn
from ._pg_schema import Layout, ensure_schema
from ._pg_sql import SearchParams
from ._pg_vector import register_vector
from ._pg_worker import Connection, PgWorker


@attrs.frozen
class PgSettings:
    """How to reach the remote and how long to wait. ``dsn`` is a ``postgresql://`` URL."""

    dsn: str = attrs.field(validator=lambda _s, _a, v: check_url(v), repr=mask_dsn)
    dim: int = attrs.field(validator=attrs.validators.gt(0))
    model: str | None = None
    application_name: str = "triomem"
    connect_timeout_s: int = 5  # libpq takes whole seconds
    # Bounds every statement on the connections, writes included (they are never abandoned).
    statement_timeout_s: float = 10.0
    # A session stuck inside a transaction (a frozen client) would hold its space's counter
    # lock and stall every pusher of that space: the server ends it after this long.
    idle_in_transaction_timeout_s: float = 30.0
    read_connections: int = attrs.field(default=2, validator=attrs.validators.ge(1))
    read_slack_s: float = 1.0  # server-side read timeout = caller's remaining time + this
    cancel_timeout_s: float = 0.5  # how long a cancelled read waits for the cancel request
    max_skew_s: float = 300.0
    search: SearchParams = SearchParams()
    # Test seam, called on the writer's thread inside a push transaction just before commit.
    before_commit: Callable[[str], None] | None = attrs.field(default=None, repr=False)

    def conninfo(self) -> str:
        """The libpq connection string (it may hold the password: never log it)."""
        params: dict[str, Any] = conninfo_to_dict(self.dsn)
        params.setdefault("application_name", self.application_name)
        params.setdefault("connect_timeout", self.connect_timeout_s)
        # TCP keepalives: a silently dead link is noticed in about a minute, not hours.
        for key, value in (("keepalives", 1), ("keepalives_idle", 30),
                           ("keepalives_interval", 10), ("keepalives_count", 3)):
            params.setdefault(key, value)
        ours = (f"-c statement_timeout={int(self.statement_timeout_s * 1000)} "
                f"-c idle_in_transaction_session_timeout="
                f"{int(self.idle_in_transaction_timeout_s * 1000)}")
        params["options"] = f"{params['options']} {ours}" if params.get("options") else ours
        return make_conninfo("", **params)


@attrs.define(eq=False, repr=False)
class PostgresRemote:
    """A ``RemoteBackend`` on PostgreSQL + pgvector. Build with ``connect`` (or the
    constructor, which does no I/O). Safe to share between tasks."""

    settings: PgSettings
    _writer: PgWorker = attrs.field(init=False)
    _readers: tuple[PgWorker, ...] = attrs.field(init=False)
    _layout: Layout | None = attrs.field(init=False, default=None)
    _layout_lock: trio.Lock = attrs.field(init=False, factory=trio.Lock)
    _next_reader: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        s = self.settings
        self._writer = PgWorker("postgres writer", self._open_connection,
                                s.read_slack_s, s.cancel_timeout_s)
        self._readers = tuple(PgWorker(f"postgres reader {i}", self._open_connection,
                                       s.read_slack_s, s.cancel_timeout_s)
                              for i in range(s.read_connections))

    @classmethod
    async def connect(cls, dsn: str, *, dim: int, model: str | None = None,
                      **options: Any) -> PostgresRemote:
        """A remote for ``dsn`` with its writer connected and the schema in place (created
        with ``dim`` / ``model`` if the database has none). ``options`` are ``PgSettings``
        fields. Raises the typed remote errors, ``ValueError`` for a DSN that is not a
        ``postgresql://`` URL. Cancellation: the schema step (a write) finishes first."""
        remote = cls(PgSettings(dsn, dim, model, **options))
        try:
            await remote._ensure_layout()
        except BaseException:
            await remote.aclose()  # shielded inside
            raise
        return remote

    def __repr__(self) -> str:
        return (f"PostgresRemote({mask_dsn(self.settings.dsn)!r}, dim={self.settings.dim}, "
                f"model={self.settings.model!r})")

    @property
    def layout(self) -> Layout | None:
        """The remote's schema row as last read (None before the first call)."""
        return self._layout

    async def __aenter__(self) -> PostgresRemote:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- the RemoteBackend contract ----------------------------------------------------------

    async def handshake(self, device: DeviceInfo) -> RemoteInfo:
        """Check protocol and clock, record the device as seen, and return the remote's info.

        Raises ``UpgradeNeeded`` when the remote needs a newer protocol than
        ``device.protocol_version``, ``ClockSkew`` when ``device.wall_ms`` is more than
        ``max_skew_s`` ahead of the server's ``now()``, or another typed remote error. A
        write: not abandoned once running.
        """
        await self._ensure_layout()
        info = await self._writer.write(
            functools.partial(_pg_sql.handshake, device=device), "handshake")
        if info.min_protocol > device.protocol_version:
            raise UpgradeNeeded(
                f"the remote needs protocol {info.min_protocol} or newer; this triomem speaks "
                f"{device.protocol_version}: upgrade triomem to sync with it")
        ahead_ms = device.wall_ms - info.server_wall_ms
        if ahead_ms > self.settings.max_skew_s * 1000:
            raise ClockSkew(
                f"this device's clock is {ahead_ms / 1000:.0f}s ahead of the remote's (limit "
                f"{self.settings.max_skew_s:.0f}s): fix the clock; pushing is refused until then")
        return info

    async def push(self, space: str, versions: Sequence[MemoryVersion]
                   ) -> Sequence[PushResult]:
        """Apply ``versions`` (all of ``space``) in one transaction; one result per version.

        ``applied``: the remote now holds that version (including when it already did, so a
        retry after a lost ack is ``applied`` again and changes nothing); ``superseded``: it
        holds a newer one. Raises ``ValueError`` if a version is of another space, else the
        typed remote errors (nothing of the batch is applied then). A write: once running it
        commits or rolls back whole, even if the caller is cancelled.
        """
        wrong = [v.id for v in versions if v.space != space]
        if wrong:
            raise ValueError(f"versions of another space than {space!r}: {wrong[:5]}")
        if not versions:
            return []
        layout = await self._ensure_layout()
        batch = tuple(versions)
        return await self._writer.write(
            lambda conn: _pg_sql.push_batch(conn, layout, space, batch,
                                            self.settings.before_commit), "push")

    async def pull(self, space: str, after_seq: int, limit: int) -> PullPage:
        """At most ``limit`` versions of ``space`` after cursor ``after_seq``, in change order.
        The cursor never skips a version that commits later (pushers of a space are
        serialised). A read: under the caller's deadline; cancelled, it gives up at once and
        the server query is cancelled. Raises the typed remote errors."""
        if limit < 1:
            raise ValueError("limit must be at least 1")
        await self._ensure_layout()
        return await self._reader().read(
            functools.partial(_pg_sql.pull_page, space=space, after_seq=after_seq,
                              limit=limit), "pull")

    async def search(self, space: str | None, text: str, vector: bytes | None, k: int
                     ) -> Sequence[RemoteHit]:
        """Hybrid search: HNSW cosine top-n (vectors of this device's model only) and
        full-text top-n, fused by reciprocal rank (k=60); ``space=None`` searches every
        space. A hit's score is its cosine similarity when the vector leg found it, else its
        lexical strength in [0, 1); hits carry no vector. A read: cancelled at the caller's
        deadline, server query included. Raises the typed remote errors."""
        layout = await self._ensure_layout()
        model, params = self.settings.model, self.settings.search
        return await self._reader().read(
            lambda conn: _pg_sql.search(conn, layout, space, text, vector, k, model, params),
            "search")

    async def aclose(self) -> None:
        """Close every connection; later calls raise ``trio.ClosedResourceError``. Waits a
        little (``close_timeout``) for calls still running; a call outliving that closes its
        connection when it ends. Closes even when cancelled (then ``Cancelled`` follows)."""
        async with trio.open_nursery() as nursery:
            for worker in (self._writer, *self._readers):
                nursery.start_soon(worker.aclose)

    # -- internals -------------------------------------------------------------------------

    def _open_connection(self) -> Connection:
        # On a worker thread. Registering ``vector`` is a no-op until the schema step has
        # installed the extension (it registers it on the writer itself).
        conn = psycopg.connect(self.settings.conninfo(), autocommit=True)
        # Never server-side prepared statements: after five executions PostgreSQL may switch
        # the search to a generic plan chosen without statistics (right after a catch-up) and
        # keep it for the connection's life (measured 120-380 ms instead of 30 ms).
        conn.prepare_threshold = None
        try:
            register_vector(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _ensure_layout(self) -> Layout:
        if self._layout is None:
            async with self._layout_lock:
                if self._layout is None:
                    s = self.settings
                    self._layout = await self._writer.write(
                        functools.partial(ensure_schema, dim=s.dim, model=s.model), "schema")
        return self._layout

    def _reader(self) -> PgWorker:
        for worker in self._readers:
            if not worker.busy:
                return worker
        self._next_reader = (self._next_reader + 1) % len(self._readers)
        return self._readers[self._next_reader]
