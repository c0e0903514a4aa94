"""A minimal MCP client: the CLI's way to call one tool on a server or an in-process engine.

``connect_daemon(info)`` opens a WebSocket to the server that owns a database (subprotocol
``mcp``, ``Authorization: Bearer <token>`` from its lock file) and does the 2025-11-25
``initialize`` handshake; ``open_local(engine)`` does the same over an in-memory session with
an engine of this process. Either way ``call_tool`` returns the tool's ``CallToolResult``, so
the CLI renders one shape whichever path served it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketConnection,
    open_websocket,
)

from ..engine import Engine
from .lockfile import DaemonInfo
from .mcp import LATEST_LEGACY_VERSION
from .memory import open_memory_session
from .websocket import SUBPROTOCOL

CLIENT_INFO = {"name": "triomem-cli", "version": "1"}
MAX_ANSWER = 64 * 1024 * 1024
CONNECT_TIMEOUT = 5.0


class ServerUnreachable(Exception):
    """The server could not be reached, refused the handshake, or went away mid-call."""


class ProtocolError(Exception):
    """The server answered with a JSON-RPC error; ``kind`` is its ``data.kind`` if any."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class _Requester(Protocol):
    async def request(self, method: str, params: Mapping[str, Any] | None = None
                      ) -> dict[str, Any]: ...

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None: ...


@attrs.define(eq=False)
class _WebSocketRequester:
    ws: WebSocketConnection
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))

    async def request(self, method: str, params: Mapping[str, Any] | None = None
                      ) -> dict[str, Any]:
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        try:
            await self.ws.send_message(json.dumps(message))
            while True:  # skip notifications (progress, logging) until our answer
                reply: dict[str, Any] = json.loads(await self.ws.get_message())
                if reply.get("id") == request_id and "method" not in reply:
                    return reply
        except ConnectionClosed as exc:
            why = exc.reason
            detail = "" if why is None else f" (code {why.code}" + \
                (f": {why.reason})" if why.reason else ")")
            raise ServerUnreachable(f"the server closed the connection{detail}") from None

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        try:
            await self.ws.send_message(json.dumps(message))
        except ConnectionClosed:
            raise ServerUnreachable("the server closed the connection") from None


@attrs.define(eq=False)
class McpClient:
    """An initialized MCP session: ``await client.call_tool(name, arguments)``."""

    _requester: _Requester

    async def initialize(self) -> dict[str, Any]:
        result = _result(await self._requester.request("initialize", {
            "protocolVersion": LATEST_LEGACY_VERSION, "capabilities": {},
            "clientInfo": CLIENT_INFO}))
        await self._requester.notify("notifications/initialized")
        return result

    async def call_tool(self, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The tool's ``CallToolResult`` (``isError`` true for a tool error). Raises
        ProtocolError for a JSON-RPC error and ServerUnreachable when the connection fails."""
        return _result(await self._requester.request(
            "tools/call", {"name": name, "arguments": dict(arguments)}))


def _result(reply: dict[str, Any]) -> dict[str, Any]:
    if "error" in reply:
        error: dict[str, Any] = reply["error"] if isinstance(reply["error"], dict) else {}
        data: dict[str, Any] = error["data"] if isinstance(error.get("data"), dict) else {}
        raise ProtocolError(str(data.get("kind") or error.get("code", "error")),
                            str(error.get("message", "unknown error")))
    result: dict[str, Any] = reply.get("result") or {}
    return result


@contextlib.asynccontextmanager
async def connect_daemon(info: DaemonInfo, *, within: float = CONNECT_TIMEOUT
                         ) -> AsyncIterator[McpClient]:
    """An initialized client of the server ``info`` describes (as read from a lock file),
    connected and initialized within ``within`` seconds.

    Raises ServerUnreachable when it cannot connect or the handshake fails.
    """
    headers = [(b"Authorization", f"Bearer {info.token}".encode())] if info.token else []
    async with contextlib.AsyncExitStack() as stack:
        try:
            ws = await stack.enter_async_context(open_websocket(
                info.connect_host, info.port, info.path, use_ssl=False,
                subprotocols=[SUBPROTOCOL], extra_headers=headers,
                max_message_size=MAX_ANSWER, connect_timeout=within,
                disconnect_timeout=within))
            client = McpClient(_WebSocketRequester(ws))
            with trio.fail_after(within):
                await client.initialize()
        except (HandshakeError, OSError, trio.TooSlowError) as exc:
            raise ServerUnreachable(f"cannot reach the server at {info.url} (pid {info.pid}): "
                                    f"{exc!r}") from None
        yield client


@contextlib.asynccontextmanager
async def open_local(engine: Engine) -> AsyncIterator[McpClient]:
    """An initialized client of ``engine`` over an in-memory MCP session."""
    async with open_memory_session(engine) as session:
        client = McpClient(session)
        await client.initialize()
        yield client
