"""Import and export of memories as JSON records (one per line in a JSONL file).

An exported record carries every field: ``id``, ``space``, ``content``, ``type``, ``tags``,
``metadata``, ``created_at``, ``updated_at``, ``deleted_at``, ``version`` (the HLC),
``origin``, ``content_hash`` and, on request, ``vector``. Importing such a record applies that
exact version (last writer wins by version and origin), so a round trip is lossless and a
second import of the same file changes nothing. A record with only ``content`` (and optionally
``tags``, ``type``, ``space``, ``metadata``) is a new memory, deduplicated by content hash.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
import trio

from ..actors._errors import InvalidMemory, TriomemError
from ..actors._sql_read import ExportPage
from ..actors._sql_write import ApplyVersion, PutMemory
from ..actors._values import (
    DEFAULT_SPACE,
    DEFAULT_TYPE,
    Limits,
    content_hash,
    ms_from_time,
    validate_content,
    validate_metadata,
    validate_name,
    validate_tags,
)
from ._importers import BrokenLine

FULL_FIELDS = ("id", "version", "origin", "created_at", "updated_at")


@attrs.frozen
class ParsedRecord:
    line: int
    content: str | None
    space: str
    type: str
    tags: tuple[str, ...]
    metadata_json: str
    vector: Any  # used only when ``embedder`` is the importing engine's model
    embedder: str | None
    full: ApplyVersion | None  # None for a new memory


@attrs.frozen
class ImportReport:
    imported: int = 0
    unchanged: int = 0  # already present: same or newer version, or same content in the space
    errors: tuple[tuple[int, str], ...] = ()
    applied: bool = True  # False when errors stopped the whole import


def parse_record(obj: object, line: int, limits: Limits) -> ParsedRecord:
    """Validate one record. Raises InvalidMemory with the field prefixed by ``line N``."""
    try:
        return _parse(obj, line, limits)
    except InvalidMemory as exc:
        raise InvalidMemory(f"line {line}: {exc.field}", exc.reason) from None


def _parse(obj: object, line: int, limits: Limits) -> ParsedRecord:
    if isinstance(obj, BrokenLine):
        raise InvalidMemory("record", obj.reason)
    if not isinstance(obj, Mapping):
        raise InvalidMemory("record", "expected a JSON object")
    deleted = obj.get("deleted_at")
    content = obj.get("content")
    tombstone = deleted is not None
    if tombstone and content is not None:
        raise InvalidMemory("content", "a forgotten memory (deleted_at set) has no content")
    if not tombstone:
        content = validate_content(content, limits)
    space = validate_name(obj.get("space", DEFAULT_SPACE), "space")
    type_ = validate_name(obj.get("type", DEFAULT_TYPE), "type")
    tags = validate_tags(obj.get("tags", ()), limits)
    metadata_json = validate_metadata(obj.get("metadata"), limits)
    vector = obj.get("vector")
    full = None
    if any(k in obj for k in FULL_FIELDS):
        missing = [k for k in FULL_FIELDS if k not in obj]
        if missing:
            raise InvalidMemory(missing[0], "an exported record needs id, version, origin, "
                                            "created_at and updated_at together")
        for name in ("id", "origin"):
            if not isinstance(obj[name], str) or not 1 <= len(obj[name]) <= 64:
                raise InvalidMemory(name, "expected a string of 1-64 characters")
        version = obj["version"]
        if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**63:
            raise InvalidMemory("version", "expected a non-negative integer")
        if tombstone and not isinstance(deleted, str | int | float):
            raise InvalidMemory("deleted_at", "expected a timestamp")
        full = ApplyVersion(
            id=obj["id"], space=space, content=content if not tombstone else None,
            content_hash=content_hash(content) if isinstance(content, str) else None,
            type=type_, tags=() if tombstone else tags,
            metadata_json="{}" if tombstone else metadata_json,
            created_at=ms_from_time(obj["created_at"], "created_at"),
            updated_at=ms_from_time(obj["updated_at"], "updated_at"),
            deleted_at=ms_from_time(deleted, "deleted_at") if tombstone else None,  # type: ignore[arg-type]
            hlc=version, origin=obj["origin"], vector=None,
        )
    elif tombstone:
        raise InvalidMemory("deleted_at", "only an exported record (with id and version) can "
                                          "be a forgotten memory")
    embedder = obj.get("embedder")
    return ParsedRecord(line, content if isinstance(content, str) else None, space, type_,
                        tags, metadata_json, vector, embedder if isinstance(embedder, str)
                        else None, full)


async def _write_one(store: Any, record: ParsedRecord, vector: bytes | None) -> object:
    """``"applied"``, another outcome (nothing changed), or the TriomemError it raised."""
    try:
        if record.full is not None:
            outcome: object = await store.call(attrs.evolve(record.full, vector=vector))
            return outcome
        assert record.content is not None and vector is not None
        result = await store.call(PutMemory(
            space=record.space, content=record.content,
            content_hash=content_hash(record.content), type=record.type, tags=record.tags,
            metadata_json=record.metadata_json, vector=vector))
        return "applied" if result.created else "duplicate"
    except TriomemError as exc:
        return exc


async def _write_chunk(store: Any, chunk: list[ParsedRecord], vectors: dict[int, bytes]
                       ) -> list[object]:
    """Write a chunk concurrently, so the store group-commits it."""
    outcomes: list[object] = [None] * len(chunk)

    async def one(i: int) -> None:
        outcomes[i] = await _write_one(store, chunk[i], vectors.get(id(chunk[i])))

    async with trio.open_nursery() as nursery:
        for i in range(len(chunk)):
            nursery.start_soon(one, i)
    return outcomes


async def export_records(store: Any, *, include_forgotten: bool = False,
                         with_vectors: bool = False) -> AsyncIterator[dict[str, Any]]:
    """Stream every memory as a record, page by page (each page one short store read)."""
    after = 0
    while True:
        after, records = await store.call(
            ExportPage(after, 500, include_forgotten, with_vectors))
        if not records:
            return
        for record in records:
            yield record


async def import_records(
    store: Any,
    vector_for: Callable[[list[ParsedRecord]], Awaitable[list[bytes]]],
    records: Iterable[tuple[int, object]],
    limits: Limits,
    *,
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Validate every ``(line, record)`` first; with errors and not ``skip_bad`` nothing is
    imported. Then embed (or take the record's vector) and write in batches."""
    parsed: list[ParsedRecord] = []
    errors: list[tuple[int, str]] = []
    for line, obj in records:
        try:
            parsed.append(parse_record(obj, line, limits))
        except InvalidMemory as exc:
            errors.append((line, str(exc)))
    if errors and not skip_bad:
        return ImportReport(errors=tuple(errors), applied=False)
    imported = unchanged = 0
    batch_size = 64
    for start in range(0, len(parsed), batch_size):
        chunk = parsed[start:start + batch_size]
        live = [p for p in chunk if p.content is not None]
        try:
            vectors = dict(zip((id(p) for p in live), await vector_for(live), strict=True))
        except InvalidMemory as exc:
            errors.append((chunk[0].line, str(exc)))
            if not skip_bad:
                return ImportReport(imported, unchanged, tuple(errors), applied=imported > 0)
            continue
        outcomes = await _write_chunk(store, chunk, vectors)
        for record, result in zip(chunk, outcomes, strict=True):
            if result == "applied":
                imported += 1
            elif isinstance(result, TriomemError):
                errors.append((record.line, f"{result.kind}: {result}"))
            else:
                unchanged += 1
        if progress:
            progress(min(start + batch_size, len(parsed)), len(parsed))
    return ImportReport(imported, unchanged, tuple(errors))

