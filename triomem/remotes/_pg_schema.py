"""The remote's PostgreSQL schema, created idempotently on first connect.

Plain synchronous functions on a psycopg connection (autocommit mode); the PostgreSQL remote
runs them on its write worker. Concurrent first connects from several devices are serialised by
a transaction-scoped advisory lock, so the DDL runs once.

The embedding dimension of ``memories.embedding`` is fixed when the table is created, by the
first client's ``dim``, together with the one embedding model the remote indexes. A later
client with another model or dimension still replicates: it simply sends no vectors and gets
no vector leg in search (its own devices re-embed pulled content, design/replication.md §5.1).
"""

from __future__ import annotations

from typing import Any

import attrs
import psycopg

from ._pg_vector import register_vector

SCHEMA_VERSION = 1
MIN_PROTOCOL = 1  # the oldest client protocol that can use SCHEMA_VERSION
_DDL_LOCK = 0x74726D5F73636831  # advisory lock key: "trm_sch1"


@attrs.frozen
class Layout:
    """What the remote's schema row says: versions and the one indexed embedding model."""

    schema_version: int
    min_protocol: int
    embedding_model: str | None
    dim: int


def _ddl(dim: int) -> list[str]:
    # ``origin`` sorts in the C collation: the last-writer-wins guard compares
    # (hlc, origin) and must order origins byte-wise, exactly as SQLite and Python do on every
    # other replica, whatever collation the database defaults to.
    return [
        """CREATE TABLE IF NOT EXISTS triomem_schema (
             singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
             version integer NOT NULL,
             min_protocol integer NOT NULL,
             embedding_model text,
             embedding_dim integer NOT NULL)""",
        f"""CREATE TABLE IF NOT EXISTS memories (
             space text NOT NULL,
             id text NOT NULL,
             content text,
             content_hash text,
             type text NOT NULL,
             tags text[] NOT NULL DEFAULT '{{}}',
             metadata jsonb NOT NULL DEFAULT '{{}}',
             created_at bigint NOT NULL,
             updated_at bigint NOT NULL,
             deleted_at bigint,
             hlc bigint NOT NULL,
             origin text COLLATE "C" NOT NULL,
             seq bigint NOT NULL,
             embedding vector({dim:d}),
             embedding_model text,
             tsv tsvector GENERATED ALWAYS AS
                 (to_tsvector('simple'::regconfig, coalesce(content, ''))) STORED,
             PRIMARY KEY (space, id))""",
        "CREATE UNIQUE INDEX IF NOT EXISTS memories_space_seq ON memories (space, seq)",
        """CREATE INDEX IF NOT EXISTS memories_embedding_hnsw
             ON memories USING hnsw (embedding vector_cosine_ops)""",
        "CREATE INDEX IF NOT EXISTS memories_tsv_gin ON memories USING gin (tsv)",
        """CREATE TABLE IF NOT EXISTS space_heads (
             space text PRIMARY KEY,
             seq bigint NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS devices (
             origin text PRIMARY KEY,
             protocol_version integer NOT NULL,
             last_seen timestamptz NOT NULL)""",
    ]


def read_layout(conn: psycopg.Connection[Any]) -> Layout | None:
    """The schema row, or None when this database has no triomem schema yet."""
    found = conn.execute("SELECT to_regclass('triomem_schema') IS NOT NULL").fetchone()
    if found is None or not found[0]:
        return None
    row = conn.execute("SELECT version, min_protocol, embedding_model, embedding_dim "
                       "FROM triomem_schema").fetchone()
    return None if row is None else Layout(row[0], row[1], row[2], row[3])


def ensure_schema(conn: psycopg.Connection[Any], dim: int, model: str | None) -> Layout:
    """Create the schema if missing (``dim`` and ``model`` become the remote's), register the
    vector type on ``conn``, and return the remote's layout.

    Blocking. Raises psycopg errors (the caller maps them): notably insufficient_privilege
    when the ``vector`` extension is missing and this role may not create it.
    """
    layout = read_layout(conn)
    if layout is None or layout.schema_version < SCHEMA_VERSION:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            installed = conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
            if installed is None:  # CREATE EXTENSION needs rights even with IF NOT EXISTS
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            for statement in _ddl(dim):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO triomem_schema (version, min_protocol, embedding_model, "
                "embedding_dim) VALUES (%s, %s, %s, %s) ON CONFLICT (singleton) DO NOTHING",
                (SCHEMA_VERSION, MIN_PROTOCOL, model, dim))
        layout = read_layout(conn)
        assert layout is not None
    register_vector(conn)
    return layout
