"""Opening a database file: refuse what is not ours, set pragmas, run migrations.

Plain synchronous functions on an ``apsw.Connection``; the store actor runs them through its
executor. Migrations are numbered steps recorded in ``PRAGMA user_version``; each runs inside
``BEGIN IMMEDIATE`` and re-reads the version under the write lock, so two processes opening a
new file at once migrate it exactly once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import apsw
import attrs
import sqlite_vec

from ._db import scalar
from ._errors import SchemaTooNew, StoreCorrupt, StoreIOError

SQLITE_MAGIC = b"SQLite format 3\x00"
APPLICATION_ID = 0x54524D31  # "TRM1": marks the file as a triomem database


@attrs.frozen
class Pragmas:
    """Durability and WAL settings applied to every connection."""

    synchronous: str = attrs.field(
        default="FULL", validator=attrs.validators.in_(("OFF", "NORMAL", "FULL", "EXTRA"))
    )
    busy_timeout_ms: int = attrs.field(default=50, validator=attrs.validators.ge(0))
    wal_autocheckpoint_pages: int = attrs.field(default=1000, validator=attrs.validators.ge(0))
    journal_size_limit_bytes: int = attrs.field(default=64 * 1024 * 1024)
    cache_size_kib: int = 32 * 1024


def _v1(conn: apsw.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
        CREATE TABLE memories(
            seq INTEGER PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            space TEXT NOT NULL,
            content TEXT,
            content_hash TEXT,
            type TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            metadata TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            deleted_at INTEGER,
            hlc INTEGER NOT NULL,
            origin TEXT NOT NULL,
            idempotency_key TEXT
        ) STRICT;
        CREATE UNIQUE INDEX memories_live_content
            ON memories(space, content_hash) WHERE deleted_at IS NULL;
        CREATE UNIQUE INDEX memories_idempotency
            ON memories(idempotency_key) WHERE idempotency_key IS NOT NULL;
        CREATE INDEX memories_space_created ON memories(space, created_at);
        CREATE INDEX memories_updated ON memories(updated_at);
        CREATE INDEX memories_type ON memories(type);
        CREATE TABLE memory_tags(
            tag TEXT NOT NULL,
            seq INTEGER NOT NULL REFERENCES memories(seq),
            PRIMARY KEY(tag, seq)
        ) STRICT, WITHOUT ROWID;
        CREATE INDEX memory_tags_seq ON memory_tags(seq);
        -- Contentless: the text lives once, in memories; secure-delete really removes
        -- a forgotten memory's tokens from the index instead of leaving them until a merge.
        CREATE VIRTUAL TABLE memory_fts USING fts5(
            content, tags, content='', contentless_delete=1,
            tokenize='porter unicode61 remove_diacritics 2'
        );
        INSERT INTO memory_fts(memory_fts, rank) VALUES('secure-delete', 1);
        """
    )
    conn.execute(
        "INSERT INTO meta(key, value) VALUES('origin', lower(hex(randomblob(16)))), ('hlc', '0')"
    )


def _v2(conn: apsw.Connection) -> None:
    # ``change`` is a local, strictly increasing counter stamped on every write to a row.
    # Followers (the recall index, the sync outbox) ask "what changed since change x". The HLC
    # cannot serve: a version imported or replicated from elsewhere keeps its own, older HLC.
    conn.execute("ALTER TABLE memories ADD COLUMN change INTEGER NOT NULL DEFAULT 0")
    conn.execute("UPDATE memories SET change = seq")
    conn.execute("CREATE INDEX memories_change ON memories(change)")
    conn.execute("INSERT INTO meta(key, value) VALUES('change', "
                 "(SELECT coalesce(max(change), 0) FROM memories))")


def _v3(conn: apsw.Connection) -> None:
    # Replication (design/replication.md). The outbox is written in the same transaction as
    # every local change, coalesced per memory: bounded by the data set, never capped or
    # dropped. Existing memories are queued once so a first sync pushes them.
    # Exact-duplicate content is refused for local writes (remember returns the existing
    # memory), but two devices may create the same text under two ids before they sync; both
    # versions must replicate, so uniqueness is no longer a constraint of the table.
    conn.execute(
        """
        DROP INDEX memories_live_content;
        CREATE INDEX memories_live_content
            ON memories(space, content_hash) WHERE deleted_at IS NULL;
        CREATE TABLE sync_outbox(
            memory_id TEXT PRIMARY KEY,
            change INTEGER NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT
        ) STRICT;
        CREATE INDEX sync_outbox_change ON sync_outbox(change);
        INSERT INTO sync_outbox(memory_id, change) SELECT id, change FROM memories;
        CREATE TABLE sync_cursor(
            remote TEXT NOT NULL, space TEXT NOT NULL, seq INTEGER NOT NULL,
            PRIMARY KEY(remote, space)
        ) STRICT;
        CREATE TABLE sync_conflict(
            memory_id TEXT NOT NULL, hlc INTEGER NOT NULL, origin TEXT NOT NULL,
            record TEXT NOT NULL, seen_at INTEGER NOT NULL,
            PRIMARY KEY(memory_id, hlc, origin)
        ) STRICT;
        CREATE TABLE sync_dead(
            memory_id TEXT NOT NULL, change INTEGER NOT NULL, error TEXT NOT NULL,
            at INTEGER NOT NULL
        ) STRICT;
        """
    )


# Append only; never edit a released step.
MIGRATIONS: tuple[Callable[[apsw.Connection], None], ...] = (_v1, _v2, _v3)
SCHEMA_VERSION = len(MIGRATIONS)


@contextlib.contextmanager
def immediate(conn: apsw.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on any error.

    IMMEDIATE takes the write lock up front, so contention shows as BusyError here (where the
    caller can retry the whole unit) and never in the middle of a transaction.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if not conn.getautocommit():
            conn.execute("ROLLBACK")
        raise
    try:
        conn.execute("COMMIT")
    except BaseException:
        if not conn.getautocommit():
            conn.execute("ROLLBACK")
        raise


def check_file(path: str) -> None:
    """Refuse a file that exists but is not SQLite, before SQLite can write to it."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise StoreCorrupt(f"{path} is a directory, not a database file") from None
    except OSError as exc:
        raise StoreIOError(f"cannot read {path}: {exc.strerror}") from None
    if head and head != SQLITE_MAGIC:
        raise StoreCorrupt(f"{path} is not a SQLite database; it was left untouched")


def connect(path: str, pragmas: Pragmas) -> apsw.Connection:
    """Open ``path``, load sqlite-vec, check ownership, set pragmas and migrate.

    Raises StoreCorrupt (file untouched), SchemaTooNew, or StoreIOError.
    """
    check_file(path)
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise StoreIOError(f"directory {parent} does not exist")
    try:
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    except apsw.CantOpenError as exc:
        raise StoreIOError(f"cannot open {path}: {exc}") from None
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.set_busy_timeout(pragmas.busy_timeout_ms)
        _check_ownership(conn, path)
        conn.execute(f"PRAGMA cache_size=-{pragmas.cache_size_kib}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA secure_delete=ON")
        mode = scalar(conn, "PRAGMA journal_mode=WAL")
        if mode != "wal":
            raise StoreIOError(f"{path}: cannot enable WAL (journal_mode is {mode})")
        conn.execute(f"PRAGMA synchronous={pragmas.synchronous}")
        conn.execute(f"PRAGMA journal_size_limit={pragmas.journal_size_limit_bytes}")
        conn.wal_autocheckpoint(pragmas.wal_autocheckpoint_pages)
        migrate(conn)
        # Per-connection (temp schema, not in the file): document frequencies for recall.
        conn.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.memory_fts_vocab "
                     "USING fts5vocab(main, memory_fts, row)")
    except (apsw.NotADBError, apsw.CorruptError) as exc:
        conn.close()
        raise StoreCorrupt(f"{path} is not a usable SQLite database: {exc}") from None
    except (apsw.CantOpenError, apsw.ReadOnlyError, apsw.IOError, apsw.FullError,
            apsw.PermissionsError) as exc:
        conn.close()
        raise StoreIOError(f"cannot open {path} for writing (read-only or unavailable "
                           f"storage?): {exc}") from None
    except BaseException:
        conn.close()
        raise
    return conn


def _check_ownership(conn: apsw.Connection, path: str) -> None:
    """Read-only checks: an empty file is ours to create, a foreign database is refused."""
    app_id = scalar(conn, "PRAGMA application_id")
    if app_id == APPLICATION_ID:
        version = scalar(conn, "PRAGMA user_version")
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(version, SCHEMA_VERSION)
        return
    tables = scalar(conn, "SELECT count(*) FROM sqlite_schema")
    if app_id != 0 or tables:
        raise StoreCorrupt(f"{path} is a SQLite database of another application; left untouched")


def migrate(conn: apsw.Connection) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; returns the version found before."""
    found: int = scalar(conn, "PRAGMA user_version")
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(found, SCHEMA_VERSION)
    if found == SCHEMA_VERSION:
        return found
    with immediate(conn):
        current: int = scalar(conn, "PRAGMA user_version")
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(current, SCHEMA_VERSION)
        for step in range(current, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
        conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    return found
