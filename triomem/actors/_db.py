"""Typed helpers over ``apsw`` cursors: SQLite values come back as ``Any`` rows here, once,
instead of casts at every call site."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw

Row = tuple[Any, ...]


def rows(conn: apsw.Connection, sql: str, params: Sequence[Any] = ()) -> list[Row]:
    return [tuple(r) for r in conn.execute(sql, params)]


def scalar(conn: apsw.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row, or None when there is no row."""
    found = conn.execute(sql, params).fetchall()  # run to completion: no statement left open
    return found[0][0] if found else None


def read_meta(conn: apsw.Connection) -> dict[str, str]:
    return {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
