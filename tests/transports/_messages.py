"""Message builders shared by the transport tests."""

from __future__ import annotations

import itertools
import json
from typing import Any

LEGACY = "2025-11-25"
MODERN = "2026-07-28"


def request(request_id: int | str, method: str, params: dict[str, Any] | None = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def notification(method: str, params: dict[str, Any] | None = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def initialize_params(version: str = LEGACY) -> dict[str, Any]:
    return {"protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}


def modern_meta(version: str = MODERN, **extra: Any) -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}, **extra}


def call_params(name: str, arguments: dict[str, Any] | None = None,
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    if meta is not None:
        params["_meta"] = meta
    return params


def is_well_formed_reply(message: Any) -> bool:
    """A JSON-RPC 2.0 response or notification as MCP allows them."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return False
    if "method" in message:
        return "id" not in message and isinstance(message.get("params", {}), dict)
    request_id = message.get("id", "missing")
    if not (request_id is None or isinstance(request_id, str)
            or (isinstance(request_id, int) and not isinstance(request_id, bool))):
        return False
    if ("result" in message) == ("error" in message):
        return False
    if "result" in message:
        return request_id is not None and isinstance(message["result"], dict)
    error = message["error"]
    return (isinstance(error, dict) and isinstance(error.get("code"), int)
            and isinstance(error.get("message"), str))


class McpCalls:
    """Requests, the handshake and tool calls over a client's ``send`` and ``receive``: shared
    by the WebSocket and the stdio bridge test clients. Notifications that arrive while a
    request waits for its answer are kept in ``notifications``."""

    _ids: itertools.count[int]
    notifications: list[dict[str, Any]]

    async def send(self, message: dict[str, Any] | str) -> None:
        raise NotImplementedError

    async def receive(self) -> dict[str, Any]:
        raise NotImplementedError

    async def send_request(self, method: str, params: dict[str, Any] | None = None) -> int:
        request_id = next(self._ids)
        await self.send(request(request_id, method, params))
        return request_id

    async def request(self, method: str, params: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
        request_id = await self.send_request(method, params)
        while True:
            reply = await self.receive()
            if reply.get("id") == request_id and "method" not in reply:
                return reply
            self.notifications.append(reply)

    async def handshake(self) -> dict[str, Any]:
        answer = await self.request("initialize", initialize_params())
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    async def call(self, name: str, arguments: dict[str, Any] | None = None) -> dict[str, Any]:
        reply = await self.request("tools/call", {"name": name, "arguments": arguments or {}})
        result: dict[str, Any] = reply["result"]
        return result
