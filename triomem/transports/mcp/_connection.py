"""``McpConnection``: the sans-IO MCP server for one connection (no trio, no sockets).

Feed it each incoming message with ``receive``; it answers what it can at once (``Reply``),
asks the driver to run engine work (``StartCall``) or to stop it (``CancelCall``). When the
driver finishes a call it hands the outcome back (``call_succeeded`` / ``call_failed`` /
``call_cancelled``) and gets the text to send, or None.

Invariants (the reason this object exists):
- every request gets exactly one answer, except one the client cancelled;
- a notification is never answered, and neither is a peer's response;
- nothing a peer sends raises out of ``receive``: bad input is an error reply;
- a call is tracked by a connection-unique ``key``, not by the peer's id, so a late answer
  for a cancelled request can never be sent under a reused id.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, TypeAlias

import attrs

from ...engine import InvalidMemory, TriomemError
from ._eras import (
    LOG_LEVELS,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    META_SERVER_INFO,
    MODERN_VERSIONS,
    NOTIFICATIONS,
    SUPPORTED_VERSIONS,
    Phase,
    Route,
    negotiate_legacy,
    request_step,
)
from ._errors import RpcError, rpc_error, tool_error_for_exception
from ._events import CancelCall, Event, Reply, ServerOptions, StartCall
from ._jsonrpc import (
    Malformed,
    Notification,
    Request,
    RequestId,
    dumps,
    dumps_result,
    error_message,
    is_request_id,
    notification_message,
    parse_message,
    result_message,
)
from ._tools import TOOLS, TOOLS_BY_NAME, EngineCall, ToolSpec, bind

logger = logging.getLogger("triomem.transports.mcp")

ProgressToken: TypeAlias = str | int


@attrs.define(eq=False)
class _Pending:
    request_id: RequestId
    tool: ToolSpec
    call: EngineCall
    modern: bool
    progress_token: ProgressToken | None
    last_progress: float = -math.inf


class _Refused(Exception):
    """Raised inside a handler to answer the request with a protocol error."""

    def __init__(self, kind: str, message: str | None = None,
                 data: Mapping[str, Any] | None = None) -> None:
        super().__init__(kind)
        self.error = rpc_error(kind, message, data)


def _progress_token(params: Mapping[str, Any]) -> ProgressToken | None:
    meta = params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    return token if is_request_id(token) else None


@attrs.define(eq=False)
class McpConnection:
    """The protocol state of one connection. Not thread-safe; never blocks, never raises
    on peer input."""

    options: ServerOptions = attrs.field(factory=ServerOptions)
    phase: Phase = Phase.UNDECIDED
    protocol_version: str | None = None  # negotiated legacy version, or the modern one
    log_level: str | None = None
    draining: bool = False
    _pending: dict[int, _Pending] = attrs.field(factory=dict)
    _keys: dict[RequestId, int] = attrs.field(factory=dict)
    _next_key: int = 0

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def start_draining(self) -> None:
        """Refuse new tool calls (-32003 shutting_down); calls in flight carry on."""
        self.draining = True

    # -- input ------------------------------------------------------------------------------

    def receive(self, data: str | bytes) -> Event | None:
        """Handle one incoming message. Returns what to do, or None (nothing to send)."""
        message = parse_message(data)
        if isinstance(message, Malformed):
            return self._error(message.id, message.error)
        if isinstance(message, Request):
            return self._request(message)
        if isinstance(message, Notification):
            return self._notification(message)
        return None  # a peer response, or a notification we cannot use: never answered

    def _notification(self, note: Notification) -> Event | None:
        if note.method == "notifications/cancelled":
            request_id = note.params.get("requestId")
            if not is_request_id(request_id):
                return None
            key = self._keys.pop(request_id, None)
            if key is None:
                return None  # unknown or finished: races are expected, ignore (spec)
            del self._pending[key]
            return CancelCall(key)
        next_phase = NOTIFICATIONS[self.phase].get(note.method)
        if next_phase is not None:
            self.phase = next_phase
        return None

    def _request(self, request: Request) -> Event | None:
        if request.id in self._keys:
            return self._error(request.id, rpc_error("duplicate_id"))
        meta = request.params.get("_meta")
        modern_meta = isinstance(meta, dict) and META_PROTOCOL_VERSION in meta
        row, step = request_step(self.phase, request.method, modern_meta=modern_meta)
        if step is None:
            return self._error(request.id, rpc_error(
                "method_not_found", f"Method not found: {request.method}"[:300]))
        modern = row is Phase.MODERN
        version: str | None = None
        try:
            if modern and step.route is not Route.ERA_IS_MODERN:
                version = self._check_envelope(meta, locked=self.phase is Phase.MODERN)
            event = self._route(step.route, request, modern)
        except _Refused as refused:
            # A refused request never moves the phase: a client whose probe failed can
            # still choose the other era.
            return self._error(request.id, refused.error)
        if step.next_phase is Phase.MODERN and self.phase is Phase.UNDECIDED:
            self.protocol_version = version
        if step.next_phase is not None:
            self.phase = step.next_phase
        return event

    def _check_envelope(self, meta: object, *, locked: bool) -> str:
        """Check the 2026-07-28 per-request envelope (protocol version and client
        capabilities); return the version. Raises _Refused."""
        if not isinstance(meta, dict) or not isinstance(meta.get(META_PROTOCOL_VERSION), str):
            raise _Refused("invalid_params", f"Missing _meta[{META_PROTOCOL_VERSION!r}]")
        version: str = meta[META_PROTOCOL_VERSION]
        if version not in MODERN_VERSIONS:
            # Once modern, the connection speaks only modern versions; before that, a client
            # may still pick a legacy one through initialize.
            supported = list(MODERN_VERSIONS if locked else SUPPORTED_VERSIONS)
            raise _Refused("unsupported_protocol_version",
                           data={"supported": supported, "requested": version})
        if not isinstance(meta.get(META_CLIENT_CAPABILITIES), dict):
            raise _Refused("invalid_params",
                           f"Missing _meta[{META_CLIENT_CAPABILITIES!r}] (an object)")
        return version

    def _route(self, route: Route, request: Request, modern: bool) -> Event | None:
        params = request.params
        if route is Route.PING:
            return self._result(request.id, {}, modern=False)
        if route is Route.INITIALIZE:
            return self._initialize(request)
        if route is Route.DISCOVER:
            return self._result(request.id, self._discover_body(), modern=True)
        if route is Route.TOOLS_LIST:
            return self._tools_list(request, modern)
        if route is Route.TOOLS_CALL:
            return self._tools_call(request, modern)
        if route is Route.SET_LOG_LEVEL:
            level = params.get("level")
            if level not in LOG_LEVELS:
                raise _Refused("invalid_params", f"level must be one of {', '.join(LOG_LEVELS)}")
            self.log_level = str(level)
            return self._result(request.id, {}, modern=False)
        if route is Route.NOT_INITIALIZED:
            raise _Refused("not_initialized")
        if route is Route.ALREADY_INITIALIZED:
            raise _Refused("already_initialized")
        if route is Route.ERA_IS_MODERN:
            requested = params.get("protocolVersion")
            raise _Refused("unsupported_protocol_version",
                           "This connection speaks the stateless protocol: use server/discover",
                           {"supported": list(MODERN_VERSIONS),
                            "requested": requested if isinstance(requested, str) else ""})
        assert route is Route.NEEDS_MODERN_META
        raise _Refused("invalid_params", f"Missing _meta[{META_PROTOCOL_VERSION!r}]")

    # -- handlers ---------------------------------------------------------------------------

    def _server_info(self) -> dict[str, str]:
        return {"name": self.options.name, "version": self.options.version}

    def _initialize(self, request: Request) -> Event:
        requested = request.params.get("protocolVersion")
        if not isinstance(requested, str):
            raise _Refused("invalid_params", "initialize needs protocolVersion (a string)")
        for name in ("capabilities", "clientInfo"):
            if name in request.params and not isinstance(request.params[name], dict):
                raise _Refused("invalid_params", f"{name} must be an object")
        self.protocol_version = negotiate_legacy(requested)
        return self._result(request.id, {
            "protocolVersion": self.protocol_version,
            "capabilities": {"tools": {"listChanged": False}, "logging": {}},
            "serverInfo": self._server_info(),
            "instructions": self.options.instructions,
        }, modern=False)

    def _discover_body(self) -> dict[str, Any]:
        return {"supportedVersions": list(SUPPORTED_VERSIONS),
                "capabilities": {"tools": {"listChanged": False}},
                "instructions": self.options.instructions,
                "ttlMs": self.options.cache_ttl_ms, "cacheScope": "public"}

    def _tools_list(self, request: Request, modern: bool) -> Event:
        cursor = request.params.get("cursor")
        start = 0
        if cursor is not None:
            # Our cursors are "tools:<offset>"; opaque to clients, checked here.
            offset = cursor[6:] if isinstance(cursor, str) and cursor.startswith("tools:") else ""
            if not offset.isdigit() or int(offset) >= len(TOOLS):
                raise _Refused("invalid_cursor")
            start = int(offset)
        end = start + self.options.tools_page_size
        body: dict[str, Any] = {"tools": [tool.describe() for tool in TOOLS[start:end]]}
        if end < len(TOOLS):
            body["nextCursor"] = f"tools:{end}"
        if modern:
            body.update(ttlMs=self.options.cache_ttl_ms, cacheScope="public")
        return self._result(request.id, body, modern=modern)

    def _tools_call(self, request: Request, modern: bool) -> Event:
        params = request.params
        name = params.get("name")
        if not isinstance(name, str):
            raise _Refused("invalid_params", "tools/call needs name (a string)")
        tool = TOOLS_BY_NAME.get(name)
        if tool is None:
            raise _Refused("unknown_tool", f"Unknown tool: {name}"[:300])
        arguments = params.get("arguments")
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise _Refused("invalid_params", "arguments must be an object")
        if self.draining:
            raise _Refused("shutting_down")
        try:
            call = bind(tool, arguments)
        except InvalidMemory as exc:
            return self._result(request.id, tool_error_for_exception(exc), modern=modern)
        if len(self._pending) >= self.options.max_in_flight:
            raise _Refused("overloaded", data={"max_in_flight": self.options.max_in_flight})
        key = self._next_key
        self._next_key += 1
        token = _progress_token(params)
        self._pending[key] = _Pending(request.id, tool, call, modern, token)
        self._keys[request.id] = key
        return StartCall(key, tool, call, wants_progress=token is not None)

    # -- completion -------------------------------------------------------------------------

    def _finish(self, key: int) -> _Pending | None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            del self._keys[pending.request_id]
        return pending

    def call_succeeded(self, key: int, value: Any) -> str | None:
        """The engine answered call ``key``: the response text, or None if it was cancelled."""
        pending = self._finish(key)
        if pending is None:
            return None
        try:
            result = pending.tool.result(pending.call, value)
            return self._result_text(pending.request_id, result.members, pending.modern,
                                     structured=result.structured)
        except Exception:  # a presentation bug must not kill the connection; log it
            logger.exception("tool %s: cannot present the engine's answer", pending.tool.name)
            return self._error_text(pending.request_id, rpc_error("internal_error"))

    def call_failed(self, key: int, exc: Exception) -> str | None:
        """The engine raised for call ``key``. A ``TriomemError`` is a tool error result
        (``isError``) the model can act on; anything else is logged and answered -32603
        without internals. None if the call was cancelled."""
        pending = self._finish(key)
        if pending is None:
            return None
        if isinstance(exc, TriomemError):
            body = tool_error_for_exception(exc)
            return self._result_text(pending.request_id, body, pending.modern)
        logger.error("tool %s failed", pending.tool.name, exc_info=exc)
        return self._error_text(pending.request_id, rpc_error("internal_error"))

    def call_cancelled(self, key: int) -> None:
        """The driver stopped call ``key`` (connection closing): forget it, answer nothing."""
        self._finish(key)

    def progress(self, key: int, progress: float, total: float | None = None,
                 message: str | None = None) -> str | None:
        """A ``notifications/progress`` for call ``key``, or None when the client asked for no
        progress, the call is over, or ``progress`` does not increase (the spec requires it
        to)."""
        pending = self._pending.get(key)
        if pending is None or pending.progress_token is None or progress <= pending.last_progress:
            return None
        pending.last_progress = progress
        params: dict[str, Any] = {"progressToken": pending.progress_token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        return dumps(notification_message("notifications/progress", params))

    # -- output -----------------------------------------------------------------------------

    def _result_text(self, request_id: RequestId, body: Mapping[str, Any], modern: bool, *,
                     structured: str | None = None) -> str:
        """The response text; ``structured``: a tool's structuredContent, already encoded."""
        if modern:
            meta = dict(body.get("_meta") or {})
            meta[META_SERVER_INFO] = self._server_info()
            body = {"resultType": "complete", **body, "_meta": meta}
        if structured is None:
            return dumps(result_message(request_id, body))
        return dumps_result(request_id, body, name="structuredContent", encoded=structured)

    def _result(self, request_id: RequestId, body: Mapping[str, Any], *, modern: bool) -> Reply:
        return Reply(self._result_text(request_id, body, modern))

    def _error_text(self, request_id: RequestId | None, error: RpcError) -> str:
        return dumps(error_message(request_id, error))

    def _error(self, request_id: RequestId | None, error: RpcError) -> Reply:
        return Reply(self._error_text(request_id, error))
