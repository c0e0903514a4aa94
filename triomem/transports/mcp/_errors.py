"""Every error the MCP layer can send, in one table.

Two kinds of failure reach a client (spec 2025-11-25, server/tools.mdx; SEP-1303):

- **Protocol errors** are JSON-RPC ``error`` responses: unreadable or malformed messages,
  unknown methods or tools, bad params, lifecycle violations, and engine conditions that stop
  a request before any tool runs (the server is shutting down, the connection has too many
  requests in flight). Their code comes from ``ERRORS`` below and ``data.kind`` names the row.
- **Tool errors** are ``tools/call`` *results* with ``isError: true``: invalid arguments, not
  found, store busy, embedder down, any ``TriomemError``. The model sees them and can act, so
  they name the offending field when there is one.

Engine conditions use the implementation-defined band -32000..-32019. We start at -32003:
-32000 and -32001 are what the SDKs report *locally* for "connection closed" and "request
timed out", and -32002 is retired by the spec (never reused). A new ``TriomemError`` kind that
this table does not know yet maps to ``engine_error`` (-32019) rather than failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from ...engine import InvalidMemory, TriomemError


@attrs.frozen
class ErrorCode:
    code: int
    message: str


@attrs.frozen
class RpcError:
    """A JSON-RPC error object, ready to send."""

    code: int
    message: str
    data: Mapping[str, Any] | None = None

    @property
    def kind(self) -> str | None:
        return None if self.data is None else self.data.get("kind")


ERRORS: Final[Mapping[str, ErrorCode]] = {
    # JSON-RPC 2.0
    "parse_error": ErrorCode(-32700, "Parse error"),
    "invalid_request": ErrorCode(-32600, "Invalid Request"),
    "not_initialized": ErrorCode(-32600, "Not initialized: send initialize first"),
    "already_initialized": ErrorCode(-32600, "Already initialized"),
    "duplicate_id": ErrorCode(-32600, "A request with this id is already in flight"),
    "message_too_large": ErrorCode(-32600, "Message too large"),
    "method_not_found": ErrorCode(-32601, "Method not found"),
    "invalid_params": ErrorCode(-32602, "Invalid params"),
    "unknown_tool": ErrorCode(-32602, "Unknown tool"),
    "invalid_cursor": ErrorCode(-32602, "Invalid cursor"),
    "internal_error": ErrorCode(-32603, "Internal error"),
    # MCP 2026-07-28
    "missing_capability": ErrorCode(-32021, "Missing required client capability"),
    "unsupported_protocol_version": ErrorCode(-32022, "Unsupported protocol version"),
    # Engine and server conditions (-32003..-32019; see the module docstring)
    "shutting_down": ErrorCode(-32003, "The server is shutting down; retry on a new connection"),
    "overloaded": ErrorCode(-32004, "Too many requests in flight on this connection"),
    "engine_closed": ErrorCode(-32005, "The memory engine is closed"),
    "store_busy": ErrorCode(-32006, "The database is locked by another process"),
    "store_io": ErrorCode(-32007, "The database could not be written"),
    "store_corrupt": ErrorCode(-32008, "The database file is not usable"),
    "schema_too_new": ErrorCode(-32009, "The database was written by a newer triomem"),
    "embedder_mismatch": ErrorCode(-32010, "The database was embedded by another model"),
    "embedder_unavailable": ErrorCode(-32011, "The embedding model is unavailable"),
    "recall_timeout": ErrorCode(-32012, "Recall is still working; retry"),
    "remote_unavailable": ErrorCode(-32013, "The remote backend is unavailable"),
    # Sync's finer remote conditions share the remote code; data.kind tells them apart.
    "remote_transient": ErrorCode(-32013, "The remote backend is unreachable for now"),
    "remote_permanent": ErrorCode(-32013, "The remote backend refused the data"),
    "remote_auth": ErrorCode(-32013, "The remote backend refused the credentials"),
    "upgrade_needed": ErrorCode(-32013, "The remote backend needs a newer triomem"),
    "clock_skew": ErrorCode(-32013, "This device's clock is too far ahead of the remote"),
    "invalid_input": ErrorCode(-32014, "Invalid input"),
    "not_found": ErrorCode(-32015, "Not found"),
    "duplicate_content": ErrorCode(-32016, "Duplicate content"),
    "engine_error": ErrorCode(-32019, "Memory engine error"),
}


def rpc_error(kind: str, message: str | None = None,
              data: Mapping[str, Any] | None = None) -> RpcError:
    """The error for row ``kind`` of ``ERRORS``; ``data`` is merged after ``{"kind": kind}``."""
    row = ERRORS.get(kind) or ERRORS["engine_error"]
    return RpcError(row.code, message or row.message, {"kind": kind, **(data or {})})


def rpc_error_for_exception(exc: BaseException) -> RpcError:
    """A protocol error for an exception raised outside a tool. Unknown exceptions become
    -32603 with no detail: internals (paths, SQL, tracebacks) never reach the peer."""
    if isinstance(exc, TriomemError):
        return rpc_error(exc.kind, str(exc), exc.details())
    return rpc_error("internal_error")


def tool_error(kind: str, message: str, *, field: str | None = None,
               details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``CallToolResult`` with ``isError: true``.

    The text block is what a model reads, so it leads with the field and the reason; the same
    facts go in ``structuredContent.error`` for programs. (Clients skip output-schema validation
    for error results, so the error shape need not match the tool's ``outputSchema``.)
    """
    error: dict[str, Any] = {"kind": kind, "message": message}
    if field is not None:
        error["field"] = field
    if details:
        error["details"] = dict(details)
    text = f"{kind}: {message}"
    if field is not None and not message.startswith(f"{field}:"):
        text = f"{kind}: {field}: {message}"
    return {"content": [{"type": "text", "text": text}], "structuredContent": {"error": error},
            "isError": True}


def tool_error_for_exception(exc: TriomemError) -> dict[str, Any]:
    """The ``isError`` result for an engine error raised by a tool."""
    if isinstance(exc, InvalidMemory):
        return tool_error(exc.kind, exc.reason, field=exc.field)
    details = exc.details()
    return tool_error(exc.kind, str(exc), field=details.get("field"), details=details or None)
