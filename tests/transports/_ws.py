"""A minimal MCP client over trio-websocket, for the real-socket tests."""

from __future__ import annotations

import itertools
import json
from typing import Any

import attrs
from trio_websocket import WebSocketConnection

from tests.transports._messages import initialize_params


@attrs.define(eq=False)
class WsClient:
    ws: WebSocketConnection
    notifications: list[dict[str, Any]] = attrs.field(factory=list)
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(0))

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_message(message if isinstance(message, str) else json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(await self.ws.get_message())
        return decoded

    async def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
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
