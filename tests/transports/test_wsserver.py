"""The server's own WebSocket framing (``_wsserver``), spoken to over a raw socket: the fast
path for plain text frames, wsproto for everything else, and what a client sees when it breaks
the protocol."""

from __future__ import annotations

import base64
import functools
import json
import os
import struct
from collections.abc import AsyncIterator

import pytest
import trio

from tests.transports._messages import initialize_params
from triomem import Engine
from triomem.transports import ServerAddress, serve_websocket


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head = struct.pack("!BB", first, mask_bit | size)
    else:
        head = struct.pack("!BBH", first, mask_bit | 126, size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream, self.buffer = stream, b""

    async def _fill(self, n: int) -> None:
        while len(self.buffer) < n:
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError
            self.buffer += data

    async def read_frame(self) -> tuple[int, bytes]:
        await self._fill(2)
        opcode, size, offset = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F, 2
        if size == 126:
            await self._fill(4)
            (size,), offset = struct.unpack_from("!H", self.buffer, 2), 4
        await self._fill(offset + size)
        payload = self.buffer[offset:offset + size]
        self.buffer = self.buffer[offset + size:]
        return opcode, payload

    async def request(self, message: dict[str, object], **frame_options: bool) -> dict[str, object]:
        await self.stream.send_all(frame(1, json.dumps(message).encode(), **frame_options))
        answer: dict[str, object] = json.loads(await self.text())
        return answer

    async def text(self) -> bytes:
        opcode, payload = await self.read_frame()
        assert opcode == 1, (opcode, payload)
        return payload


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[RawClient]:
    async with trio.open_nursery() as nursery:
        address: ServerAddress = await nursery.start(functools.partial(
            serve_websocket, engine, "127.0.0.1", 0))
        stream = await trio.open_tcp_stream("127.0.0.1", address.port)
        key = base64.b64encode(os.urandom(16))
        await stream.send_all(b"GET /mcp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                              b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
                              b"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mcp"
                              b"\r\n\r\n")
        raw = RawClient(stream)
        while b"\r\n\r\n" not in raw.buffer:
            raw.buffer += await stream.receive_some(65536)
        head, raw.buffer = raw.buffer.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0]
        answer = await raw.request({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                    "params": initialize_params()})
        assert "result" in answer
        yield raw
        await stream.aclose()
        nursery.cancel_scope.cancel()


async def test_pings_and_fragments_go_through_wsproto_and_the_session_goes_on(
        client: RawClient) -> None:
    with trio.fail_after(10):
        await client.stream.send_all(frame(9, b"are you there"))
        assert await client.read_frame() == (10, b"are you there")  # pong, same payload
        text = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}).encode()
        await client.stream.send_all(frame(1, text[:10], fin=False) + frame(0, text[10:]))
        assert json.loads(await client.text()) == {"jsonrpc": "2.0", "id": 1, "result": {}}
        again = await client.request({"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert again["id"] == 2


async def test_a_request_split_across_reads_is_read_whole(client: RawClient) -> None:
    with trio.fail_after(10):
        data = frame(1, json.dumps({"jsonrpc": "2.0", "id": 5, "method": "ping"}).encode())
        for i in range(len(data)):
            await client.stream.send_all(data[i:i + 1])
            await trio.sleep(0.002)  # let the server read a partial frame
        assert json.loads(await client.text())["id"] == 5


@pytest.mark.parametrize(("data", "code"), [
    (frame(1, b'{"jsonrpc": "2.0"}', masked=False), 1002),  # clients must mask
    (frame(1, b"\xff\xfe not UTF-8"), 1007),
    (bytes([0xC1, 0x80]) + b"\0\0\0\0", 1002),  # a reserved bit
])
async def test_protocol_violations_get_a_close_frame_with_their_code(
        client: RawClient, data: bytes, code: int) -> None:
    with trio.fail_after(10):
        await client.stream.send_all(data)
        opcode, payload = await client.read_frame()
        assert opcode == 8 and struct.unpack("!H", payload[:2])[0] == code
