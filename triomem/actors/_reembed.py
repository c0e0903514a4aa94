"""Converting a database to another embedder without ever mixing vectors.

The new vectors go into a fresh ``vec0`` table while the old one keeps serving. Passes repeat
over what changed since the previous pass (by local change number), and the final, short pass runs under the
write lock and flips ``meta`` (embedder, dimension, active table) in the same transaction that
drops the old table. Writers in other processes still configured with the old embedder then
fail with EmbedderMismatch instead of writing old-model vectors (see ``WriteContext.load``).
"""

from __future__ import annotations

from collections.abc import Callable

import apsw
import numpy as np

from ..embedders import Embedder
from ._db import read_meta, rows
from ._schema import immediate
from ._sql_read import create_vec_table

Progress = Callable[[int, int], None]
BATCH = 64


def _changed_since(conn: apsw.Connection, mark: int) -> list[tuple[int, str | None, int]]:
    found = rows(conn, "SELECT seq, content, change FROM memories WHERE change > ? "
                       "ORDER BY seq", (mark,))
    return [(int(s), c, int(h)) for s, c, h in found]


def _write_vectors(conn: apsw.Connection, table: str, embedder: Embedder,
                   rows: list[tuple[int, str | None, int]]) -> None:
    live = [(seq, content) for seq, content, _ in rows if content is not None]
    vectors = embedder.embed([c for _, c in live]) if live else np.zeros((0, embedder.dim))
    for seq, _, _ in rows:
        conn.execute(f"DELETE FROM {table} WHERE rowid = ?", (seq,))
    for (seq, _), vector in zip(live, vectors, strict=True):
        conn.execute(f"INSERT INTO {table}(rowid, embedding) VALUES(?, ?)",
                     (seq, np.ascontiguousarray(vector, dtype="<f4").tobytes()))


def reembed(conn: apsw.Connection, embedder: Embedder, progress: Progress | None = None) -> int:
    """Re-embed every live memory with ``embedder`` and make it the database's embedder.

    Returns the number of memories embedded. Blocking; run it on a worker thread.
    """
    meta = read_meta(conn)
    old_table = meta.get("vec_table", "")
    generation = int(old_table.rsplit("_", 1)[1]) + 1 if old_table else 1
    table = f"memory_vec_{generation}"
    with immediate(conn):
        conn.execute(f"DROP TABLE IF EXISTS {table}")  # left over from an interrupted run
        create_vec_table(conn, table, embedder.dim)
    mark, done = -1, 0
    while True:
        rows = _changed_since(conn, mark)
        if len(rows) <= BATCH:
            break  # small enough to finish under the write lock
        total = done + len(rows)
        for start in range(0, len(rows), BATCH):
            chunk = rows[start:start + BATCH]
            with immediate(conn):
                _write_vectors(conn, table, embedder, chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
        mark = max(h for _, _, h in rows)
    with immediate(conn):
        rows = _changed_since(conn, mark)
        _write_vectors(conn, table, embedder, rows)
        done += len(rows)
        conn.executemany(
            "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)",
            [("embedder", embedder.model_id), ("dim", str(embedder.dim)), ("vec_table", table)],
        )
        if old_table:
            conn.execute(f"DROP TABLE {old_table}")
    if progress:
        progress(done, done)
    return sum(1 for _ in conn.execute(f"SELECT rowid FROM {table}"))
