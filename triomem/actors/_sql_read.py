"""Read operations as plain synchronous functions on an ``apsw.Connection``.

Filters are compiled into SQL (``MemoryFilter.where``) so listing and recall filter inside the
query instead of fetching everything and filtering in Python.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import apsw
import attrs
import numpy as np
import numpy.typing as npt

from ._db import read_meta, rows, scalar
from ._errors import EmbedderMismatch, InvalidMemory, NotFound
from ._fts import FrequencyCache, informative_terms, match_expression, term_statistics
from ._values import Memory, Page, utc_from_ms
from ._vector_index import VectorChange

MEMORY_COLUMNS = (
    "id, space, content, type, tags, metadata, created_at, updated_at, hlc, origin, content_hash"
)


def fetch_one(conn: apsw.Connection, where: str, params: Sequence[Any]) -> Memory | None:
    found = rows(conn, f"SELECT {MEMORY_COLUMNS} FROM memories WHERE {where}", params)
    return Memory.from_row(found[0]) if found else None


@attrs.frozen
class MemoryFilter:
    """Which live memories a listing or recall may return. Times are epoch milliseconds."""

    space: str | None = None
    type: str | None = None
    tags_all: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    created_after: int | None = None
    created_before: int | None = None
    updated_after: int | None = None
    updated_before: int | None = None

    def accepts(self, memory: Memory) -> bool:
        """The same test as ``where``, in Python: for memories that came from elsewhere."""
        created = int(memory.created_at.timestamp() * 1000)
        updated = int(memory.updated_at.timestamp() * 1000)
        return (
            self.space in (None, memory.space) and self.type in (None, memory.type)
            and set(self.tags_all) <= set(memory.tags)
            and (not self.tags_any or bool(set(self.tags_any) & set(memory.tags)))
            and (self.created_after is None or created >= self.created_after)
            and (self.created_before is None or created < self.created_before)
            and (self.updated_after is None or updated >= self.updated_after)
            and (self.updated_before is None or updated < self.updated_before)
        )

    def where(self, alias: str = "m") -> tuple[str, list[Any]]:
        """A SQL condition on ``memories AS alias`` and its parameters."""
        clauses = [f"{alias}.deleted_at IS NULL"]
        params: list[Any] = []
        for column, op, value in (
            ("space", "=", self.space), ("type", "=", self.type),
            ("created_at", ">=", self.created_after), ("created_at", "<", self.created_before),
            ("updated_at", ">=", self.updated_after), ("updated_at", "<", self.updated_before),
        ):
            if value is not None:
                clauses.append(f"{alias}.{column} {op} ?")
                params.append(value)
        if self.tags_all:
            marks = ",".join("?" * len(self.tags_all))
            clauses.append(
                f"{alias}.seq IN (SELECT seq FROM memory_tags WHERE tag IN ({marks}) "
                f"GROUP BY seq HAVING count(*) = ?)"
            )
            params += [*self.tags_all, len(self.tags_all)]
        if self.tags_any:
            marks = ",".join("?" * len(self.tags_any))
            clauses.append(
                f"EXISTS (SELECT 1 FROM memory_tags t WHERE t.seq = {alias}.seq "
                f"AND t.tag IN ({marks}))"
            )
            params += list(self.tags_any)
        return " AND ".join(clauses), params


@attrs.frozen
class GetMemory:
    id: str

    def run(self, conn: apsw.Connection) -> Memory:
        memory = fetch_one(conn, "id = ? AND deleted_at IS NULL", (self.id,))
        if memory is None:
            raise NotFound(self.id)
        return memory


@attrs.frozen
class ListMemories:
    """Newest first. ``cursor`` is the opaque ``next_cursor`` of the previous page."""

    filter: MemoryFilter = MemoryFilter()
    limit: int = 50
    cursor: str | None = None

    def run(self, conn: apsw.Connection) -> Page:
        where, params = self.filter.where("m")
        if self.cursor is not None:
            try:
                after = int(self.cursor, 16)
            except ValueError:
                after = -1
            if not 0 < after < 2**63:  # SQLite integers are 64-bit
                raise InvalidMemory("cursor", "not a cursor returned by a previous page")
            where += " AND m.seq < ?"
            params.append(after)
        found = rows(
            conn,
            f"SELECT seq, {MEMORY_COLUMNS} FROM memories m WHERE {where} "
            "ORDER BY seq DESC LIMIT ?",
            (*params, self.limit + 1),
        )
        more = len(found) > self.limit
        found = found[: self.limit]
        memories = tuple(Memory.from_row(r[1:]) for r in found)
        return Page(memories, format(found[-1][0], "x") if more and found else None)


@attrs.frozen
class TextCandidates:
    """The ``k`` best FTS5 matches for ``terms`` (see ``_fts.query_terms``), each with its
    lexical *strength* in [0, 1]: its BM25 score over the sum of the query terms' IDF (the
    most a one-occurrence match of every term could score). A hit on a rare term the query is
    mostly about is strong; a hit on one common word among rarer unmatched ones is weak.

    When the query's words would match more than ``prune_above`` memories (a large corpus
    and common words), only memories that can reach ``floor`` are scored, on the terms that
    decide it (``_fts.informative_terms``; their strength is then a slight underestimate);
    when even those match more than ``budget`` memories, the lexical evidence is too weak to
    be worth the scan and nothing is returned. Small corpora are always scored exactly.
    """

    terms: tuple[str, ...]
    k: int
    filter: MemoryFilter = MemoryFilter()
    floor: float = 0.0
    cache: FrequencyCache | None = attrs.field(default=None, eq=False)
    prune_above: int = 5_000
    budget: int = 20_000

    def run(self, conn: apsw.Connection) -> list[tuple[str, float]]:
        stats = term_statistics(conn, self.terms, self.cache)
        ceiling = sum(t.idf for t in stats)
        searched = [t for t in stats if t.docs > 0]
        if sum(t.docs for t in searched) > self.prune_above:
            searched = informative_terms(stats, self.floor)
        if not searched or sum(t.docs for t in searched) > self.budget:
            return []
        match = match_expression(tuple(t.word for t in searched))
        if self.filter == MemoryFilter():  # score FTS5 alone, then name the k winners
            scored = rows(conn, "SELECT rowid, bm25(memory_fts) AS s FROM memory_fts "
                                "WHERE memory_fts MATCH ? ORDER BY s LIMIT ?", (match, self.k))
            ids: dict[int, str] = dict(rows(conn, f"SELECT seq, id FROM memories WHERE seq IN "
                                  f"({','.join('?' * len(scored))})", [r[0] for r in scored]))
            found = [(ids[seq], score) for seq, score in scored if seq in ids]
        else:
            where, params = self.filter.where("m")
            found = rows(conn,
                "SELECT m.id, bm25(memory_fts) AS s FROM memory_fts f "
                f"JOIN memories m ON m.seq = f.rowid WHERE memory_fts MATCH ? AND {where} "
                "ORDER BY s LIMIT ?",
                (match, *params, self.k),
            )
        return [(str(memory_id), min(1.0, -float(s) / ceiling)) for memory_id, s in found]


@attrs.frozen
class MemoriesById:
    ids: tuple[str, ...]

    def run(self, conn: apsw.Connection) -> dict[str, Memory]:
        if not self.ids:
            return {}
        marks = ",".join("?" * len(self.ids))
        found = rows(conn, f"SELECT {MEMORY_COLUMNS} FROM memories "
                           f"WHERE id IN ({marks}) AND deleted_at IS NULL", self.ids)
        return {r[0]: Memory.from_row(r) for r in found}


@attrs.frozen
class VectorChanges:
    """Every memory written after local change number ``since``, with its vector (None once
    forgotten), and the active vector table (another one means the file was re-embedded)."""

    since: int
    limit: int = 20_000

    def run(self, conn: apsw.Connection) -> tuple[str, list[VectorChange]]:
        table = vec_table(conn)
        if not table:
            return table, []
        found = rows(
            conn,
            f"SELECT m.seq, m.id, m.change, v.embedding FROM memories m LEFT JOIN {table} v "
            "ON v.rowid = m.seq AND m.deleted_at IS NULL WHERE m.change > ? "
            "ORDER BY m.change LIMIT ?",
            (self.since, self.limit),
        )
        return table, [VectorChange(s, i, c, v) for s, i, c, v in found]


@attrs.frozen
class AllowedSeqs:
    """The seqs of live memories passing ``filter``: a filtered vector search scores only these."""

    filter: MemoryFilter

    def run(self, conn: apsw.Connection) -> npt.NDArray[np.int64]:
        where, params = self.filter.where("m")
        return np.fromiter(
            (r[0] for r in conn.execute(f"SELECT seq FROM memories m WHERE {where}", params)),
            dtype=np.int64,
        )


@attrs.frozen
class ExportPage:
    """Memories after ``after_seq`` in storage order, as JSON-ready records with every field
    (and, on request, the vector as a list of floats). Tombstones only when asked."""

    after_seq: int
    limit: int = 500
    include_forgotten: bool = False
    with_vectors: bool = False

    def run(self, conn: apsw.Connection) -> tuple[int, list[dict[str, Any]]]:
        table = vec_table(conn)
        vector = f"(SELECT embedding FROM {table} v WHERE v.rowid = m.seq)" \
            if self.with_vectors and table else "NULL"
        live = "" if self.include_forgotten else "AND m.deleted_at IS NULL"
        embedder = read_meta(conn).get("embedder")
        found = rows(
            conn,
            f"SELECT m.seq, m.id, m.space, m.content, m.type, m.tags, m.metadata, m.created_at, "
            f"m.updated_at, m.deleted_at, m.hlc, m.origin, m.content_hash, {vector} "
            f"FROM memories m WHERE m.seq > ? {live} ORDER BY m.seq LIMIT ?",
            (self.after_seq, self.limit),
        )
        records = []
        for (_, id_, space, content, type_, tags, metadata, created, updated, deleted, hlc,
             origin, chash, blob) in found:
            record: dict[str, Any] = {
                "id": id_, "space": space, "content": content, "type": type_,
                "tags": json.loads(tags), "metadata": json.loads(metadata),
                "created_at": utc_from_ms(created).isoformat(),
                "updated_at": utc_from_ms(updated).isoformat(),
                "deleted_at": None if deleted is None else utc_from_ms(deleted).isoformat(),
                "version": hlc, "origin": origin, "content_hash": chash,
            }
            if blob is not None:
                record["vector"] = np.frombuffer(blob, dtype="<f4").tolist()
                record["embedder"] = embedder
            records.append(record)
        return (found[-1][0] if found else self.after_seq), records


@attrs.frozen
class DatabaseFacts:
    """Counts and sizes for statistics."""

    live_memories: int
    forgotten_memories: int
    db_bytes: int
    wal_bytes: int
    schema_version: int
    embedder: str | None
    origin: str


@attrs.frozen
class ReadFacts:
    path: str

    def run(self, conn: apsw.Connection) -> DatabaseFacts:
        live, dead = rows(conn,
            "SELECT count(*) FILTER (WHERE deleted_at IS NULL), "
            "count(*) FILTER (WHERE deleted_at IS NOT NULL) FROM memories"
        )[0]
        pages = scalar(conn, "PRAGMA page_count")
        page_size = scalar(conn, "PRAGMA page_size")
        meta = read_meta(conn)
        return DatabaseFacts(
            live_memories=live, forgotten_memories=dead, db_bytes=pages * page_size,
            wal_bytes=wal_size(self.path),
            schema_version=scalar(conn, "PRAGMA user_version"),
            embedder=meta.get("embedder"), origin=meta["origin"],
        )


ReadRequest = (
    GetMemory | ListMemories | TextCandidates | MemoriesById | VectorChanges | AllowedSeqs
    | ExportPage | ReadFacts
)


def wal_size(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return 0


def vec_table(conn: apsw.Connection) -> str:
    return str(scalar(conn, "SELECT value FROM meta WHERE key = 'vec_table'") or "")


def bind_embedder(conn: apsw.Connection, embedder: str, dim: int) -> None:
    """Record the embedder on first use and create its vector table; refuse another one.

    Runs in its own write transaction (the caller opens it).
    """
    meta = read_meta(conn)
    stored = meta.get("embedder")
    if stored == embedder:
        return
    if stored is not None:
        raise EmbedderMismatch(stored, embedder)
    create_vec_table(conn, "memory_vec_1", dim)
    conn.executemany(
        "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
        [("embedder", embedder), ("dim", str(dim)), ("vec_table", "memory_vec_1")],
    )


def create_vec_table(conn: apsw.Connection, name: str, dim: int) -> None:
    conn.execute(
        f"CREATE VIRTUAL TABLE {name} USING vec0(embedding float[{int(dim)}] "
        "distance_metric=cosine)"
    )
