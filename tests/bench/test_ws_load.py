"""The benchmark's lean WebSocket load generator speaks RFC 6455 as the server reads it."""

from __future__ import annotations

import functools

import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from bench import _ws_load as ws_load
from tests.transports._messages import LEGACY
from triomem import Engine
from triomem.transports import ServerAddress, serve_websocket


def _server_after_handshake() -> WSConnection:
    server, client = WSConnection(ConnectionType.SERVER), WSConnection(ConnectionType.CLIENT)
    server.receive_data(client.send(Request(host="localhost", target="/mcp")))
    assert isinstance(next(server.events()), Request)
    server.send(AcceptConnection())
    return server


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_frames_are_masked_text_frames_wsproto_reads(size: int) -> None:
    server = _server_after_handshake()
    text = ("é€x" * size)[:size]
    frame = ws_load.text_frame(text)
    assert frame[1] & 0x80  # masked, as clients must
    server.receive_data(frame)
    (event,) = server.events()
    assert isinstance(event, TextMessage) and event.data == text and event.message_finished


def test_take_frames_keeps_partial_frames_and_refuses_other_opcodes() -> None:
    server = _server_after_handshake()
    wire = server.send(TextMessage(data="x" * 300)) + server.send(TextMessage(data="short"))
    buffer = bytearray(wire[:100])
    assert ws_load.take_frames(buffer) == []
    buffer += wire[100:]
    assert ws_load.take_frames(buffer) == [b"x" * 300, b"short"]
    assert buffer == b""
    with pytest.raises(ws_load.LoadError, match="text frame"):
        ws_load.take_frames(bytearray(b"\x88\x02\x03\xe8"))  # a close frame


async def test_closed_loop_stores_through_a_real_server(engine: Engine) -> None:
    def load(url: str) -> ws_load.LoadResult:
        connections = ws_load.connect(url, 3, LEGACY)
        calls = [[("memory_store", {"content": f"memory {c}-{i}", "tags": ["load"]})
                  for i in range(4)] for c in range(3)]
        result = ws_load.closed_loop(connections, calls)
        with pytest.raises(ws_load.LoadError, match="call failed"):  # an isError result
            ws_load.closed_loop(connections[:1], [[("memory_store", {"content": ""})]])
        for connection in connections:
            connection.sock.close()
        return result

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            address: ServerAddress = await nursery.start(functools.partial(
                serve_websocket, engine, "127.0.0.1", 0))
            result = await trio.to_thread.run_sync(load, address.url)
            nursery.cancel_scope.cancel()
    assert len(result.latencies) == 12
    assert all(answer["structuredContent"]["created"] for answer in result.answers)
    assert (await engine.statistics()).database.live_memories == 12
