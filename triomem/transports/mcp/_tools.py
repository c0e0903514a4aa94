"""The MCP tools: names, schemas, annotations, and the pure halves of running one.

A tool call is split so the sans-IO core never awaits anything:

1. ``validate_arguments`` checks the arguments against the input schema (``jsonschema-rs``:
   a compiled validator, about 0.1 µs for a valid store call against 17 µs for the pure-Python
   ``jsonschema``, measured on the hot path of every call);
2. ``ToolSpec.bind`` turns valid arguments into an ``EngineCall``: a plain value naming one
   ``Engine`` method and its arguments (time strings already parsed);
3. the async driver performs the call (``perform`` in ``triomem.transports._driver``);
4. ``ToolSpec.present`` turns the engine's answer into ``structuredContent``.

The order of ``TOOLS`` is the order ``tools/list`` reports (deterministic, SEP-2549).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import attrs
import jsonschema_rs

from ...engine import InvalidMemory, Memory, Page, RecallResult, Remembered
from . import _schemas as s
from ._jsonrpc import dumps
from ._times import parse_time

EngineMethod = Literal["remember", "recall", "get", "update", "forget", "list", "statistics",
                       "sync_status", "conflicts"]


@attrs.frozen
class EngineCall:
    """One engine method call, as data: ``await getattr(engine, method)(*args, **kwargs)``."""

    method: EngineMethod
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ToolSpec:
    name: str
    title: str
    description: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    annotations: Mapping[str, Any]
    bind: Callable[[Mapping[str, Any]], EngineCall]
    present: Callable[[EngineCall, Any], dict[str, Any]]
    reports_progress: bool = False  # the engine method takes a ``progress`` callback

    def describe(self) -> dict[str, Any]:
        """This tool's entry in a ``tools/list`` result."""
        return {"name": self.name, "title": self.title, "description": self.description,
                "inputSchema": dict(self.input_schema), "outputSchema": dict(self.output_schema),
                "annotations": {"title": self.title, **self.annotations}}

    def result(self, call: EngineCall, value: Any) -> ToolResult:
        """The ``CallToolResult`` for a successful call: structured content and a text copy,
        encoded once (the text copy is the structured content's JSON)."""
        structured = dumps(self.present(call, value))
        return ToolResult({"content": [{"type": "text", "text": structured}], "isError": False},
                          structured)


@attrs.frozen
class ToolResult:
    """A ``CallToolResult`` whose ``structuredContent`` is already JSON text, spliced into the
    reply (``dumps_result``) rather than encoded a second time beside its text copy. A store's
    answer is about 1 KB, a recall's about 12 KB."""

    members: Mapping[str, Any]  # every member but structuredContent
    structured: str  # structuredContent, encoded by ``dumps``

    def to_json(self) -> dict[str, Any]:
        """The result as one JSON value (for hosts and tests; the wire uses the parts)."""
        return {**self.members, "structuredContent": json.loads(self.structured)}


# -- argument helpers ----------------------------------------------------------------------

def _pick(arguments: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """The given arguments that are present (absent ones keep the engine's defaults)."""
    return {name: arguments[name] for name in names if name in arguments}


def _times(arguments: Mapping[str, Any], *names: str) -> dict[str, Any]:
    return {name: parse_time(arguments[name], name) for name in names if name in arguments}


# -- the tools -----------------------------------------------------------------------------

def _bind_store(a: Mapping[str, Any]) -> EngineCall:
    return EngineCall("remember", (a["content"],),
                      _pick(a, "tags", "type", "metadata", "space", "idempotency_key"))


def _present_store(_: EngineCall, value: Remembered) -> dict[str, Any]:
    return {"created": value.created, "memory": value.memory.to_json()}


def _bind_recall(a: Mapping[str, Any]) -> EngineCall:
    return EngineCall("recall", (a["query"],), {
        **_pick(a, "limit", "space", "type", "tags_all", "tags_any", "min_score",
                "include_partial"),
        **_times(a, "after", "before")})


def _present_recall(_: EngineCall, value: RecallResult) -> dict[str, Any]:
    hits = [{"memory": h.memory.to_json(), "score": h.score,
             "vector_similarity": h.vector_similarity, "text_rank": h.text_rank}
            for h in value.hits]
    return {"hits": hits, "partial": value.partial, "legs_pending": list(value.legs_pending)}


def _bind_get(a: Mapping[str, Any]) -> EngineCall:
    return EngineCall("get", (a["id"],))


def _present_memory(_: EngineCall, value: Memory) -> dict[str, Any]:
    return {"memory": value.to_json()}


def _bind_update(a: Mapping[str, Any]) -> EngineCall:
    return EngineCall("update", (a["id"],), _pick(a, "content", "tags", "type", "metadata"))


def _bind_forget(a: Mapping[str, Any]) -> EngineCall:
    return EngineCall("forget", (a["id"],))


def _present_forget(call: EngineCall, value: bool) -> dict[str, Any]:
    return {"id": call.args[0], "erased": value}


def _bind_list(a: Mapping[str, Any]) -> EngineCall:
    return EngineCall("list", (), {
        **_pick(a, "space", "type", "tags_all", "tags_any", "limit", "cursor"),
        **_times(a, "created_after", "created_before", "updated_after", "updated_before")})


def _present_list(_: EngineCall, value: Page) -> dict[str, Any]:
    return {"memories": [m.to_json() for m in value.memories], "next_cursor": value.next_cursor}


def _bind_stats(_: Mapping[str, Any]) -> EngineCall:
    return EngineCall("statistics")


def _present_stats(_: EngineCall, value: Any) -> dict[str, Any]:
    # EngineStatistics is a tree of frozen attrs records of JSON scalars.
    structured: dict[str, Any] = attrs.asdict(value)  # tuples become lists
    return structured


def _bind_sync_status(_: Mapping[str, Any]) -> EngineCall:
    return EngineCall("sync_status")


def _bind_conflicts(a: Mapping[str, Any]) -> EngineCall:
    return EngineCall("conflicts", (), _pick(a, "limit"))


def _present_conflicts(_: EngineCall, value: list[dict[str, Any]]) -> dict[str, Any]:
    return {"conflicts": value}


# Annotations are hints (clients must not trust them); "the world of a memory tool is not
# open" is the spec's own example for openWorldHint. destructiveHint defaults to true in the
# spec, so every tool that is not read-only says what it is.
_READ: Final = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": False}
_WRITE: Final = {"readOnlyHint": False, "destructiveHint": False, "openWorldHint": False}

TOOLS: Final[tuple[ToolSpec, ...]] = (
    ToolSpec(
        "memory_store", "Store a memory",
        "Remember a piece of text for later: a fact, a preference, a decision, a note. Add "
        "tags, a type and a space to organise memories. Storing the exact same text again in "
        "the same space returns the existing memory (created: false) instead of a copy.",
        s.STORE_INPUT, s.STORE_OUTPUT, {**_WRITE, "idempotentHint": True},
        _bind_store, _present_store),
    ToolSpec(
        "memory_recall", "Recall memories",
        "Search memories by meaning and by words (hybrid search), best match first. Filter by "
        "space, type, tags and creation time (ISO dates or phrases like \"yesterday\"). A "
        "result with partial: true was cut short by the server's deadline; retry for a "
        "complete answer.",
        s.RECALL_INPUT, s.RECALL_OUTPUT, _READ, _bind_recall, _present_recall,
        reports_progress=True),
    ToolSpec(
        "memory_get", "Get a memory",
        "Fetch one memory by its id.",
        s.GET_INPUT, s.MEMORY_OUTPUT, _READ, _bind_get, _present_memory),
    ToolSpec(
        "memory_update", "Update a memory",
        "Change the content, tags, type or metadata of a memory; fields not given stay as "
        "they are. New content is re-embedded.",
        s.UPDATE_INPUT, s.MEMORY_OUTPUT, {**_WRITE, "idempotentHint": True},
        _bind_update, _present_memory),
    ToolSpec(
        "memory_forget", "Forget a memory",
        "Erase a memory's content, tags and metadata for good. erased is false when it was "
        "already forgotten.",
        s.FORGET_INPUT, s.FORGET_OUTPUT,
        {**_WRITE, "destructiveHint": True, "idempotentHint": True},
        _bind_forget, _present_forget),
    ToolSpec(
        "memory_list", "List memories",
        "List memories newest first, filtered by space, type, tags and creation or update "
        "time. Pass next_cursor back as cursor to get the next page.",
        s.LIST_INPUT, s.LIST_OUTPUT, _READ, _bind_list, _present_list),
    ToolSpec(
        "memory_stats", "Memory statistics",
        "Counts and sizes of the memory database, and the state of the engine.",
        s.STATS_INPUT, s.STATS_OUTPUT, _READ, _bind_stats, _present_stats),
    ToolSpec(
        "memory_sync_status", "Replication status",
        "The state of replication to the remote (PostgreSQL or a hub): changes not yet "
        "pushed, last push and pull, backoff or pause and why, dead letters, conflicts. An "
        "error result when no remote is configured.",
        s.SYNC_STATUS_INPUT, s.SYNC_STATUS_OUTPUT, _READ, _bind_sync_status, _present_stats),
    ToolSpec(
        "memory_conflicts", "Replication conflicts",
        "Versions of memories that lost a last-writer-wins contest between devices, newest "
        "first. They are kept, never dropped: use them to restore an edit by hand.",
        s.CONFLICTS_INPUT, s.CONFLICTS_OUTPUT, _READ, _bind_conflicts, _present_conflicts),
)

TOOLS_BY_NAME: Final[Mapping[str, ToolSpec]] = {tool.name: tool for tool in TOOLS}
_VALIDATORS: Final[Mapping[str, jsonschema_rs.Validator]] = {
    tool.name: jsonschema_rs.validator_for(dict(tool.input_schema)) for tool in TOOLS}


# -- validation ----------------------------------------------------------------------------

def _field_path(path: Any) -> str:
    """``["tags", 0]`` -> ``tags[0]``: the engine's own spelling of a field."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: jsonschema_rs.ValidationError, schema: Mapping[str, Any]
              ) -> tuple[str, str]:
    """(field, reason) for one schema violation of ``schema``."""
    field = _field_path(error.instance_path)
    kind = error.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        return (f"{field}.{kind.property}" if field else kind.property), "is required"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.AdditionalProperties):
        name = sorted(map(str, kind.unexpected))[0]
        parent: Any = schema
        for part in error.schema_path[:-1]:  # up from the ``additionalProperties`` keyword
            parent = parent[part]
        allowed = ", ".join(parent.get("properties", {})) or "none"
        return (f"{field}.{name}" if field else name), f"is not a known argument (allowed: {allowed})"
    reason = error.message
    if len(reason) > 300:  # the message quotes the instance, which may be large
        reason = reason[:300] + "..."
    return field or "arguments", reason


def validate_arguments(tool: ToolSpec, arguments: Mapping[str, Any]) -> None:
    """Raise ``InvalidMemory(field, reason)`` if ``arguments`` break the tool's input schema.
    The first violation is named, in the schema's order of keywords."""
    validator = _VALIDATORS[tool.name]
    try:
        if validator.is_valid(arguments):  # the hot path: no error objects built
            return
        error = next(iter(validator.iter_errors(arguments)))
    except UnicodeEncodeError:
        # A lone surrogate (JSON escapes can carry one in) cannot cross into Rust in a key or
        # an error message. The schema only checks shapes, so a copy with each one replaced
        # (one character for one) answers the same; whether the engine takes such text is
        # the engine's decision (content and tags: no; a recall query: yes).
        replaced = next(iter(validator.iter_errors(_replace_surrogates(arguments))), None)
        if replaced is None:
            return
        error = replaced
    field, reason = _describe(error, tool.input_schema)
    raise InvalidMemory(field, reason)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def bind(tool: ToolSpec, arguments: Mapping[str, Any]) -> EngineCall:
    """Validate ``arguments`` and turn them into an engine call. Raises InvalidMemory."""
    validate_arguments(tool, arguments)
    return tool.bind(arguments)
