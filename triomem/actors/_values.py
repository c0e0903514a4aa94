"""Domain values: memories, validated drafts and their limits. Pure, no I/O.

Validation lives here, in named constructors, so every entry point (engine API, MCP tools, CLI,
import, sync) rejects the same inputs with the same ``InvalidMemory(field, reason)``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from ._errors import InvalidMemory

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
DEFAULT_SPACE = "default"
DEFAULT_TYPE = "note"


@attrs.frozen
class Limits:
    """Input limits; every one is configurable through ``EngineConfig``."""

    max_content_bytes: int = attrs.field(default=64 * 1024, validator=attrs.validators.gt(0))
    max_tags: int = attrs.field(default=32, validator=attrs.validators.ge(0))
    max_tag_chars: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    max_metadata_bytes: int = attrs.field(default=16 * 1024, validator=attrs.validators.gt(0))


def utc_from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def ms_from_time(value: dt.datetime | float | int | str, field: str) -> int:
    """Epoch milliseconds from an aware datetime, epoch seconds, ISO 8601 text or a phrase
    ("yesterday", "3 days ago"; see ``_timephrase``). Naive datetimes are refused."""
    if isinstance(value, str):
        from ._timephrase import parse_time

        value = parse_time(value, field)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidMemory(field, "datetime must be timezone-aware")
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidMemory(field, "expected an aware datetime or epoch seconds")
    return int(value * 1000)


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def validate_content(content: object, limits: Limits, field: str = "content") -> str:
    if not isinstance(content, str):
        raise InvalidMemory(field, f"expected a string, got {type(content).__name__}")
    if not content.strip():
        raise InvalidMemory(field, "must not be empty or whitespace only")
    try:
        size = len(content.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidMemory(field, "is not valid Unicode (lone surrogate)") from None
    if size > limits.max_content_bytes:
        raise InvalidMemory(field, f"is {size} bytes; the limit is {limits.max_content_bytes}")
    if "\x00" in content:
        raise InvalidMemory(field, "must not contain NUL characters")
    return content


def validate_name(value: object, field: str) -> str:
    """A space or type name: 1-64 characters of letters, digits and ``._:-``."""
    if not isinstance(value, str):
        raise InvalidMemory(field, f"expected a string, got {type(value).__name__}")
    if not NAME_RE.fullmatch(value):
        raise InvalidMemory(
            field, "must be 1-64 characters of letters, digits, '.', '_', ':' or '-', "
            "starting with a letter or digit"
        )
    return value


def is_text(value: str) -> bool:
    """True if ``value`` is valid Unicode (no lone surrogates: it can be stored as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_TAG_CONTROL = re.compile("[\x00\n\r\t]")


def validate_tags(tags: object, limits: Limits, field: str = "tags") -> tuple[str, ...]:
    """Tags: a list of non-empty strings, stripped, duplicates removed, order kept."""
    # list and tuple first: the common case, without the slower ABC check
    if not isinstance(tags, list | tuple) and (isinstance(tags, str)
                                               or not isinstance(tags, Iterable)):
        raise InvalidMemory(field, "expected a list of strings")
    seen: dict[str, None] = {}
    for i, tag in enumerate(tags):
        if not isinstance(tag, str):
            raise InvalidMemory(f"{field}[{i}]", f"expected a string, got {type(tag).__name__}")
        tag = tag.strip()
        if not tag:
            raise InvalidMemory(f"{field}[{i}]", "must not be empty")
        if len(tag) > limits.max_tag_chars:
            raise InvalidMemory(f"{field}[{i}]", f"longer than {limits.max_tag_chars} characters")
        if _TAG_CONTROL.search(tag):
            raise InvalidMemory(f"{field}[{i}]", "must not contain control characters")
        if not is_text(tag):
            raise InvalidMemory(f"{field}[{i}]", "is not valid Unicode (lone surrogate)")
        seen[tag] = None
    if len(seen) > limits.max_tags:
        raise InvalidMemory(field, f"{len(seen)} tags; the limit is {limits.max_tags}")
    return tuple(seen)


def validate_metadata(metadata: object, limits: Limits, field: str = "metadata") -> str:
    """Metadata must be a JSON object; returns its canonical JSON text."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise InvalidMemory(field, f"expected a JSON object, got {type(metadata).__name__}")
    if _depth(metadata) > MAX_METADATA_DEPTH:
        raise InvalidMemory(field, f"nested deeper than {MAX_METADATA_DEPTH} levels")
    try:
        text = json.dumps(metadata, sort_keys=True, ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"))
        text.encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError, RecursionError) as exc:
        raise InvalidMemory(field, f"not representable as JSON: {exc}") from None
    if len(text.encode("utf-8")) > limits.max_metadata_bytes:
        raise InvalidMemory(field, f"larger than {limits.max_metadata_bytes} bytes as JSON")
    return text


def validate_idempotency_key(key: object, field: str = "idempotency_key") -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= 200 or not is_text(key):
        raise InvalidMemory(field, "expected a string of 1-200 characters")
    return key


MAX_METADATA_DEPTH = 32


def _depth(value: object) -> int:
    """Nesting depth of a JSON-like value, without recursion (a hostile value may be deeper
    than Python's stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        if deepest > MAX_METADATA_DEPTH:
            return deepest
        if isinstance(node, Mapping):
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list | tuple):
            stack.extend((child, level + 1) for child in node)
    return deepest


@attrs.frozen
class Memory:
    """One stored memory, as read back from the database."""

    id: str
    space: str
    content: str
    type: str
    tags: tuple[str, ...]
    metadata: Mapping[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime
    version: int
    origin: str
    content_hash: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Memory:
        """From ``MEMORY_COLUMNS`` order (see ``_sql``)."""
        (id_, space, content, type_, tags, metadata, created, updated, hlc, origin, chash) = row
        return cls(
            id=id_, space=space, content=content, type=type_,
            tags=tuple(json.loads(tags)), metadata=json.loads(metadata),
            created_at=utc_from_ms(created), updated_at=utc_from_ms(updated),
            version=hlc, origin=origin, content_hash=chash,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict: the shape MCP tools and export use."""
        return {
            "id": self.id, "space": self.space, "content": self.content, "type": self.type,
            "tags": list(self.tags), "metadata": dict(self.metadata),
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
            "version": self.version, "origin": self.origin, "content_hash": self.content_hash,
        }


@attrs.frozen
class Remembered:
    """The answer to remember: the memory, and whether this call created it.

    ``created`` is false when the idempotency key or the exact content already existed in the
    space; the existing memory is returned instead of a second copy.
    """

    memory: Memory
    created: bool


@attrs.frozen
class Page:
    """One page of a listing; pass ``next_cursor`` back to continue, ``None`` at the end."""

    memories: tuple[Memory, ...]
    next_cursor: str | None
