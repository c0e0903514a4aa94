"""Readers that turn files into ``(line, record)`` pairs for ``Engine.import_records``.

- ``read_jsonl``: triomem's own export (one JSON object per line). A broken line becomes a
  ``BrokenLine`` so the import reports it by line number.
- ``read_mcp_memory_json``: the official MCP memory server's ``memory.json`` (JSON lines of
  ``{"type": "entity", "name", "entityType", "observations"}`` and
  ``{"type": "relation", "from", "to", "relationType"}``): one memory per observation and per
  relation.
- ``read_mcp_memory_service``: mcp-memory-service's SQLite database (its ``memories`` table:
  content, tags as a comma list or JSON, memory_type, metadata, created/updated times), opened
  read-only.

Foreign memories become complete records with deterministic ids and versions (derived from the
source content and its timestamps), so importing the same file twice changes nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import apsw
import attrs

from ..actors._errors import InvalidMemory

FORMATS = ("jsonl", "mcp-memory", "mcp-memory-service")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]+")


@attrs.frozen
class BrokenLine:
    """A line that is not JSON: ``reason`` says why."""

    reason: str


def read_jsonl(path: str | Path) -> Iterator[tuple[int, object]]:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                yield number, BrokenLine(f"not JSON: {exc}")


def _name(value: object, default: str) -> str:
    text = _NAME_UNSAFE.sub("-", str(value or "")).strip("-._:")[:64]
    return text or default


def _tag(value: object) -> str:
    return " ".join(str(value).split())[:64]


def _stamp(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def _record(*, content: str, created_ms: int, updated_ms: int, tags: list[str], type_: str,
            metadata: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """A complete record whose id and version depend only on the source memory."""
    digest = hashlib.sha256(f"{origin}\x00{content}".encode("utf-8", "surrogatepass")).digest()
    rand = int.from_bytes(digest[:10], "big")
    value = ((created_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
             | 0b10 << 62 | (rand & ((1 << 62) - 1)))
    return {
        "id": str(uuid.UUID(int=value)), "content": content, "type": type_,
        "tags": [t for t in dict.fromkeys(_tag(t) for t in tags) if t],
        "metadata": dict(metadata), "created_at": _stamp(created_ms),
        "updated_at": _stamp(max(updated_ms, created_ms)), "version": updated_ms << 16,
        "origin": origin,
    }


def read_mcp_memory_json(path: str | Path) -> Iterator[tuple[int, object]]:
    """Entities and relations of the official MCP memory server's knowledge graph file."""
    when = int(Path(path).stat().st_mtime * 1000)  # the graph keeps no times of its own
    for number, obj in read_jsonl(path):
        if not isinstance(obj, Mapping) or obj.get("type") not in ("entity", "relation"):
            yield number, BrokenLine("expected an entity or relation object")
            continue
        if obj["type"] == "entity":
            name, kind = str(obj.get("name", "")), str(obj.get("entityType", ""))
            observations = obj.get("observations") or []
            if not name or not isinstance(observations, list):
                yield number, BrokenLine("entity needs a name and a list of observations")
                continue
            for observation in observations:
                yield number, _record(
                    content=f"{name}: {observation}", created_ms=when, updated_ms=when,
                    tags=[kind, name] if kind else [name], type_="observation",
                    metadata={"source": "mcp-memory", "entity": name, "entityType": kind},
                    origin="mcp-memory")
        else:
            source, target = str(obj.get("from", "")), str(obj.get("to", ""))
            relation = str(obj.get("relationType", ""))
            if not (source and target and relation):
                yield number, BrokenLine("relation needs from, to and relationType")
                continue
            yield number, _record(
                content=f"{source} {relation} {target}", created_ms=when, updated_ms=when,
                tags=[source, target], type_="relation",
                metadata={"source": "mcp-memory", "from": source, "to": target,
                          "relationType": relation},
                origin="mcp-memory")


def _seconds_to_ms(value: object, fallback: int) -> int:
    if isinstance(value, int | float) and value > 0:
        return int(value * 1000 if value < 1e11 else value)  # seconds, or already ms
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return fallback
        return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()
                   * 1000)
    return fallback


def _service_tags(raw: object) -> list[str]:
    if not raw:
        return []
    text = str(raw).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            return [str(t) for t in parsed if str(t).strip()]
    return [t.strip() for t in text.split(",") if t.strip()]


def read_mcp_memory_service(path: str | Path) -> Iterator[tuple[int, object]]:
    """Memories of an mcp-memory-service SQLite database, opened read-only (never written)."""
    try:
        conn = apsw.Connection(f"file:{Path(path).absolute()}?mode=ro",
                               flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(memories)")}
    except apsw.Error as exc:
        raise InvalidMemory("file", f"cannot read {path} as an SQLite database: {exc}") from None
    try:
        if "content" not in columns:
            raise InvalidMemory("file", f"{path} has no memories table with content")
        wanted = [c for c in ("content", "tags", "memory_type", "metadata", "created_at",
                              "updated_at", "deleted_at") if c in columns]
        fallback = int(Path(path).stat().st_mtime * 1000)
        for number, values in enumerate(
                conn.execute(f"SELECT {', '.join(wanted)} FROM memories ORDER BY rowid"),
                start=1):
            row = dict(zip(wanted, values, strict=True))
            if row.get("deleted_at"):
                continue
            content = row["content"]
            if not isinstance(content, str):
                yield number, BrokenLine("content is not text")
                continue
            try:
                metadata = json.loads(row.get("metadata") or "{}")
            except (TypeError, ValueError):
                metadata = {"raw_metadata": str(row.get("metadata"))}
            if not isinstance(metadata, dict):
                metadata = {"raw_metadata": metadata}
            created = _seconds_to_ms(row.get("created_at"), fallback)
            yield number, _record(
                content=content, created_ms=created,
                updated_ms=_seconds_to_ms(row.get("updated_at"), created),
                tags=_service_tags(row.get("tags")),
                type_=_name(row.get("memory_type"), "note"),
                metadata={**metadata, "source": "mcp-memory-service"},
                origin="mcp-memory-service")
    finally:
        conn.close()


def read_records(path: str | Path, fmt: str) -> Iterator[tuple[int, object]]:
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "mcp-memory":
        return read_mcp_memory_json(path)
    if fmt == "mcp-memory-service":
        return read_mcp_memory_service(path)
    raise InvalidMemory("format", f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
