"""Write operations as plain synchronous functions on an ``apsw.Connection``.

Each write request knows how to apply itself inside a transaction the store actor opened. The
memories row, its tags, its FTS5 row and its vector change together or not at all, so the two
indexes never drift from the table.
"""

from __future__ import annotations

import json
from typing import Any

import apsw
import attrs

from ._db import read_meta, rows, scalar
from ._errors import DuplicateContent, EmbedderMismatch, NotFound
from ._sql_read import MEMORY_COLUMNS, fetch_one
from ._stamps import Hlc, UuidV7Source
from ._values import Memory, Remembered, utc_from_ms


@attrs.define(eq=False)
class WriteContext:
    """Per-transaction state: the HLC, this file's origin, and the active vector table.

    Loaded under the write lock at the start of each batch (another process may have moved the
    clock or re-embedded the database since the last batch) and saved before COMMIT.
    """

    conn: apsw.Connection
    origin: str
    hlc: Hlc
    now_ms: int
    embedder: str
    vec_table: str
    ids: UuidV7Source
    change: int
    # index rows and outbox entries queued by this transaction's writes, for ``flush``
    _outbox: dict[str, int] = attrs.field(factory=dict)
    _tags: list[tuple[str, int]] = attrs.field(factory=list)
    _fts: list[tuple[int, str, str]] = attrs.field(factory=list)
    _vectors: list[tuple[int, bytes]] = attrs.field(factory=list)

    @classmethod
    def load(
        cls, conn: apsw.Connection, *, embedder: str, now_ms: int, ids: UuidV7Source
    ) -> WriteContext:
        meta = read_meta(conn)
        stored = meta.get("embedder")
        if stored is not None and stored != embedder:
            raise EmbedderMismatch(stored, embedder)
        return cls(
            conn=conn, origin=meta["origin"], hlc=Hlc.unpack(int(meta["hlc"])),
            now_ms=now_ms, embedder=embedder, vec_table=meta.get("vec_table", ""), ids=ids,
            change=int(meta["change"]),
        )

    def stamp(self) -> int:
        self.hlc = self.hlc.tick(self.now_ms)
        return self.hlc.pack()

    def next_change(self) -> int:
        self.change += 1
        return self.change

    def local_change(self, memory_id: str) -> int:
        """A change number for a write made here, queued for replication in this same
        transaction (coalesced: one outbox row per memory, holding its latest change)."""
        change = self.next_change()
        self._outbox[memory_id] = change
        return change

    def index(self, seq: int, content: str, tags: tuple[str, ...], vector: bytes | None
              ) -> None:
        """Queue a memory's tag, FTS5 and vector rows for ``flush``."""
        self._tags.extend((tag, seq) for tag in tags)
        self._fts.append((seq, content, " ".join(tags)))
        if vector is not None:
            self._vectors.append((seq, vector))

    def flush(self) -> None:
        """Write the index rows and outbox entries queued since the last flush: one
        ``executemany`` per table and batch instead of four or five statements per write
        (the store's writes about 20% faster, design/performance.md).

        Runs before anything that deletes index rows (``_unindex``), after each write when
        writes have savepoints (so a failure stays with its write), and before COMMIT.
        """
        outbox, tags, fts, vectors = list(self._outbox.items()), self._tags, self._fts, \
            self._vectors
        self.discard()  # taken first: a failed statement's rows are not written again later
        conn = self.conn
        if outbox:
            conn.executemany(
                "INSERT INTO sync_outbox(memory_id, change) VALUES(?, ?) ON CONFLICT(memory_id) "
                "DO UPDATE SET change = excluded.change, attempts = 0, last_error = NULL",
                outbox)
        if tags:
            conn.executemany("INSERT INTO memory_tags(tag, seq) VALUES(?, ?)", tags)
        if fts:
            conn.executemany("INSERT INTO memory_fts(rowid, content, tags) VALUES(?, ?, ?)", fts)
        if vectors:
            conn.executemany(f"INSERT INTO {self.vec_table}(rowid, embedding) VALUES(?, ?)",
                             vectors)

    def discard(self) -> None:
        """Drop what is queued: the write that queued it was rolled back."""
        self._outbox, self._tags, self._fts, self._vectors = {}, [], [], []

    def save(self) -> None:
        self.flush()
        self.conn.executemany("UPDATE meta SET value = ? WHERE key = ?",
                              [(str(self.hlc.pack()), "hlc"), (str(self.change), "change")])


def _unindex(ctx: WriteContext, seq: int, *, vector: bool) -> None:
    ctx.flush()
    conn = ctx.conn
    conn.execute("DELETE FROM memory_tags WHERE seq = ?", (seq,))
    conn.execute("DELETE FROM memory_fts WHERE rowid = ?", (seq,))
    if vector and ctx.vec_table:
        # vec0 keeps deleted vectors' bytes in its chunk blobs; zero them first so a forgotten
        # memory's embedding is really gone, not just unreachable.
        dim = rows(conn,
            f"SELECT vec_length(embedding) FROM {ctx.vec_table} WHERE rowid = ?", (seq,)
        )
        if dim:
            zeros = bytes(4 * dim[0][0])
            conn.execute(f"UPDATE {ctx.vec_table} SET embedding = ? WHERE rowid = ?", (zeros, seq))
            conn.execute(f"DELETE FROM {ctx.vec_table} WHERE rowid = ?", (seq,))


def _live_row(conn: apsw.Connection, memory_id: str) -> tuple[Any, ...]:
    row = rows(conn,
        "SELECT seq, space, content, content_hash, type, tags, metadata "
        "FROM memories WHERE id = ? AND deleted_at IS NULL",
        (memory_id,),
    )
    if not row:
        raise NotFound(memory_id)
    return tuple(row[0])


def _memory_by_seq(conn: apsw.Connection, seq: int) -> Memory:
    memory = fetch_one(conn, "seq = ?", (seq,))
    assert memory is not None, "row written in this transaction must be readable"
    return memory


@attrs.frozen
class PutMemory:
    """Create a memory, unless its idempotency key or exact content already exists."""

    space: str
    content: str
    content_hash: str
    type: str
    tags: tuple[str, ...]
    metadata_json: str
    vector: bytes
    idempotency_key: str | None = None

    def with_vector(self, vector: bytes) -> PutMemory:
        """This write with ``vector`` (built directly: ``attrs.evolve`` costs three times as
        much, on the trio thread, for every write)."""
        return PutMemory(space=self.space, content=self.content, content_hash=self.content_hash,
                         type=self.type, tags=self.tags, metadata_json=self.metadata_json,
                         vector=vector, idempotency_key=self.idempotency_key)

    def apply(self, ctx: WriteContext) -> Remembered:
        conn = ctx.conn
        if self.idempotency_key is not None:
            row = rows(conn,
                "SELECT id, deleted_at FROM memories WHERE idempotency_key = ?",
                (self.idempotency_key,),
            )
            if row:
                if row[0][1] is not None:
                    raise NotFound(row[0][0])  # made by this key, since forgotten
                existing = fetch_one(conn, "id = ?", (row[0][0],))
                assert existing is not None
                return Remembered(existing, created=False)
        existing = fetch_one(
            conn, "space = ? AND content_hash = ? AND deleted_at IS NULL",
            (self.space, self.content_hash),
        )
        if existing is not None:
            return Remembered(existing, created=False)
        now, hlc = ctx.now_ms, ctx.stamp()
        memory_id = ctx.ids.next(now)
        seq: int = scalar(
            conn,
            "INSERT INTO memories(id, space, content, content_hash, type, tags, metadata, "
            "created_at, updated_at, hlc, origin, idempotency_key, change) "
            "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING seq",
            (memory_id, self.space, self.content, self.content_hash, self.type,
             json.dumps(list(self.tags), ensure_ascii=False), self.metadata_json, now, now, hlc,
             ctx.origin, self.idempotency_key, ctx.local_change(memory_id)),
        )
        ctx.index(seq, self.content, self.tags, self.vector)
        # Built from what was just bound, not read back: the table is STRICT, so a read
        # returns exactly these values (tests/engine compare the two); the readback was about
        # a fifth of the store's Python time per write (design/performance.md).
        memory = Memory(id=memory_id, space=self.space, content=self.content, type=self.type,
                        tags=self.tags, metadata=json.loads(self.metadata_json),
                        created_at=utc_from_ms(now), updated_at=utc_from_ms(now),
                        version=hlc, origin=ctx.origin, content_hash=self.content_hash)
        return Remembered(memory, created=True)


@attrs.frozen
class UpdateMemory:
    """Change some fields of a live memory; ``None`` leaves a field as it is.

    New content must come with its hash and vector (the engine embeds before sending).
    """

    id: str
    content: str | None = None
    content_hash: str | None = None
    vector: bytes | None = None
    type: str | None = None
    tags: tuple[str, ...] | None = None
    metadata_json: str | None = None

    def with_vector(self, vector: bytes) -> UpdateMemory:
        return attrs.evolve(self, vector=vector)

    def apply(self, ctx: WriteContext) -> Memory:
        conn = ctx.conn
        seq, space, content, chash, type_, tags_json, metadata = _live_row(conn, self.id)
        tags: tuple[str, ...] = tuple(json.loads(tags_json))
        new_content = content if self.content is None else self.content
        new_hash = chash if self.content_hash is None else self.content_hash
        new_tags = tags if self.tags is None else self.tags
        if new_hash != chash:
            clash = rows(conn,
                "SELECT id FROM memories WHERE space = ? AND content_hash = ? "
                "AND deleted_at IS NULL AND seq != ?",
                (space, new_hash, seq),
            )
            if clash:
                raise DuplicateContent(clash[0][0])
        conn.execute(
            "UPDATE memories SET content = ?, content_hash = ?, type = ?, tags = ?, "
            "metadata = ?, updated_at = ?, hlc = ?, origin = ?, change = ? WHERE seq = ?",
            (new_content, new_hash, self.type or type_,
             json.dumps(list(new_tags), ensure_ascii=False),
             metadata if self.metadata_json is None else self.metadata_json,
             ctx.now_ms, ctx.stamp(), ctx.origin, ctx.local_change(self.id), seq),
        )
        if new_hash != chash or new_tags != tags:
            vector_changes = self.vector is not None and new_hash != chash
            _unindex(ctx, seq, vector=vector_changes)
            ctx.index(seq, new_content, new_tags, self.vector if vector_changes else None)
        return _memory_by_seq(conn, seq)


@attrs.frozen
class ForgetMemory:
    """Tombstone a memory: content, tags, metadata and vector are erased; id and version stay.

    Forgetting an already forgotten memory changes nothing and answers False.
    """

    id: str

    def apply(self, ctx: WriteContext) -> bool:
        conn = ctx.conn
        row = rows(conn,
            "SELECT seq, deleted_at FROM memories WHERE id = ?", (self.id,)
        )
        if not row:
            raise NotFound(self.id)
        seq, deleted_at = row[0]
        if deleted_at is not None:
            return False
        _unindex(ctx, seq, vector=True)
        conn.execute(
            "UPDATE memories SET content = NULL, content_hash = NULL, tags = '[]', "
            "metadata = '{}', deleted_at = ?, updated_at = ?, hlc = ?, origin = ?, change = ? "
            "WHERE seq = ?",
            (ctx.now_ms, ctx.now_ms, ctx.stamp(), ctx.origin, ctx.local_change(self.id), seq),
        )
        return True


@attrs.frozen
class ApplyVersion:
    """Apply a whole version of a memory made elsewhere (import, replication), keeping its id,
    timestamps, HLC version and origin. ``content=None`` is a tombstone.

    Last writer wins by ``(hlc, origin)``: an older version than the stored one changes
    nothing and answers ``"superseded"``; the stored version itself again, ``"unchanged"``. An imported (``replicate``) live version whose exact
    content another live memory in the space holds answers ``"duplicate"`` and changes
    nothing; a pulled one is applied regardless (two devices may have written the same text
    under two ids before they synced). Otherwise
    ``"applied"``; the local clock then observes the version's HLC, so later local writes
    order after it.
    """

    id: str
    space: str
    content: str | None
    content_hash: str | None
    type: str
    tags: tuple[str, ...]
    metadata_json: str
    created_at: int
    updated_at: int
    deleted_at: int | None
    hlc: int
    origin: str
    vector: bytes | None
    # True for versions that entered here (import) and must be pushed on; False for versions
    # pulled from the remote, which already has them.
    replicate: bool = True

    def apply(self, ctx: WriteContext) -> str:
        conn = ctx.conn
        found = rows(conn, "SELECT seq, hlc, origin, deleted_at FROM memories WHERE id = ?",
                     (self.id,))
        if found and (found[0][1], found[0][2]) == (self.hlc, self.origin):
            return "unchanged"  # this very version again: a replay, not a contest
        if found and (found[0][1], found[0][2]) > (self.hlc, self.origin):
            return "superseded"
        if self.content is not None and self.replicate:  # an import dedupes; a pull does not
            clash = scalar(conn, "SELECT id FROM memories WHERE space = ? AND content_hash = ? "
                                 "AND deleted_at IS NULL AND id != ?",
                           (self.space, self.content_hash, self.id))
            if clash is not None:
                return "duplicate"
        values = (self.space, self.content, self.content_hash, self.type,
                  json.dumps(list(self.tags), ensure_ascii=False), self.metadata_json,
                  self.created_at, self.updated_at, self.deleted_at, self.hlc, self.origin,
                  ctx.local_change(self.id) if self.replicate else ctx.next_change())
        if found:
            seq = found[0][0]
            _unindex(ctx, seq, vector=found[0][3] is None)
            conn.execute(
                "UPDATE memories SET space = ?, content = ?, content_hash = ?, type = ?, "
                "tags = ?, metadata = ?, created_at = ?, updated_at = ?, deleted_at = ?, "
                "hlc = ?, origin = ?, change = ? WHERE seq = ?", (*values, seq))
        else:
            seq = scalar(
                conn,
                "INSERT INTO memories(space, content, content_hash, type, tags, metadata, "
                "created_at, updated_at, deleted_at, hlc, origin, change, id) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING seq", (*values, self.id))
        if self.content is not None:
            ctx.index(seq, self.content, self.tags, self.vector)
        ctx.hlc = ctx.hlc.observe(Hlc.unpack(self.hlc), ctx.now_ms)
        return "applied"


WriteRequest = PutMemory | UpdateMemory | ForgetMemory | ApplyVersion

__all__ = ["MEMORY_COLUMNS", "ApplyVersion", "ForgetMemory", "PutMemory", "UpdateMemory",
           "WriteContext", "WriteRequest"]
