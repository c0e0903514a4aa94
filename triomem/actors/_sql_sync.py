"""The store's side of replication: reading the outbox, settling pushes, applying pulls.

The sync actor never touches the database; it sends these requests to the store actor. Every
state change here happens in the store's transactions, so the outbox, the memories, the pull
cursor and the conflict log always move together: a crash at any point re-pushes or re-pulls,
and both are idempotent under the last-writer-wins guard.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import apsw
import attrs

from ._db import read_meta, rows, scalar
from ._remote import MemoryVersion
from ._sql_read import vec_table
from ._sql_write import ApplyVersion, WriteContext

_VERSION_COLUMNS = ("m.id, m.space, m.content, m.content_hash, m.type, m.tags, m.metadata, "
                    "m.created_at, m.updated_at, m.deleted_at, m.hlc, m.origin")


def _version(row: tuple[Any, ...], embedding: bytes | None, model: str | None) -> MemoryVersion:
    (id_, space, content, chash, type_, tags, metadata, created, updated, deleted, hlc,
     origin) = row[:12]
    return MemoryVersion(
        id=id_, space=space, content=content, content_hash=chash, type=type_,
        tags=tuple(json.loads(tags)), metadata_json=metadata, created_at=created,
        updated_at=updated, deleted_at=deleted, hlc=hlc, origin=origin,
        embedding=embedding if content is not None else None,
        embedding_model=model if embedding is not None and content is not None else None,
    )


@attrs.frozen
class VersionReader:
    """Reads memories' current versions (live or tombstone, with the vector) within one
    transaction: the vector table and the embedder are looked up once, not per memory."""

    conn: apsw.Connection
    sql: str
    embedder: str | None

    @classmethod
    def of(cls, conn: apsw.Connection) -> VersionReader:
        table = vec_table(conn)
        vector = f"(SELECT embedding FROM {table} v WHERE v.rowid = m.seq)" if table else "NULL"
        return cls(conn, f"SELECT {_VERSION_COLUMNS}, {vector} FROM memories m WHERE m.id = ?",
                   read_meta(conn).get("embedder"))

    def read(self, memory_id: str) -> MemoryVersion | None:
        found = rows(self.conn, self.sql, (memory_id,))
        return _version(found[0], found[0][12], self.embedder) if found else None


@attrs.frozen
class OutboxItem:
    change: int
    attempts: int
    version: MemoryVersion


@attrs.frozen
class TakeOutbox:
    """The oldest ``limit`` queued changes with the current version of each memory (the
    payload is read at push time: a memory edited five times is pushed once)."""

    limit: int = 200
    skip: frozenset[str] = frozenset()  # memories whose push is backing off

    def run(self, conn: apsw.Connection) -> list[OutboxItem]:
        found = rows(conn, "SELECT memory_id, change, attempts FROM sync_outbox "
                           "ORDER BY change LIMIT ?", (self.limit + len(self.skip),))
        items = []
        reader = VersionReader.of(conn)
        for memory_id, change, attempts in found:
            if memory_id in self.skip:
                continue
            version = reader.read(memory_id)
            if version is not None:
                items.append(OutboxItem(change, attempts, version))
            if len(items) == self.limit:
                break
        return items


@attrs.frozen
class OutboxAck:
    memory_id: str
    change: int
    status: Literal["applied", "superseded", "transient", "permanent"]
    error: str | None = None


def _conflict(ctx: WriteContext, version: MemoryVersion) -> None:
    """Keep a losing version: nothing replicated is ever dropped silently."""
    record = attrs.asdict(version, filter=lambda a, _: a.name != "embedding")
    ctx.conn.execute(
        "INSERT OR IGNORE INTO sync_conflict(memory_id, hlc, origin, record, seen_at) "
        "VALUES(?, ?, ?, ?, ?)",
        (version.id, version.hlc, version.origin, json.dumps(record), ctx.now_ms))


@attrs.frozen
class AckOutbox:
    """Settle pushed changes. An entry is removed only if its memory was not changed again
    meanwhile (same change number); a superseded local version is kept as a conflict, a
    permanently refused one as a dead letter."""

    acks: tuple[OutboxAck, ...]

    def apply(self, ctx: WriteContext) -> int:
        settled = 0
        reader: VersionReader | None = None
        for ack in self.acks:
            current = scalar(ctx.conn, "SELECT change FROM sync_outbox WHERE memory_id = ?",
                             (ack.memory_id,))
            if current != ack.change:
                continue  # changed again while the push was in flight: stays queued
            if ack.status == "transient":
                ctx.conn.execute("UPDATE sync_outbox SET attempts = attempts + 1, "
                                 "last_error = ? WHERE memory_id = ?",
                                 (ack.error, ack.memory_id))
                continue
            if ack.status == "superseded":
                reader = reader or VersionReader.of(ctx.conn)
                version = reader.read(ack.memory_id)
                if version is not None:
                    _conflict(ctx, version)
            elif ack.status == "permanent":
                ctx.conn.execute("INSERT INTO sync_dead(memory_id, change, error, at) "
                                 "VALUES(?, ?, ?, ?)",
                                 (ack.memory_id, ack.change, ack.error or "", ctx.now_ms))
            ctx.conn.execute("DELETE FROM sync_outbox WHERE memory_id = ?", (ack.memory_id,))
            settled += 1
        return settled


def apply_version(v: MemoryVersion, vector: bytes | None) -> ApplyVersion:
    """A replicated version as a guarded store write (never re-queued for push)."""
    return ApplyVersion(
        id=v.id, space=v.space, content=v.content, content_hash=v.content_hash, type=v.type,
        tags=v.tags, metadata_json=v.metadata_json, created_at=v.created_at,
        updated_at=v.updated_at, deleted_at=v.deleted_at, hlc=v.hlc, origin=v.origin,
        vector=vector, replicate=False)


@attrs.frozen
class PulledVersion:
    version: MemoryVersion
    vector: bytes | None  # in this database's model: the sync actor embeds when they differ


@attrs.frozen
class ApplyPulled:
    """Apply one pulled page and move the cursor, in one transaction.

    Each version goes through the last-writer-wins guard. A pulled version that loses is kept
    as a conflict; a local version that loses while still queued for push is kept as a
    conflict and unqueued (the remote already holds something newer).
    """

    remote: str
    space: str
    versions: tuple[PulledVersion, ...]
    next_seq: int

    def apply(self, ctx: WriteContext) -> dict[str, int]:
        counts = {"applied": 0, "superseded": 0, "unchanged": 0, "duplicate": 0}
        reader = VersionReader.of(ctx.conn)
        for pulled in self.versions:
            v = pulled.version
            local = reader.read(v.id)
            queued = scalar(ctx.conn, "SELECT 1 FROM sync_outbox WHERE memory_id = ?", (v.id,))
            outcome = apply_version(v, pulled.vector).apply(ctx)
            counts[outcome] += 1
            if outcome == "applied" and local is not None and queued:
                _conflict(ctx, local)
                ctx.conn.execute("DELETE FROM sync_outbox WHERE memory_id = ?", (v.id,))
            elif outcome == "superseded" and local is not None and local.key != v.key:
                _conflict(ctx, v)  # the pulled version lost to a newer local one
        ctx.conn.execute(
            "INSERT INTO sync_cursor(remote, space, seq) VALUES(?, ?, ?) "
            "ON CONFLICT(remote, space) DO UPDATE SET seq = max(seq, excluded.seq)",
            (self.remote, self.space, self.next_seq))
        return counts


@attrs.frozen
class SyncFacts:
    outbox: int
    max_attempts: int
    dead_letters: int
    conflicts: int
    cursors: dict[str, int] = attrs.field(eq=False, hash=False)


@attrs.frozen
class ReadSyncFacts:
    remote: str

    def run(self, conn: apsw.Connection) -> SyncFacts:
        outbox, attempts = rows(conn, "SELECT count(*), coalesce(max(attempts), 0) "
                                      "FROM sync_outbox")[0]
        return SyncFacts(
            outbox=outbox, max_attempts=attempts,
            dead_letters=scalar(conn, "SELECT count(*) FROM sync_dead"),
            conflicts=scalar(conn, "SELECT count(*) FROM sync_conflict"),
            cursors=dict(rows(conn, "SELECT space, seq FROM sync_cursor WHERE remote = ?",
                              (self.remote,))),
        )


@attrs.frozen
class ReadCursor:
    remote: str
    space: str

    def run(self, conn: apsw.Connection) -> int:
        seq = scalar(conn, "SELECT seq FROM sync_cursor WHERE remote = ? AND space = ?",
                     (self.remote, self.space))
        return int(seq) if seq is not None else 0


@attrs.frozen
class ListConflicts:
    limit: int = 100

    def run(self, conn: apsw.Connection) -> list[dict[str, Any]]:
        return [{**json.loads(record), "seen_at": seen}
                for record, seen in rows(conn, "SELECT record, seen_at FROM sync_conflict "
                                               "ORDER BY seen_at DESC LIMIT ?", (self.limit,))]


@attrs.frozen
class ReadSpaces:
    """Every space that holds a memory (live or forgotten): what a pull must cover."""

    def run(self, conn: apsw.Connection) -> list[str]:
        return [r[0] for r in rows(conn, "SELECT DISTINCT space FROM memories")]


@attrs.frozen
class ServePull:
    """The hub's side of a pull: versions of ``space`` changed after ``after_seq``, in change
    order. Local change numbers are allocated under the write lock, so commit order is change
    order and a cursor never skips a row (the property the PostgreSQL design gets from its
    per-space counter row)."""

    space: str
    after_seq: int
    limit: int

    def run(self, conn: apsw.Connection) -> tuple[list[tuple[int, MemoryVersion]], bool]:
        table = vec_table(conn)
        vector = f"(SELECT embedding FROM {table} v WHERE v.rowid = m.seq)" if table else "NULL"
        found = rows(conn, f"SELECT {_VERSION_COLUMNS}, {vector}, m.change FROM memories m "
                           "WHERE m.space = ? AND m.change > ? ORDER BY m.change LIMIT ?",
                     (self.space, self.after_seq, self.limit + 1))
        model = read_meta(conn).get("embedder")
        page = [(r[13], _version(r, r[12], model)) for r in found[: self.limit]]
        return page, len(found) > self.limit


@attrs.frozen
class ServePush:
    """The hub's side of a push: apply each version under the last-writer-wins guard;
    ``"applied"`` or ``"superseded"`` per version. ``vectors`` are in the hub's model."""

    versions: tuple[MemoryVersion, ...]
    vectors: tuple[bytes | None, ...]

    def apply(self, ctx: WriteContext) -> list[str]:
        # the same version delivered again is acknowledged as applied (idempotent replay)
        return ["applied" if r == "unchanged" else r for r in (
            apply_version(v, vector).apply(ctx)
            for v, vector in zip(self.versions, self.vectors, strict=True))]


SyncWrite = AckOutbox | ApplyPulled | ServePush
SyncRead = TakeOutbox | ReadSyncFacts | ReadCursor | ListConflicts | ReadSpaces | ServePull
