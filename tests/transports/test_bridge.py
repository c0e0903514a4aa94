"""The relay between a client's lines and the server's WebSocket, in process: what it waits
for at the end of input, what it answers itself, and how it ends."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from trio_websocket import open_websocket

from tests.fakes import GateEmbedder
from tests.transports._messages import call_params, initialize_params, notification, request
from triomem import Engine
from triomem.transports import LineTransport, ServerAddress, WebSocketOptions, serve_websocket
from triomem.transports.bridge import DaemonDisconnected, InFlight, relay
from triomem.transports.mcp import parse_message

TOKEN = "relay-test-token"


def test_in_flight_counts_what_the_server_answers() -> None:
    in_flight = InFlight()
    for text in (request(0, "initialize", initialize_params()),
                 notification("notifications/initialized"),  # never answered
                 request("a", "ping"),
                 request("a", "ping"),  # a duplicate id is answered twice (once as an error)
                 "[1, 2]",  # answered with id null
                 '{"jsonrpc":"2.0","id":9,"result":{}}'):  # a client's response: no answer
        in_flight.sent(parse_message(text))
    assert in_flight.count == 4
    for text in ('{"jsonrpc":"2.0","id":0,"result":{}}',
                 '{"jsonrpc":"2.0","method":"notifications/progress","params":{}}',
                 '{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"dup"}}',
                 '{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"batch"}}',
                 '{"jsonrpc":"2.0","id":"unknown","result":{}}'):
        in_flight.received(parse_message(text))
    assert in_flight.count == 1
    in_flight.received(parse_message('{"jsonrpc":"2.0","id":"a","result":{}}'))
    assert in_flight.count == 0


def test_a_cancelled_request_is_not_waited_for() -> None:
    in_flight = InFlight()
    in_flight.sent(parse_message(request(7, "tools/call", call_params("memory_list"))))
    in_flight.sent(parse_message(notification("notifications/cancelled", {"requestId": 7})))
    assert in_flight.count == 0
    # Its answer may still arrive (it was on its way): it changes nothing.
    in_flight.received(parse_message('{"jsonrpc":"2.0","id":7,"result":{}}'))
    in_flight.sent(parse_message(notification("notifications/cancelled", {"requestId": 8})))
    assert in_flight.count == 0


@pytest.fixture
async def server(gated_engine: Engine, nursery: trio.Nursery
                 ) -> AsyncIterator[tuple[ServerAddress, trio.Event]]:
    shutdown = trio.Event()
    address: ServerAddress = await nursery.start(functools.partial(
        serve_websocket, gated_engine, "127.0.0.1", 0,
        options=WebSocketOptions(token=TOKEN, grace_period=2), shutdown=shutdown))
    yield address, shutdown
    shutdown.set()


@pytest.fixture
async def client(server: tuple[ServerAddress, trio.Event], nursery: trio.Nursery
                 ) -> AsyncIterator[_Client]:
    address, _ = server
    async with open_websocket(address.host, address.port, address.path, use_ssl=False,
                              subprotocols=["mcp"],
                              extra_headers=[(b"Authorization", f"Bearer {TOKEN}".encode())]
                              ) as ws:
        stdin_send, stdin_receive = trio.testing.memory_stream_one_way_pair()
        stdout_send, stdout_receive = trio.testing.memory_stream_one_way_pair()
        client = _Client(stdin_send, stdout_receive)

        async def run() -> None:
            try:
                await relay(ws, LineTransport(stdin_receive, stdout_send, 1000))
            except DaemonDisconnected as exc:
                client.failure = exc
            client.done.set()

        nursery.start_soon(run)
        yield client


class _Client:
    def __init__(self, stdin: trio.abc.SendStream, stdout: trio.abc.ReceiveStream) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.buffer = b""
        self.done = trio.Event()
        self.failure: DaemonDisconnected | None = None

    async def write(self, *lines: str | bytes) -> None:
        for line in lines:
            await self.stdin.send_all((line.encode() if isinstance(line, str) else line) + b"\n")

    async def read(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = await self.stdout.receive_some(65536)
            assert chunk, "the relay's output ended"
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message


async def test_end_of_input_waits_for_the_answers_in_flight(client: _Client,
                                                           gate: GateEmbedder) -> None:
    with trio.fail_after(10):
        await client.write(
            request(0, "initialize", initialize_params()),
            notification("notifications/initialized"),
            request(1, "tools/call", call_params("memory_store", {"content": "HOLD me"})))
        await client.stdin.aclose()  # the client is done sending
        assert (await client.read())["id"] == 0
        await gate.wait_entered()
        await trio.sleep(0.2)
        assert not client.done.is_set()  # the store is in flight: the relay waits for it
        gate.release()
        answer = await client.read()
        assert answer["id"] == 1 and answer["result"]["isError"] is False
        await client.done.wait()
    assert client.failure is None


async def test_lines_the_server_cannot_receive_are_answered_here(client: _Client) -> None:
    with trio.fail_after(10):
        await client.write("x" * 2000, b"\xff\xfe{}", request(5, "ping"))
        too_large, not_utf8, pong = [await client.read() for _ in range(3)]
        assert too_large["id"] is None
        assert too_large["error"]["code"] == -32600
        assert too_large["error"]["data"]["kind"] == "message_too_large"
        assert not_utf8["id"] is None and not_utf8["error"]["code"] == -32700
        assert pong == {"jsonrpc": "2.0", "id": 5, "result": {}}
        await client.stdin.aclose()
        await client.done.wait()
    assert client.failure is None


async def test_a_cancelled_call_does_not_hold_the_end(client: _Client,
                                                     gate: GateEmbedder) -> None:
    with trio.fail_after(10):
        await client.write(
            request(0, "initialize", initialize_params()),
            notification("notifications/initialized"),
            request(1, "tools/call", call_params("memory_store", {"content": "HOLD forever"})))
        assert (await client.read())["id"] == 0
        await gate.wait_entered()
        await client.write(notification("notifications/cancelled", {"requestId": 1}))
        await client.stdin.aclose()
        await client.done.wait()
    assert client.failure is None


async def test_the_server_going_away_ends_the_relay(
        client: _Client, server: tuple[ServerAddress, trio.Event]) -> None:
    _, shutdown = server
    with trio.fail_after(10):
        await client.write(request(0, "initialize", initialize_params()))
        assert (await client.read())["id"] == 0
        shutdown.set()
        await client.done.wait()
    assert client.failure is not None
    assert client.failure.code == 1001
    assert str(client.failure) == "the server closed the connection (code 1001: server " \
        "shutting down)"
