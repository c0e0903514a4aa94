"""The remote's statements: push, pull, search and handshake, as plain blocking functions.

Each takes an open psycopg connection (autocommit mode, ``vector`` registered) and is run by a
connection worker on its thread; psycopg errors propagate and the worker maps them to the
contract's typed errors.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import psycopg

from triomem.actors._remote import (
    DeviceInfo,
    MemoryVersion,
    PullPage,
    PushResult,
    RemoteHit,
    RemoteInfo,
)

from ._pg_schema import Layout
from ._pg_vector import PgVector

_COLUMNS = ("space, id, content, content_hash, type, tags, metadata, created_at, updated_at, "
            "deleted_at, hlc, origin, embedding, embedding_model")

# The last-writer-wins guard: a version replaces the row only if its (hlc, origin) is higher.
# A replayed or older version changes nothing and returns no row. Every applied version takes
# a fresh ``seq``, so a pull always delivers the latest state (design/replication.md §5.4).
_UPSERT = f"""
INSERT INTO memories AS m ({_COLUMNS}, seq)
VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (space, id) DO UPDATE SET
    content = EXCLUDED.content, content_hash = EXCLUDED.content_hash, type = EXCLUDED.type,
    tags = EXCLUDED.tags, metadata = EXCLUDED.metadata, created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at, deleted_at = EXCLUDED.deleted_at, hlc = EXCLUDED.hlc,
    origin = EXCLUDED.origin, embedding = EXCLUDED.embedding,
    embedding_model = EXCLUDED.embedding_model, seq = EXCLUDED.seq
WHERE (m.hlc, m.origin) < (EXCLUDED.hlc, EXCLUDED.origin)
RETURNING m.id
"""

# Takes the space's counter row lock until commit (created on a space's first push). Pushers
# to one space are serialised by it, so commit order equals seq order and a pull cursor never
# skips a row that commits late (design/replication.md §2.5). One statement does what
# ``SELECT ... FOR UPDATE`` then ``UPDATE`` would, in one round trip.
_ALLOCATE = """
INSERT INTO space_heads AS h (space, seq) VALUES (%s, %s)
ON CONFLICT (space) DO UPDATE SET seq = h.seq + EXCLUDED.seq
RETURNING h.seq
"""


def canonical_json(value: object) -> str:
    """The engine's canonical JSON text (as ``validate_metadata`` writes it): jsonb keeps
    neither key order nor spacing, so pulled metadata is re-serialised this way."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":"))


def _vector_for(version: MemoryVersion, layout: Layout) -> PgVector | None:
    """The vector to store: only live versions with a vector the remote indexes."""
    if version.content is None or version.embedding is None:
        return None
    if len(version.embedding) != 4 * layout.dim:
        return None
    if layout.embedding_model is not None and version.embedding_model != layout.embedding_model:
        return None
    return PgVector(version.embedding)


def push_batch(conn: psycopg.Connection[Any], layout: Layout, space: str,
               versions: Sequence[MemoryVersion],
               before_commit: Callable[[str], None] | None = None) -> list[PushResult]:
    """Apply ``versions`` (all in ``space``) in one transaction under the space's counter lock.

    Returns one result per version, in order: ``applied`` when the remote now holds that
    version (it was newer, or the very same version was already there: a retried push whose
    ack was lost), ``superseded`` when the remote holds a newer one and kept it. Blocking.
    """
    if not versions:
        return []
    with conn.transaction():
        allocated = conn.execute(_ALLOCATE, (space, len(versions))).fetchone()
        assert allocated is not None
        first = allocated[0] - len(versions) + 1
        params = []
        for i, v in enumerate(versions):
            vector = _vector_for(v, layout)
            params.append((space, v.id, v.content, v.content_hash, v.type, list(v.tags),
                           v.metadata_json, v.created_at, v.updated_at, v.deleted_at, v.hlc,
                           v.origin, vector, None if vector is None else v.embedding_model,
                           first + i))
        applied: list[bool] = []
        with conn.cursor() as cur:
            cur.executemany(_UPSERT, params, returning=True)
            for _ in cur.results():
                applied.append(cur.fetchone() is not None)
        held: dict[str, tuple[int, str]] = {}
        if not all(applied):
            rows = conn.execute("SELECT id, hlc, origin FROM memories "
                                "WHERE space = %s AND id = ANY(%s)",
                                (space, [v.id for v, ok in zip(versions, applied, strict=True)
                                         if not ok])).fetchall()
            held = {row[0]: (row[1], row[2]) for row in rows}
        if before_commit is not None:
            before_commit(space)  # test seam: hold the transaction (and the lock) open
    return [PushResult(v.id, "applied" if ok or held.get(v.id) == v.key else "superseded")
            for v, ok in zip(versions, applied, strict=True)]


def _version(row: Sequence[Any], with_vector: bool = True) -> MemoryVersion:
    (space, id_, content, content_hash, type_, tags, metadata, created_at, updated_at,
     deleted_at, hlc, origin, embedding, embedding_model) = row[:14]
    return MemoryVersion(
        id=id_, space=space, content=content, content_hash=content_hash, type=type_,
        tags=tuple(tags), metadata_json=canonical_json(metadata), created_at=created_at,
        updated_at=updated_at, deleted_at=deleted_at, hlc=hlc, origin=origin,
        embedding=embedding if with_vector else None,
        embedding_model=embedding_model if with_vector and embedding is not None else None)


def pull_page(conn: psycopg.Connection[Any], space: str, after_seq: int, limit: int
              ) -> PullPage:
    """Versions of ``space`` with ``seq > after_seq`` in seq order, at most ``limit``.
    Read-only, blocking."""
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(f"SELECT {_COLUMNS}, seq FROM memories "
                           "WHERE space = %s AND seq > %s ORDER BY seq LIMIT %s",
                           (space, after_seq, limit + 1)).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    next_seq = rows[-1][14] if rows else after_seq
    return PullPage(tuple(_version(r) for r in rows), next_seq, more)


_NO_VEC = ("vec AS (SELECT NULL::text AS space, NULL::text AS id, NULL::float8 AS cos, "
           "NULL::bigint AS r WHERE false)")
_NO_LEX = ("lex AS (SELECT NULL::text AS space, NULL::text AS id, NULL::float8 AS strength, "
           "NULL::bigint AS r WHERE false)")


def _search_sql(use_vec: bool, use_text: bool, by_space: bool, by_model: bool) -> str:
    space = "AND space = %(space)s" if by_space else ""
    m_space = "AND m.space = %(space)s" if by_space else ""
    model = "AND embedding_model = %(model)s" if by_model else ""
    vec = f"""vec AS (
        SELECT space, id, 1 - d AS cos, row_number() OVER (ORDER BY d, id) AS r FROM (
            SELECT space, id, embedding <=> %(vec)s AS d FROM memories
            WHERE embedding IS NOT NULL {space} {model}
            ORDER BY embedding <=> %(vec)s LIMIT %(n)s) AS nearest)""" if use_vec else _NO_VEC
    # The query's words OR-ed (plainto_tsquery quotes them, then its ANDs become ORs): a
    # natural-language question rarely has all its words in one memory. ts_rank's
    # normalisation 32 maps the rank into [0, 1).
    lex = f"""q AS (
        SELECT replace(plainto_tsquery('simple', %(text)s)::text, ' & ', ' | ')::tsquery AS tsq),
      lex AS (
        SELECT space, id, strength, row_number() OVER (ORDER BY strength DESC, id) AS r FROM (
            SELECT m.space, m.id, ts_rank(m.tsv, q.tsq, 32)::float8 AS strength
            FROM memories AS m, q WHERE m.tsv @@ q.tsq {m_space}
            ORDER BY strength DESC LIMIT %(n)s) AS matched)""" if use_text else _NO_LEX
    return f"""
    WITH {vec}, {lex},
      fused AS (
        SELECT coalesce(vec.space, lex.space) AS space, coalesce(vec.id, lex.id) AS id,
               vec.cos, lex.strength,
               coalesce(1.0 / (%(rrf_k)s + vec.r), 0) + coalesce(1.0 / (%(rrf_k)s + lex.r), 0)
                   AS rrf
        FROM vec FULL JOIN lex ON vec.space = lex.space AND vec.id = lex.id
        ORDER BY rrf DESC, id LIMIT %(k)s)
    SELECT {", ".join("m." + c for c in _COLUMNS.split(", "))}, f.cos, f.strength
    FROM fused AS f JOIN memories AS m ON m.space = f.space AND m.id = f.id
    WHERE m.content IS NOT NULL
    ORDER BY f.rrf DESC, m.id"""


@attrs.frozen
class SearchParams:
    """Search knobs: candidates per leg, the RRF constant, HNSW's candidate list size."""

    candidates: int = 50
    rrf_k: int = 60
    ef_search: int = 100


def search(conn: psycopg.Connection[Any], layout: Layout, space: str | None, text: str,
           vector: bytes | None, k: int, model: str | None,
           params: SearchParams = SearchParams()) -> list[RemoteHit]:
    """Hybrid search in one statement: HNSW top-n by cosine (rows made by ``model`` only, when
    given) and full-text top-n, fused by reciprocal rank. Hits carry no vector. Blocking;
    must run inside a transaction (it sets transaction-local HNSW settings)."""
    use_vec = (vector is not None and len(vector) == 4 * layout.dim
               and (model is None or layout.embedding_model in (None, model)))
    use_text = bool(text.strip())
    if k <= 0 or not (use_vec or use_text):
        return []
    n = max(params.candidates, k)
    # iterative_scan: with a space filter, HNSW keeps scanning until n rows pass the filter.
    conn.execute("SELECT set_config('hnsw.ef_search', %s, true), "
                 "set_config('hnsw.iterative_scan', 'relaxed_order', true)",
                 (str(max(params.ef_search, n)),))
    sql = _search_sql(use_vec, use_text, space is not None, use_vec and model is not None)
    args = {"space": space, "model": model, "vec": PgVector(vector) if use_vec and vector is not None else None, "n": n,
            "text": text, "k": k, "rrf_k": params.rrf_k}
    with conn.cursor(binary=True) as cur:
        rows = cur.execute(sql, args).fetchall()
    return [RemoteHit(_version(row, with_vector=False),
                      float(row[14]) if row[14] is not None else float(row[15]))
            for row in rows]


def handshake(conn: psycopg.Connection[Any], device: DeviceInfo) -> RemoteInfo:
    """Read the schema row and the server clock, and record the device as seen. Blocking."""
    with conn.transaction():
        row = conn.execute("SELECT version, min_protocol, "
                           "(extract(epoch FROM now()) * 1000)::bigint FROM triomem_schema"
                           ).fetchone()
        assert row is not None
        conn.execute("INSERT INTO devices (origin, protocol_version, last_seen) "
                     "VALUES (%s, %s, now()) ON CONFLICT (origin) DO UPDATE SET "
                     "protocol_version = EXCLUDED.protocol_version, last_seen = now()",
                     (device.origin, device.protocol_version))
    return RemoteInfo(schema_version=row[0], min_protocol=row[1], server_wall_ms=row[2])
