"""A minimal MCP client over trio-websocket, for the real-socket tests."""

from __future__ import annotations

import itertools
import json
from typing import Any

import attrs
from trio_websocket import WebSocketConnection

from tests.transports._messages import McpCalls


@attrs.define(eq=False)
class WsClient(McpCalls):
    ws: WebSocketConnection
    notifications: list[dict[str, Any]] = attrs.field(factory=list)
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(0))

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_message(message if isinstance(message, str) else json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(await self.ws.get_message())
        return decoded
