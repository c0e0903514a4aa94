"""JSON Schemas of the MCP tools' inputs and outputs (2020-12; root type object).

Input schemas check shapes and types only. Limits that ``EngineConfig`` can change (content
size, tag count, name syntax) are left to the engine, which names the field it rejects, so the
two can never disagree.
"""

from __future__ import annotations

from typing import Any, Final

JsonSchema = dict[str, Any]

MAX_LIMIT: Final = 1000  # the engine's cap on ``limit`` (triomem.engine._engine.MAX_LIMIT)


def _string(description: str, **extra: Any) -> JsonSchema:
    return {"type": "string", "description": description, **extra}


def _tags(description: str) -> JsonSchema:
    return {"type": "array", "items": {"type": "string"}, "description": description}


def _limit(default: int) -> JsonSchema:
    return {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default,
            "description": f"Maximum number of memories to return (default {default})."}


def _time(description: str) -> JsonSchema:
    return _string(f"{description} ISO 8601 (2025-06-01, 2025-06-01T12:30:00Z; without an "
                   'offset, UTC) or a phrase: "yesterday", "3 days ago", "last week".')


def obj(properties: dict[str, JsonSchema], required: tuple[str, ...] = (), *,
        closed: bool = True) -> JsonSchema:
    schema: JsonSchema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if closed:
        schema["additionalProperties"] = False
    return schema


ID = _string("The memory id, as returned by memory_store, memory_recall or memory_list.",
             minLength=1, maxLength=64)
SPACE = _string('Namespace of the memory (default "default"): letters, digits, ".", "_", ":", '
                '"-".')
TYPE = _string('Kind of memory, e.g. "note", "fact", "preference" (default "note").')
METADATA = {"type": "object", "description": "Free-form JSON object stored with the memory."}

STORE_INPUT = obj({
    "content": _string("The text to remember. Exact duplicates in the same space are stored "
                       "once.", minLength=1),
    "tags": _tags("Labels for filtering later."),
    "type": TYPE,
    "metadata": METADATA,
    "space": SPACE,
    "idempotency_key": _string("Retry key: a repeated key returns the memory stored the first "
                               "time instead of storing again.", minLength=1, maxLength=200),
}, ("content",))

RECALL_INPUT = obj({
    "query": _string("What to look for, in natural language.", minLength=1),
    "limit": _limit(10),
    "space": _string("Only memories in this space."),
    "type": _string("Only memories of this type."),
    "tags_all": _tags("Only memories that have every one of these tags."),
    "tags_any": _tags("Only memories that have at least one of these tags."),
    "after": _time("Only memories created at or after this time."),
    "before": _time("Only memories created before this time."),
    "min_score": {"type": "number", "minimum": 0, "maximum": 1, "default": 0,
                  "description": "Drop hits whose relevance score (0 to 1) is lower."},
    "include_partial": {"type": "boolean", "default": True,
                        "description": "When the server's deadline hits, answer with what is "
                        "ready (partial: true) instead of an error asking to retry."},
}, ("query",))

GET_INPUT = obj({"id": ID}, ("id",))

UPDATE_INPUT = obj({
    "id": ID,
    "content": _string("New text (re-embedded).", minLength=1),
    "tags": _tags("New tags; replaces all existing tags."),
    "type": TYPE,
    "metadata": {"type": "object", "description": "New metadata; replaces the old object."},
}, ("id",))

FORGET_INPUT = obj({"id": ID}, ("id",))

LIST_INPUT = obj({
    "space": _string("Only memories in this space."),
    "type": _string("Only memories of this type."),
    "tags_all": _tags("Only memories that have every one of these tags."),
    "tags_any": _tags("Only memories that have at least one of these tags."),
    "created_after": _time("Only memories created at or after this time."),
    "created_before": _time("Only memories created before this time."),
    "updated_after": _time("Only memories updated at or after this time."),
    "updated_before": _time("Only memories updated before this time."),
    "limit": _limit(50),
    "cursor": _string("The next_cursor of the previous page, to continue a listing."),
})

STATS_INPUT = obj({})

SYNC_STATUS_INPUT = obj({})

CONFLICTS_INPUT = obj({"limit": _limit(100)})

MEMORY: Final[JsonSchema] = obj({
    "id": {"type": "string"},
    "space": {"type": "string"},
    "content": {"type": "string"},
    "type": {"type": "string"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "metadata": {"type": "object"},
    "created_at": {"type": "string", "format": "date-time"},
    "updated_at": {"type": "string", "format": "date-time"},
    "version": {"type": "integer"},
    "origin": {"type": "string"},
    "content_hash": {"type": "string"},
}, ("id", "space", "content", "type", "tags", "metadata", "created_at", "updated_at",
    "version"), closed=False)

STORE_OUTPUT = obj({"created": {"type": "boolean"}, "memory": MEMORY}, ("created", "memory"),
                   closed=False)

RECALL_OUTPUT = obj({
    "hits": {"type": "array", "items": obj({
        "memory": MEMORY,
        "score": {"type": "number"},
        "vector_similarity": {"type": ["number", "null"]},
        "text_rank": {"type": ["integer", "null"]},
    }, ("memory", "score"), closed=False)},
    "partial": {"type": "boolean", "description": "True when recall answered with what it had "
                "by its deadline: retry for a complete answer."},
    "legs_pending": {"type": "array", "items": {"type": "string"},
                     "description": "The searches that had not finished when a partial answer "
                     "was given."},
}, ("hits", "partial"), closed=False)

MEMORY_OUTPUT = obj({"memory": MEMORY}, ("memory",), closed=False)

FORGET_OUTPUT = obj({"id": {"type": "string"}, "erased": {"type": "boolean"}},
                    ("id", "erased"), closed=False)

LIST_OUTPUT = obj({
    "memories": {"type": "array", "items": MEMORY},
    "next_cursor": {"type": ["string", "null"]},
}, ("memories", "next_cursor"), closed=False)

# The engine's statistics grow as the engine does; pin only what a client can rely on.
STATS_OUTPUT = obj({"path": {"type": "string"}, "embedder": {"type": "string"}},
                   ("path", "embedder"), closed=False)

SYNC_STATUS_OUTPUT = obj({
    "state": {"type": "string", "description": "idle, syncing, backoff or paused"},
    "paused_reason": {"type": ["string", "null"]},
    "outbox": {"type": "integer", "description": "Local changes not yet on the remote."},
    "dead_letters": {"type": "integer"},
    "conflicts": {"type": "integer"},
    "last_error": {"type": ["string", "null"]},
    "retry_in": {"type": ["number", "null"]},
}, ("state", "outbox", "dead_letters", "conflicts"), closed=False)

CONFLICTS_OUTPUT = obj({
    "conflicts": {"type": "array", "items": obj({
        "id": {"type": "string"},
        "content": {"type": ["string", "null"]},
        "hlc": {"type": "integer"},
        "origin": {"type": "string"},
    }, ("id", "hlc", "origin"), closed=False)},
}, ("conflicts",), closed=False)
