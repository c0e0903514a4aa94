"""One psycopg connection, used from trio through one worker thread at a time.

psycopg's async API runs on asyncio only, so the remote uses the synchronous API on worker
threads (design/replication.md §2.4). A ``CapacityLimiter(1)`` per connection means only one
thread ever touches the connection, even after a read was abandoned: trio releases the limiter
only when the abandoned thread has really finished.

- **Reads** run under the caller's deadline with ``abandon_on_cancel=True``. When the caller is
  cancelled mid-query, the server query is cancelled with ``conn.cancel_safe()``, awaited
  inside a *shielded* scope (awaited in the already-cancelled scope it would raise
  ``Cancelled`` at once and never be sent) and on trio's *default* limiter (on the
  connection's own it would wait for the very query it is meant to cancel). As a backstop each
  read transaction carries ``statement_timeout`` = the caller's remaining time + a slack.
- **Writes** are never abandoned: a write handed to PostgreSQL commits or rolls back before
  the call returns; the connection's ``statement_timeout`` bounds it.

A connection that broke (server restart, network) is dropped and the next call reconnects;
a call that finds its reused connection dead is retried once on a new one.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import psycopg
import trio
from psycopg.pq import TransactionStatus

from ._pg_errors import classify

T = TypeVar("T")
log = logging.getLogger("triomem.remotes.postgres")

Connection = psycopg.Connection[Any]


@attrs.define(eq=False)
class _Job:
    """Progress of one call, shared with its thread (single bool stores and loads)."""

    started: bool = False
    finished: bool = False
    abandoned: bool = False


class _Abandoned(Exception):
    """The caller gave up before the thread reached the server; nothing was sent."""


@attrs.define(eq=False)
class PgWorker:
    """Owns one psycopg connection (opened lazily by ``open_connection``, on the thread)."""

    name: str
    open_connection: Callable[[], Connection]
    read_slack: float = 1.0
    cancel_timeout: float = 0.5
    close_timeout: float = 2.0
    _conn: Connection | None = None
    _limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(1))
    _closed: bool = False

    @property
    def busy(self) -> bool:
        return self._limiter.borrowed_tokens > 0

    async def read(self, fn: Callable[[Connection], T], doing: str) -> T:
        """Run ``fn(conn)`` in a transaction on the worker thread and return its result.

        Raises the typed remote errors (``doing`` names the operation in their message).
        Cancellation: the thread is abandoned, the server query is cancelled (shielded, at
        most ``cancel_timeout`` seconds), and ``Cancelled`` propagates.
        """
        self._check_open()
        job = _Job()
        timeout_ms = self._server_timeout_ms()
        try:
            return await trio.to_thread.run_sync(
                functools.partial(self._run, fn, job, doing, read=True, timeout_ms=timeout_ms),
                limiter=self._limiter, abandon_on_cancel=True)
        except trio.Cancelled:
            job.abandoned = True
            # Only a call whose thread is on the connection may cancel: a call still waiting
            # for the limiter would cancel another caller's query instead. (A cancel sent just
            # as our thread finishes can still reach the next caller's query: it then fails
            # with a transient error, the price of PostgreSQL's out-of-band cancel.)
            if job.started and not job.finished:
                with trio.CancelScope(shield=True):
                    await self._cancel_server_query()
            raise

    async def write(self, fn: Callable[[Connection], T], doing: str) -> T:
        """Run ``fn(conn)`` on the worker thread to completion and return its result; ``fn``
        manages its own transaction.

        Raises the typed remote errors. Cancellation while waiting for the connection: nothing
        is done. Once running it is not abandoned: it commits or rolls back, then the
        cancellation is delivered at the caller's next checkpoint.
        """
        self._check_open()
        job = _Job()
        return await trio.to_thread.run_sync(
            functools.partial(self._run, fn, job, doing, read=False), limiter=self._limiter)

    async def aclose(self) -> None:
        """Close the connection; later calls raise ``trio.ClosedResourceError``.

        Waits up to ``close_timeout`` seconds for a call still running (or abandoned) on the
        connection; past that, that call's thread closes the connection when it ends. Not
        interrupted by cancellation (shielded, and bounded by that timeout).
        """
        self._closed = True
        with trio.CancelScope(shield=True), trio.move_on_after(self.close_timeout):
            await trio.to_thread.run_sync(self._close_connection, limiter=self._limiter,
                                          abandon_on_cancel=True)

    # -- trio side ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError(f"{self.name}: the remote was closed")

    def _server_timeout_ms(self) -> int | None:
        deadline = trio.current_effective_deadline()
        if math.isinf(deadline):
            return None
        return max(1, math.ceil((deadline - trio.current_time() + self.read_slack) * 1000))

    async def _cancel_server_query(self) -> None:
        conn = self._conn
        if conn is None or conn.closed:
            return
        with trio.move_on_after(self.cancel_timeout):
            try:
                await trio.to_thread.run_sync(
                    functools.partial(conn.cancel_safe, timeout=self.cancel_timeout),
                    abandon_on_cancel=True)  # the default limiter, on purpose
            except psycopg.Error as exc:
                log.debug("%s: cancel request failed: %s", self.name, exc)

    # -- worker thread side ---------------------------------------------------------------

    def _run(self, fn: Callable[[Connection], T], job: _Job, doing: str, *, read: bool,
             timeout_ms: int | None = None) -> T:
        job.started = True
        try:
            # A reused connection may have died while idle (server restart, a proxy's idle
            # timeout). The call is retried once on a new connection: a read has no side
            # effects, and a write is idempotent (if it did commit before the link broke, the
            # retry finds the same versions there and reports them applied).
            for attempt in (1, 2):
                conn, fresh = self._connection(doing)
                try:
                    if not read:
                        return fn(conn)
                    with conn.transaction():
                        if timeout_ms is not None:
                            conn.execute("SELECT set_config('statement_timeout', %s, true)",
                                         (str(timeout_ms),))
                        if job.abandoned:
                            raise _Abandoned
                        return fn(conn)
                except psycopg.Error as exc:
                    self._drop_if_unusable()
                    if attempt == 1 and not fresh and conn.broken and not job.abandoned:
                        log.debug("%s: stale connection, reconnecting: %s", self.name, exc)
                        continue
                    raise classify(exc, doing) from exc
            raise AssertionError("unreachable: the second attempt returns or raises")
        finally:
            job.finished = True
            if self._closed:  # closed while this call ran: aclose may not have waited
                self._close_connection()

    def _connection(self, doing: str) -> tuple[Connection, bool]:
        """The open connection, and whether it was opened just now."""
        self._drop_if_unusable()
        if self._conn is not None:
            return self._conn, False
        try:
            self._conn = self.open_connection()
        except psycopg.Error as exc:
            raise classify(exc, f"{doing}: connecting") from exc
        log.debug("%s: connected", self.name)
        return self._conn, True

    def _drop_if_unusable(self) -> None:
        conn = self._conn
        if conn is None:
            return
        if conn.closed or conn.broken or conn.info.transaction_status != TransactionStatus.IDLE:
            self._conn = None
            with contextlib.suppress(psycopg.Error):  # already gone: nothing left to close
                conn.close()

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
