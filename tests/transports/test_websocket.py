"""MCP over real WebSockets on 127.0.0.1 (port 0), with trio-websocket as the client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    open_websocket_url,
)

from tests.fakes import GateEmbedder, HashEmbedder
from tests.transports._ws import WsClient
from triomem import Engine, EngineConfig, open_engine
from triomem.transports import (
    InsecureBind,
    ServerAddress,
    WebSocketOptions,
    check_bind,
    serve_websocket,
)
from triomem.transports.websocket import is_loopback, origin_allowed


@attrs.define
class Server:
    engine: Engine
    address: ServerAddress
    shutdown: trio.Event
    done: trio.Event


async def start_server(nursery: trio.Nursery, engine: Engine,
                       options: WebSocketOptions | None = None) -> Server:
    shutdown, done = trio.Event(), trio.Event()

    async def run(task_status: trio.TaskStatus[ServerAddress]) -> None:
        try:
            await serve_websocket(engine, "127.0.0.1", 0, options=options, shutdown=shutdown,
                                  task_status=task_status)
        finally:
            done.set()

    address = await nursery.start(run)
    return Server(engine, address, shutdown, done)


@pytest.fixture
async def threaded_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    async with open_engine(tmp_path / "ws.db",
                           EngineConfig(embedder=HashEmbedder(), executor="thread")) as engine:
        yield engine


@pytest.fixture
async def server(threaded_engine: Engine, nursery: trio.Nursery) -> Server:
    return await start_server(nursery, threaded_engine)


async def test_round_trip_selects_the_mcp_subprotocol(server: Server) -> None:
    with trio.fail_after(10):
        async with open_websocket_url(server.address.url, subprotocols=["mcp"]) as ws:
            assert ws.subprotocol == "mcp"
            client = WsClient(ws)
            assert (await client.handshake())["result"]["protocolVersion"] == "2025-11-25"
            stored = await client.call("memory_store", {"content": "sockets are real"})
            assert stored["structuredContent"]["created"] is True
            recalled = await client.call("memory_recall", {"query": "real sockets"})
            hits = recalled["structuredContent"]["hits"]
            assert hits[0]["memory"]["id"] == stored["structuredContent"]["memory"]["id"]


async def test_a_client_offering_no_subprotocol_is_still_served(server: Server) -> None:
    with trio.fail_after(10):
        async with open_websocket_url(server.address.url) as ws:
            assert ws.subprotocol is None
            assert (await WsClient(ws).request("ping"))["result"] == {}


async def test_binary_frames_close_with_1003(server: Server) -> None:
    with trio.fail_after(10):
        async with open_websocket_url(server.address.url, subprotocols=["mcp"]) as ws:
            await ws.send_message(b'{"jsonrpc":"2.0","id":1,"method":"ping"}')
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.reason is not None and closed.value.reason.code == 1003


async def test_oversized_messages_close_with_1009(threaded_engine: Engine,
                                                  nursery: trio.Nursery) -> None:
    small = await start_server(nursery, threaded_engine, WebSocketOptions(max_message_size=2000))
    with trio.fail_after(10):
        async with open_websocket_url(small.address.url, subprotocols=["mcp"]) as ws:
            client = WsClient(ws)
            await client.handshake()
            await client.call("memory_store", {"content": "x" * 1000})  # fits
            await client.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
                "name": "memory_store", "arguments": {"content": "y" * 5000}}})
            with pytest.raises(ConnectionClosed) as closed:
                await client.receive()
            assert closed.value.reason is not None and closed.value.reason.code == 1009
        # The server serves others (and this client again) afterwards.
        async with open_websocket_url(small.address.url, subprotocols=["mcp"]) as ws:
            assert (await WsClient(ws).request("ping"))["result"] == {}
    contents = [m.content for m in (await threaded_engine.list()).memories]
    assert contents == ["x" * 1000]


async def test_wrong_path_is_404(server: Server) -> None:
    url = server.address.url.replace("/mcp", "/other")
    with trio.fail_after(10), pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url, subprotocols=["mcp"]):
            pass
    assert rejected.value.status_code == 404


async def test_foreign_origins_are_refused_before_the_handshake(server: Server) -> None:
    with trio.fail_after(10):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(server.address.url, subprotocols=["mcp"],
                                          extra_headers=[(b"Origin", b"https://evil.example")]):
                pass
        assert rejected.value.status_code == 403
        async with open_websocket_url(server.address.url, subprotocols=["mcp"],
                                      extra_headers=[(b"Origin", b"http://localhost:5173")]
                                      ) as ws:
            assert (await WsClient(ws).request("ping"))["result"] == {}


def test_origin_allow_list() -> None:
    assert origin_allowed("http://127.0.0.1:8000", None)
    assert origin_allowed("http://[::1]", None)
    assert not origin_allowed("null", None)
    assert not origin_allowed("https://localhost.evil.example", None)
    assert origin_allowed("https://app.example/", ["https://APP.example"])
    assert not origin_allowed("https://other.example", ["https://app.example"])
    assert origin_allowed("https://any.example", ["*"])


async def test_token_is_required_when_configured(threaded_engine: Engine,
                                                 nursery: trio.Nursery) -> None:
    guarded = await start_server(nursery, threaded_engine, WebSocketOptions(token="s3cret"))
    url = guarded.address.url
    with trio.fail_after(10):
        for headers, suffix in (([], ""), ([(b"Authorization", b"Bearer wrong")], ""),
                                ([], "?token=wrong")):
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(url + suffix, extra_headers=headers):
                    pass
            assert rejected.value.status_code == 401
        async with open_websocket_url(url, extra_headers=[(b"Authorization", b"Bearer s3cret")]
                                      ) as ws:
            assert (await WsClient(ws).request("ping"))["result"] == {}
        async with open_websocket_url(url + "?token=s3cret") as ws:
            assert (await WsClient(ws).request("ping"))["result"] == {}


def test_binding_beyond_loopback_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("example.com")
    with pytest.raises(InsecureBind, match="token"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "t")
    check_bind("127.0.0.1", None)


async def test_serve_websocket_refuses_to_listen_beyond_loopback_without_token(
        threaded_engine: Engine) -> None:
    # Raises before opening any socket.
    with trio.fail_after(10), pytest.raises(InsecureBind):
        await serve_websocket(threaded_engine, "0.0.0.0", 0)


async def test_64_clients_share_one_engine(server: Server) -> None:
    acknowledged: dict[int, str] = {}
    recalled_own: dict[int, bool] = {}

    async def client(n: int) -> None:
        async with open_websocket_url(server.address.url, subprotocols=["mcp"]) as ws:
            mcp = WsClient(ws)
            await mcp.handshake()
            stored = await mcp.call("memory_store", {"content": f"note from client{n}",
                                                     "tags": [f"c{n}"]})
            assert stored["isError"] is False
            acknowledged[n] = stored["structuredContent"]["memory"]["id"]
            recall = await mcp.call("memory_recall", {"query": f"client{n}", "limit": 5})
            ids = [h["memory"]["id"] for h in recall["structuredContent"]["hits"]]
            recalled_own[n] = acknowledged[n] in ids

    with trio.fail_after(60):
        async with trio.open_nursery() as clients:
            for n in range(64):
                clients.start_soon(client, n)
    assert len(acknowledged) == 64
    assert all(recalled_own.values())
    for memory_id in acknowledged.values():
        assert (await server.engine.get(memory_id)).id == memory_id
    assert len((await server.engine.list(limit=100)).memories) == 64


async def test_a_client_leaving_mid_request_does_not_disturb_others(
        gated_engine: Engine, gate: GateEmbedder, nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, gated_engine)
    with trio.fail_after(20):
        async with open_websocket_url(srv.address.url, subprotocols=["mcp"]) as ws:
            other = WsClient(ws)
            await other.handshake()
            kept = await other.call("memory_store", {"content": "kept safe"})
            async with open_websocket_url(srv.address.url, subprotocols=["mcp"]) as ws2:
                leaver = WsClient(ws2)
                await leaver.handshake()
                await leaver.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                   "params": {"name": "memory_store",
                                              "arguments": {"content": "HOLD"}}})
                await gate.wait_entered()
            # ws2 is closed with its call in flight. The other client goes on.
            assert (await other.request("ping"))["result"] == {}
            listed = await other.call("memory_list")
            assert [m["content"] for m in listed["structuredContent"]["memories"]] == [
                "kept safe"]
            gate.release()
            after = await other.call("memory_store", {"content": "after the leaver"})
            assert after["isError"] is False
        got = await gated_engine.get(kept["structuredContent"]["memory"]["id"])
        assert got.content == "kept safe"
        srv.shutdown.set()
        await srv.done.wait()


async def test_graceful_shutdown_answers_calls_in_flight_then_closes_1001(
        gated_engine: Engine, gate: GateEmbedder, nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, gated_engine)
    with trio.fail_after(20):
        async with open_websocket_url(srv.address.url, subprotocols=["mcp"]) as ws:
            client = WsClient(ws)
            await client.handshake()
            await client.send({"jsonrpc": "2.0", "id": "w", "method": "tools/call",
                               "params": {"name": "memory_store",
                                          "arguments": {"content": "HOLD in flight"}}})
            await gate.wait_entered()
            srv.shutdown.set()
            # No new connections...
            while True:
                try:
                    async with open_websocket_url(srv.address.url):
                        pass
                except (OSError, HandshakeError):
                    break
                await trio.sleep(0.01)
            # ...and no new calls on this one.
            refused = await client.request("tools/call", {"name": "memory_stats"})
            assert refused["error"]["data"]["kind"] == "shutting_down"
            gate.release()
            finished = await client.receive()
            assert finished["id"] == "w" and finished["result"]["isError"] is False
            with pytest.raises(ConnectionClosed) as closed:
                await client.receive()
            assert closed.value.reason is not None
            assert closed.value.reason.code == 1001
        await srv.done.wait()
    assert (await gated_engine.list()).memories[0].content == "HOLD in flight"


async def test_grace_period_bounds_the_wait_for_calls_in_flight(
        gated_engine: Engine, gate: GateEmbedder, nursery: trio.Nursery) -> None:
    srv = await start_server(nursery, gated_engine, WebSocketOptions(grace_period=0.2))
    with trio.fail_after(20):
        async with open_websocket_url(srv.address.url, subprotocols=["mcp"]) as ws:
            client = WsClient(ws)
            await client.handshake()
            await client.send({"jsonrpc": "2.0", "id": "stuck", "method": "tools/call",
                               "params": {"name": "memory_store",
                                          "arguments": {"content": "HOLD forever"}}})
            await gate.wait_entered()
            srv.shutdown.set()
            await srv.done.wait()  # returns although the call never finished
            with pytest.raises(ConnectionClosed):
                await client.receive()


async def test_broken_peers_do_not_take_the_server_down(server: Server) -> None:
    host, port = server.address.host, server.address.port
    handshake = (f"GET /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n")
    with trio.fail_after(10):
        for raw in (b"", b"garbage\r\n\r\n", b"GET /mcp HTTP/1.1\r\n\r\n",
                    (handshake + "Origin: https://evil.example\r\n\r\n").encode(),
                    (handshake + "\r\n").encode() + b"\x81\xfe\xff\xff"):  # truncated frame
            stream = await trio.open_tcp_stream(host, port)
            await stream.send_all(raw)
            await stream.aclose()  # gone without reading any answer
        async with open_websocket_url(server.address.url, subprotocols=["mcp"]) as ws:
            assert (await WsClient(ws).request("ping"))["result"] == {}


async def test_connection_limit_answers_503(threaded_engine: Engine,
                                            nursery: trio.Nursery) -> None:
    limited = await start_server(nursery, threaded_engine, WebSocketOptions(max_connections=1))
    with trio.fail_after(10):
        async with open_websocket_url(limited.address.url) as ws:
            assert (await WsClient(ws).request("ping"))["result"] == {}
            with pytest.raises(ConnectionRejected) as rejected:
                async with open_websocket_url(limited.address.url):
                    pass
            assert rejected.value.status_code == 503
        # The slot frees when the first client leaves.
        while True:
            try:
                async with open_websocket_url(limited.address.url) as ws:
                    assert (await WsClient(ws).request("ping"))["result"] == {}
                    break
            except ConnectionRejected:
                await trio.sleep(0.01)
