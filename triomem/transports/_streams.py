"""A socket stream that waits for data before reading once it has drained the socket.

trio's ``SocketStream.receive_some`` tries ``recv`` first and waits for readiness only when
that fails. An MCP client sends a request and waits for its answer, so after each message the
server reads again and finds nothing: a ``recv`` that fails with ``EAGAIN``, an exception
through trio's try-first helper, then the wait anyway, on every message.

``ReadWhenReadyStream`` remembers whether its last read drained the socket (got less than it
asked for); if so, the next read waits for readiness first. A read that filled its buffer may
have left more behind, so the next one tries at once, as trio does.
"""

from __future__ import annotations

import attrs
import trio


@attrs.define(eq=False)
class ReadWhenReadyStream(trio.abc.HalfCloseableStream):
    stream: trio.SocketStream
    _drained: bool = False

    @property
    def socket(self) -> trio.socket.SocketType:
        return self.stream.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        # A closed socket (fd -1) is left to the read, which raises what trio's streams raise.
        if self._drained and self.stream.socket.fileno() != -1:
            await trio.lowlevel.wait_readable(self.stream.socket)
        data = await self.stream.receive_some(max_bytes)
        self._drained = max_bytes is not None and len(data) < max_bytes
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


@attrs.define(eq=False)
class ReadWhenReadyListener(trio.abc.Listener[ReadWhenReadyStream]):
    """Accepts ``ReadWhenReadyStream`` connections from a ``trio.SocketListener``."""

    listener: trio.SocketListener

    @property
    def socket(self) -> trio.socket.SocketType:
        return self.listener.socket

    async def accept(self) -> ReadWhenReadyStream:
        return ReadWhenReadyStream(await self.listener.accept())

    async def aclose(self) -> None:
        await self.listener.aclose()
