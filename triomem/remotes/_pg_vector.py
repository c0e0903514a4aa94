"""pgvector's ``vector`` type on a psycopg connection, in binary, without the pgvector package.

Vectors cross the contract as little-endian float32 bytes (``MemoryVersion.embedding``).
pgvector's binary wire format is ``uint16 dim, uint16 unused, float32[dim]``, all big-endian
(``vector_send`` / ``vector_recv``). Binary both ways keeps every float bit-exact; the text
form would round-trip through decimal.
"""

from __future__ import annotations

import struct
from typing import Any

import attrs
import numpy as np
import psycopg
from psycopg.adapt import Buffer, Dumper, Loader
from psycopg.pq import Format
from psycopg.types import TypeInfo

_HEADER = struct.Struct(">HH")


@attrs.frozen
class PgVector:
    """A query parameter for a ``vector`` column: little-endian float32 bytes."""

    data: bytes

    @property
    def dim(self) -> int:
        return len(self.data) // 4


class _VectorBinaryDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> Buffer | None:
        data = obj.data
        return _HEADER.pack(len(data) // 4, 0) + np.frombuffer(data, "<f4").astype(">f4").tobytes()


class _VectorBinaryLoader(Loader):
    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        raw = bytes(data)
        dim, _ = _HEADER.unpack_from(raw)
        return np.frombuffer(raw, ">f4", count=dim, offset=_HEADER.size).astype("<f4").tobytes()


class _VectorTextLoader(Loader):
    format = Format.TEXT

    def load(self, data: Buffer) -> bytes:
        text = bytes(data).decode("ascii").strip("[]")
        values = [float(x) for x in text.split(",")] if text else []
        return np.asarray(values, dtype="<f4").tobytes()


def register_vector(conn: psycopg.Connection[Any]) -> bool:
    """Teach ``conn`` the ``vector`` type (``PgVector`` out, ``bytes`` in).

    Returns False, registering nothing, when the extension is not installed in the database
    yet (the schema step installs it and calls this again). Blocking: a catalog query.
    """
    info = TypeInfo.fetch(conn, "vector")
    if info is None:
        return False
    dumper = type("VectorBinaryDumper", (_VectorBinaryDumper,), {"oid": info.oid})
    conn.adapters.register_dumper(PgVector, dumper)
    conn.adapters.register_loader(info.oid, _VectorBinaryLoader)
    conn.adapters.register_loader(info.oid, _VectorTextLoader)
    return True
