"""JSON-RPC 2.0 framing for MCP: parse one message, build one message. Pure, no I/O.

MCP narrows JSON-RPC: ids are strings or integers (never null, never fractional), params are
objects, and batching was removed in 2025-06-18, so a JSON array is an Invalid Request. Parsing
never raises: every input becomes a value the connection can act on, which is what lets the
connection promise that nothing a peer sends can crash it.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Mapping
from typing import Any, TypeAlias, TypeGuard

import attrs

from ._errors import RpcError, rpc_error

RequestId: TypeAlias = str | int
JsonObject: TypeAlias = dict[str, Any]

# Arrays and objects nested in one message. Without a limit of its own, how deep a message may
# nest would depend on how deep the parser's stack happens to be (Python's recursion limit),
# and a document accepted here could fail when a task deeper in the stack encodes it again (the
# answer that echoes it) or the engine re-reads it from storage. MCP messages need a few
# levels; tool arguments get the rest (the engine caps metadata at 32).
MAX_NESTING = 128

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


@attrs.frozen
class Request:
    """A request: it must get exactly one answer (unless cancelled)."""

    id: RequestId
    method: str
    params: Mapping[str, Any]


@attrs.frozen
class Notification:
    """A notification: never answered."""

    method: str
    params: Mapping[str, Any]


@attrs.frozen
class PeerResponse:
    """A response from the peer. We send no requests, so these are ignored."""

    id: RequestId | None


@attrs.frozen
class Malformed:
    """A message that could not be read as a request; ``error`` is the answer to send.

    ``id`` is the request's id when it could be read, else None (answered with ``"id": null``).
    """

    id: RequestId | None
    error: RpcError


@attrs.frozen
class Ignored:
    """Something that needs no answer (a notification with unusable params)."""

    reason: str


Message: TypeAlias = Request | Notification | PeerResponse | Malformed | Ignored


def is_request_id(value: object) -> TypeGuard[RequestId]:
    """Strings and integers are ids; bool is an int subclass in Python but not in JSON."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's json accepts them unless told otherwise.
    raise ValueError(f"{name} is not valid JSON")


def parse_message(data: str | bytes) -> Message:
    """Read one JSON-RPC message. Never raises."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        if _nested_deeper_than(text, MAX_NESTING):
            raise RecursionError(f"nested deeper than {MAX_NESTING}")
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and the over-long integer limit; RecursionError a
        # deeply nested document. Neither detail is useful to the peer beyond "not JSON".
        return Malformed(None, rpc_error("parse_error", data={"reason": _short(exc)}))
    return classify(value)


def _nested_deeper_than(text: str, limit: int) -> bool:
    """Whether the brackets outside string literals of ``text`` nest deeper than ``limit``.
    Free for ordinary messages (too few brackets to nest that deep); linear otherwise."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def _short(exc: BaseException) -> str:
    return str(exc)[:200] if not isinstance(exc, RecursionError) else "nested too deeply"


def classify(value: object) -> Message:
    """Classify an already-decoded JSON value as a JSON-RPC message. Never raises."""
    if isinstance(value, list):
        return Malformed(None, rpc_error("invalid_request", "Batching is not supported: send one "
                                         "JSON-RPC object per message"))
    if not isinstance(value, dict):
        return Malformed(None, rpc_error("invalid_request", "A JSON-RPC message must be an object"))
    has_id = "id" in value
    raw_id = value.get("id")
    readable_id: RequestId | None = raw_id if is_request_id(raw_id) else None
    if value.get("jsonrpc") != "2.0":
        return Malformed(readable_id, rpc_error("invalid_request", 'Missing "jsonrpc": "2.0"'))
    if "method" not in value:
        if "result" in value or "error" in value:
            return PeerResponse(readable_id)
        return Malformed(readable_id, rpc_error("invalid_request", 'Missing "method"'))
    method = value["method"]
    if not isinstance(method, str):
        return Malformed(readable_id, rpc_error("invalid_request", '"method" must be a string'))
    if has_id and readable_id is None:
        return Malformed(None, rpc_error("invalid_request",
                                         '"id" must be a string or an integer (not null)'))
    params = value.get("params", {})
    if readable_id is None:
        if not isinstance(params, dict):
            return Ignored(f"notification {method!r} with non-object params")
        return Notification(method, params)
    if not isinstance(params, dict):
        return Malformed(readable_id, rpc_error("invalid_params", '"params" must be an object'))
    return Request(readable_id, method, params)


def dumps(message: Mapping[str, Any]) -> str:
    """Serialize one outgoing message as compact JSON text on one line.

    Raises ValueError for values that are not JSON (NaN, infinities). Text that holds a lone
    surrogate (which JSON escapes can carry in) is re-encoded ASCII-escaped, so the result is
    always valid UTF-8 for a WebSocket text frame or a stdio line.
    """
    text = json.dumps(message, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    return text


def dumps_result(request_id: RequestId, result: Mapping[str, Any], *, name: str,
                 encoded: str) -> str:
    """``dumps(result_message(request_id, {**result, name: value}))`` where ``encoded`` is
    ``dumps(value)``, spliced in rather than encoded again. ``result`` must not be empty."""
    text = dumps(result_message(request_id, result))
    # The result is the message's last member: its closing brace is the text's last but one.
    return f"{text[:-2]},{json.dumps(name)}:{encoded}}}}}"


def result_message(request_id: RequestId, result: Mapping[str, Any]) -> JsonObject:
    return {"jsonrpc": "2.0", "id": request_id, "result": dict(result)}


def error_message(request_id: RequestId | None, error: RpcError) -> JsonObject:
    body: JsonObject = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return {"jsonrpc": "2.0", "id": request_id, "error": body}


def notification_message(method: str, params: Mapping[str, Any]) -> JsonObject:
    return {"jsonrpc": "2.0", "method": method, "params": dict(params)}
