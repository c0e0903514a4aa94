"""In-memory transport: an MCP session over trio memory channels.

For tests, and for host applications that embed the server and talk to it in-process:

    async with open_memory_session(engine) as client:
        await client.request("initialize", {"protocolVersion": "2025-11-25", ...})
        reply = await client.request("tools/call", {"name": "memory_store", ...})
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import trio

from ..engine import Engine
from ._driver import SessionOptions, serve_session


@attrs.define(eq=False)
class ChannelTransport:
    """A ``MessageTransport`` over a pair of memory channels (the server's side)."""

    incoming: trio.MemoryReceiveChannel[str | bytes]
    outgoing: trio.MemorySendChannel[str]

    async def receive(self) -> str | bytes:
        return await self.incoming.receive()

    async def send(self, text: str) -> None:
        await self.outgoing.send(text)


@attrs.define(eq=False)
class InMemoryClient:
    """The client's side: raw messages, or ``request`` for one round trip.

    ``notifications`` collects what ``request`` skipped while waiting for its answer.
    """

    _send_channel: trio.MemorySendChannel[str | bytes]
    _receive_channel: trio.MemoryReceiveChannel[str]
    notifications: list[dict[str, Any]] = attrs.field(factory=list)
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))

    async def send(self, message: Mapping[str, Any] | str | bytes) -> None:
        """Send one message: a mapping is encoded as JSON, text and bytes go as they are."""
        await self._send_channel.send(
            json.dumps(message) if isinstance(message, Mapping) else message)

    async def receive(self) -> dict[str, Any]:
        """The next message from the server, decoded. Raises ``trio.EndOfChannel`` when the
        session is over."""
        decoded: dict[str, Any] = json.loads(await self._receive_channel.receive())
        return decoded

    async def request(self, method: str, params: Mapping[str, Any] | None = None,
                      *, request_id: int | str | None = None) -> dict[str, Any]:
        """Send a request and return the response with its id (the whole message)."""
        if request_id is None:
            request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self.send(message)
        while True:
            reply = await self.receive()
            if reply.get("id") == request_id and "method" not in reply:
                return reply
            self.notifications.append(reply)

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = dict(params)
        await self.send(message)

    def close(self) -> None:
        """End the client's input (the server sees end of input). Idempotent."""
        self._send_channel.close()


@contextlib.asynccontextmanager
async def open_memory_session(
    engine: Engine,
    *,
    options: SessionOptions | None = None,
    draining: trio.Event | None = None,
    buffer: int = 16,
) -> AsyncIterator[InMemoryClient]:
    """Run ``serve_session`` against an in-memory client for the ``async with`` block.

    On exit the client's input closes (so, with the default options, calls still running are
    cancelled) and the session is awaited.
    """
    to_server_send, to_server_receive = trio.open_memory_channel[str | bytes](buffer)
    to_client_send, to_client_receive = trio.open_memory_channel[str](buffer)
    client = InMemoryClient(to_server_send, to_client_receive)

    async def run() -> None:
        async with to_server_receive, to_client_send:
            await serve_session(engine, ChannelTransport(to_server_receive, to_client_send),
                                options=options, draining=draining)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        try:
            yield client
        finally:
            client.close()
            await to_client_receive.aclose()
