"""Hostile input over a live WebSocket: malformed JSON, deep nesting, huge strings around the
message limit, invalid UTF-8, binary and forbidden frames, oversized frames, floods of
requests, slowloris handshakes and frames, more idle connections than the server takes, and
a seeded fuzzer. Throughout: no crash, every reply well-formed JSON-RPC, a well-behaved
client (the sentinel) keeps being served, peak RSS bounded (reported)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.fakes import GateEmbedder, HashEmbedder
from tests.reliability._figures import emit, measured, raise_fd_limit
from tests.reliability._fuzz import Fuzzer, Input
from tests.reliability._wire import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Closed,
    Mcp,
    RawWs,
    frame,
    handshake_request,
    running_server,
    text_frame,
    tool_result,
    wait_until,
)
from tests.transports._messages import initialize_params
from triomem import Engine, EngineConfig, open_engine
from triomem.transports import ServerAddress, WebSocketOptions

MAX_MESSAGE = 4 * 1024 * 1024  # the default, in characters
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": "init", "method": "initialize",
                         "params": initialize_params()})
RSS_GROWTH_BOUND_MB = 1024  # generous: the figures are reported; this catches runaways


@attrs.define
class Watch:
    calls: int = 0
    slowest_ms: float = 0.0


@contextlib.asynccontextmanager
async def sentinel(address: ServerAddress) -> AsyncIterator[Watch]:
    """A well-behaved client storing and recalling every 20 ms for the block; it fails the
    test if one of its calls fails or takes more than 10 s."""
    watch = Watch()
    async with open_websocket_url(address.url, subprotocols=["mcp"]) as ws, \
            trio.open_nursery() as nursery:
        mcp = Mcp(ws)
        await mcp.handshake()

        async def loop() -> None:
            for i in range(10**7):
                started = time.perf_counter()
                with trio.fail_after(10):
                    content = f"sentinel note {i} k{i}q"
                    stored = tool_result(await mcp.call("memory_store", {"content": content}))
                    assert stored["isError"] is False, stored
                    recall = tool_result(await mcp.call("memory_recall",
                                                        {"query": f"k{i}q", "limit": 3}))
                    hits = [h["memory"]["content"] for h in recall["structuredContent"]["hits"]]
                    assert content in hits, recall
                watch.calls += 2
                watch.slowest_ms = max(watch.slowest_ms, (time.perf_counter() - started) * 1e3)
                await trio.sleep(0.02)

        nursery.start_soon(loop)
        yield watch
        nursery.cancel_scope.cancel()
    assert watch.calls > 0


@contextlib.asynccontextmanager
async def hostile_server(tmp_path: Path, options: WebSocketOptions | None = None,
                         engine_config: EngineConfig | None = None
                         ) -> AsyncIterator[tuple[Engine, ServerAddress, Watch]]:
    config = engine_config or EngineConfig(embedder=HashEmbedder(), executor="thread")
    async with open_engine(tmp_path / "hostile.db", config) as engine, \
            running_server(engine, options) as address, sentinel(address) as watch:
        yield engine, address, watch


async def connect(address: ServerAddress, *, initialize: bool = True) -> RawWs:
    ws = await RawWs.connect(address.host, address.port)
    assert ws.status == 101, ws.status
    if initialize:
        await ws.send_text(INITIALIZE)
        reply = await ws.receive()
        assert isinstance(reply, dict) and reply["id"] == "init", reply
        await ws.send_text('{"jsonrpc":"2.0","method":"notifications/initialized"}')
    return ws


async def ask(ws: RawWs, text: str | bytes) -> dict[str, Any] | Closed:
    """Send one message; its one reply (checked well-formed), or how the connection ended."""
    await ws.send_text(text)
    return await ws.receive()


def ping(request_id: int) -> str:
    return '{"jsonrpc":"2.0","id":' + str(request_id) + ',"method":"ping"}'


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _error_kind(reply: dict[str, Any] | Closed) -> str:
    assert isinstance(reply, dict), reply
    if "error" in reply:
        return str(reply["error"]["data"]["kind"])
    result = reply["result"]
    return str(result["structuredContent"]["error"]["kind"]) if result.get("isError") else "ok"


# -- messages -----------------------------------------------------------------------------

MALFORMED: list[tuple[str | bytes, str]] = [
    ("", "parse_error"), ("{", "parse_error"), ("}", "parse_error"), ("null", "invalid_request"),
    ("[]", "invalid_request"), ('[{"jsonrpc":"2.0","id":1,"method":"ping"}]', "invalid_request"),
    ("1", "invalid_request"), ('"ping"', "invalid_request"), ("\ufeff{}", "parse_error"),
    ('{"jsonrpc":"2.0","id":1,"method":"ping"', "parse_error"),
    ('{"jsonrpc":"1.0","id":1,"method":"ping"}', "invalid_request"),
    ('{"jsonrpc":"2.0","id":null,"method":"ping"}', "invalid_request"),
    ('{"jsonrpc":"2.0","id":1.5,"method":"ping"}', "invalid_request"),
    ('{"jsonrpc":"2.0","id":true,"method":"ping"}', "invalid_request"),
    ('{"jsonrpc":"2.0","id":{},"method":"ping"}', "invalid_request"),
    ('{"jsonrpc":"2.0","id":1,"method":7}', "invalid_request"),
    ('{"jsonrpc":"2.0","id":1}', "invalid_request"),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","params":[]}', "invalid_params"),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","params":NaN}', "parse_error"),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","x":Infinity}', "parse_error"),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","x":' + "9" * 5000 + "}", "parse_error"),
    ('{"jsonrpc":"2.0","id":1,"method":"ping","x":1e999999}', "ok"),
    ('{"jsonrpc":"2.0","id":1,"method":"' + "m" * 100_000 + '"}', "method_not_found"),
    ('{"jsonrpc":"2.0","id":1,"method":"ping\\u0000"}', "method_not_found"),
    ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"memory_store",'
     '"arguments":{"content":"\\ud800"}}}', "invalid_input"),
    ('{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', "ok"),
    ('{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}', "ok"),
    ("[" * 100_000 + "]" * 100_000, "parse_error"),
    ('{"a":' * 100_000 + "1" + "}" * 100_000, "parse_error"),
    ("[" * 100_000, "parse_error"),
    ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"memory_store",'
     '"arguments":{"content":"deep","metadata":' + '{"a":' * 1000 + "1" + "}" * 1000 + "}}}",
     "parse_error"),
    ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"memory_store",'
     '"arguments":{"content":"wide","tags":' + json.dumps([f"t{i}" for i in range(100_000)]) +
     "}}}", "invalid_input"),
    ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"memory_recall",'
     '"arguments":{"query":"' + "word " * 12_000 + '"}}}', "ok"),
    ('{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"memory_get",'
     '"arguments":{"id":"' + "i" * 1_000_000 + '"}}}', "invalid_input"),
]


async def test_malformed_nested_and_huge_messages_get_well_formed_answers(
        tmp_path: Path) -> None:
    with measured() as figures:
        async with hostile_server(tmp_path) as (_, address, watch):
            ws = await connect(address)
            with trio.fail_after(60):
                for text, kind in MALFORMED:
                    reply = await ask(ws, text)
                    assert _error_kind(reply) == kind, (text[:80], reply)
                # Notifications, however odd, are never answered: the ping's answer is next.
                for note in ('{"jsonrpc":"2.0","method":"notifications/cancelled"}',
                             '{"jsonrpc":"2.0","method":"x","params":[1]}',
                             '{"jsonrpc":"2.0","method":"notifications/cancelled",'
                             '"params":{"requestId":{"a":1}}}'):
                    await ws.send_text(note)
                assert (await ask(ws, '{"jsonrpc":"2.0","id":"p","method":"ping"}')) == {
                    "jsonrpc": "2.0", "id": "p", "result": {}}
                # Just under the limit: one text message of exactly MAX_MESSAGE characters.
                head = '{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":' \
                       '"memory_store","arguments":{"content":"'
                tail = '"}}}'
                under = head + "u" * (MAX_MESSAGE - len(head) - len(tail)) + tail
                assert len(under) == MAX_MESSAGE
                assert _error_kind(await ask(ws, under)) == "invalid_input"  # > 64 KiB content
                over = head + "o" * (MAX_MESSAGE + 1 - len(head) - len(tail)) + tail
                closed = await ask(ws, over)
                assert isinstance(closed, Closed) and closed.code == 1009, closed
                await ws.aclose()
                ws = await connect(address)  # and the server takes new connections
                assert _error_kind(await ask(ws, '{"jsonrpc":"2.0","id":1,"method":"ping"}')
                                   ) == "ok"
                await ws.aclose()
    emit("hostile messages (malformed, nested, huge)", inputs=len(MALFORMED) + 6, faults=1,
         acknowledged=0, lost=0, crashes=0, sentinel_calls=watch.calls,
         sentinel_slowest_ms=round(watch.slowest_ms, 1), **figures)
    assert figures["rss_growth_mb"] < RSS_GROWTH_BOUND_MB, figures


# -- frames -------------------------------------------------------------------------------

PING = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
FORBIDDEN: list[tuple[str, bytes, set[int | None]]] = [
    ("invalid UTF-8 in a text frame", frame(OP_TEXT, PING[:-1] + b"\xff}"), {None, 1007}),
    ("an overlong UTF-8 encoding", frame(OP_TEXT, b'"\xc0\xaf"'), {None, 1007}),
    ("a UTF-16 surrogate in UTF-8", frame(OP_TEXT, b'"\xed\xa0\x80"'), {None, 1007}),
    ("invalid UTF-8 split across fragments",
     frame(OP_TEXT, b'{"a":"\xe4', fin=False) + frame(OP_CONTINUATION, b'\x28"}'), {None, 1007}),
    ("a binary frame", frame(OP_BINARY, PING), {1003}),
    ("a fragmented binary message", frame(OP_BINARY, PING[:5], fin=False) +
     frame(OP_CONTINUATION, PING[5:]), {1003}),
    ("RSV1 without an extension", frame(OP_TEXT, PING, rsv=4), {None, 1002}),
    ("RSV3", frame(OP_TEXT, PING, rsv=1), {None, 1002}),
    ("an unmasked client frame", frame(OP_TEXT, PING, masked=False), {None, 1002}),
    ("reserved opcode 3", frame(3, b"x"), {None, 1002}),
    ("reserved control opcode 0xB", frame(0xB, b"x"), {None, 1002}),
    ("a ping longer than 125 bytes", frame(OP_PING, b"p" * 126), {None, 1002}),
    ("a fragmented ping", frame(OP_PING, b"p", fin=False), {None, 1002}),
    ("a continuation with no message", frame(OP_CONTINUATION, b"x"), {None, 1002}),
    ("a new text frame inside a fragmented one",
     frame(OP_TEXT, b"{", fin=False) + frame(OP_TEXT, b"}"), {None, 1002}),
    ("a close frame with a 1-byte payload", frame(OP_CLOSE, b"\x03"), {None, 1002}),
    ("close code 999", frame(OP_CLOSE, (999).to_bytes(2, "big")), {None, 1002}),
    ("close code 1005", frame(OP_CLOSE, (1005).to_bytes(2, "big")), {None, 1002}),
    ("a close reason in invalid UTF-8", frame(OP_CLOSE, b"\x03\xe8\xff"), {None, 1007}),
    ("a 64-bit length with the top bit set",
     bytes([0x81, 0xFF]) + (2**63 + 5).to_bytes(8, "big") + b"\0\0\0\0x", {None, 1002, 1009}),
    ("a normal close", frame(OP_CLOSE, (1000).to_bytes(2, "big")), {1000}),
]
ALLOWED: list[tuple[str, bytes]] = [
    ("a message in three fragments", frame(OP_TEXT, PING[:10], fin=False) +
     frame(OP_CONTINUATION, PING[10:20], fin=False) + frame(OP_CONTINUATION, PING[20:])),
    ("a ping between fragments", frame(OP_TEXT, PING[:10], fin=False) + frame(OP_PING, b"hi") +
     frame(OP_CONTINUATION, PING[10:])),
    ("empty fragments", frame(OP_TEXT, b"", fin=False) + frame(OP_CONTINUATION, b"", fin=False)
     + frame(OP_CONTINUATION, PING)),
    ("an unsolicited pong", frame(OP_PONG, b"?") + text_frame(PING)),
    ("a random mask", bytes([0x81, 0x80 | len(PING)]) + b"\x37\xfa\x21\x3d" +
     bytes(b ^ b"\x37\xfa\x21\x3d"[i % 4] for i, b in enumerate(PING))),
]


async def test_frames_the_protocol_forbids_close_only_their_connection(tmp_path: Path) -> None:
    outcomes: Counter[str] = Counter()
    with measured() as figures:
        async with hostile_server(tmp_path) as (_, address, watch):
            with trio.fail_after(60):
                for name, data in ALLOWED:
                    ws = await connect(address)
                    await ws.send(data)
                    reply = await ws.receive()
                    assert isinstance(reply, dict) and reply["result"] == {}, (name, reply)
                    await ws.aclose()
                for name, data, codes in FORBIDDEN:
                    ws = await connect(address)
                    await ws.send(data)
                    closed = await ws.closed()
                    assert closed.code in codes, (name, closed)
                    outcomes[f"close {closed.code}"] += 1
                    await ws.aclose()
                    ws = await connect(address)  # the server goes on
                    assert _error_kind(await ask(ws, PING)) == "ok"
                    await ws.aclose()
    emit("forbidden WebSocket frames", inputs=len(FORBIDDEN) + len(ALLOWED),
         faults=len(FORBIDDEN), acknowledged=0, lost=0, crashes=0, closes=dict(outcomes),
         sentinel_calls=watch.calls, **figures)


async def test_oversized_frames_close_1009(tmp_path: Path) -> None:
    with measured() as figures:
        async with hostile_server(tmp_path) as (_, address, watch):
            with trio.fail_after(60):
                chunk = b"x" * 65536
                # One frame that promises far more than the limit, arriving piece by piece.
                ws = await connect(address)
                await ws.send(bytes([0x81, 0xFF]) + (2**62).to_bytes(8, "big") + b"\0\0\0\0")
                sent = 0
                while sent <= MAX_MESSAGE + len(chunk) and await ws.send(chunk):
                    sent += len(chunk)
                assert (await ws.closed()).code == 1009
                await ws.aclose()
                # Many small fragments adding up to more than the limit.
                ws = await connect(address)
                piece = frame(OP_TEXT, chunk, fin=False)
                for _ in range(MAX_MESSAGE // len(chunk) + 2):
                    if not await ws.send(piece):
                        break
                    piece = frame(OP_CONTINUATION, chunk, fin=False)
                assert (await ws.closed()).code == 1009
                await ws.aclose()
                # Big but under the limit, in one frame: answered.
                ws = await connect(address)
                reply = await ask(ws, '{"jsonrpc":"2.0","id":2,"method":"ping","params":{"x":"'
                                  + "y" * (MAX_MESSAGE - 100) + '"}}')
                assert _error_kind(reply) == "ok"
                await ws.aclose()
    emit("oversized frames", inputs=3, faults=2, acknowledged=0, lost=0, crashes=0,
         sentinel_calls=watch.calls, **figures)
    assert figures["rss_growth_mb"] < RSS_GROWTH_BOUND_MB, figures


# -- floods -------------------------------------------------------------------------------

async def test_a_flood_of_requests_on_one_connection_is_bounded(tmp_path: Path) -> None:
    """Calls beyond ``max_in_flight`` are refused ``overloaded`` at once; every request gets
    exactly one answer; nothing accepted is lost."""
    gate = GateEmbedder(marker="flood")  # every flood text holds an embed worker
    flood = 3000
    max_in_flight = 64  # ServerOptions' default
    config = EngineConfig(embedder=gate, executor="thread")
    with measured() as figures:
        try:
            async with hostile_server(tmp_path, engine_config=config) as (engine, address, _):
                ws = await connect(address)
                replies: dict[int, list[dict[str, Any]]] = {}

                async def read() -> None:
                    while True:
                        message = await ws.receive()
                        assert isinstance(message, dict), message
                        replies.setdefault(message["id"], []).append(message)

                with trio.fail_after(60):
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(read)
                        for n in range(flood):
                            content = f"flood {n}"
                            await ws.send_text(json.dumps({
                                "jsonrpc": "2.0", "id": n, "method": "tools/call",
                                "params": {"name": "memory_store",
                                           "arguments": {"content": content}}}))
                            if n == 0:  # the engine is stuck on the flood from now on
                                await gate.wait_entered()
                            if n % 100 == 0:  # pings are answered while calls are stuck
                                await ws.send_text(ping(100_000 + n))
                        await wait_until(
                            lambda: len(replies) >= flood - max_in_flight + flood // 100)
                        gate.release()
                        await wait_until(lambda: len(replies) >= flood + flood // 100)
                        nursery.cancel_scope.cancel()
                assert all(len(r) == 1 for r in replies.values())
                kinds = Counter(_error_kind(r[0]) for n, r in replies.items() if n < flood)
                assert kinds == {"ok": max_in_flight, "overloaded": flood - max_in_flight}, kinds
                stored = {m.content for m in (await engine.list(limit=1000, tags_any=())
                                              ).memories}
                accepted = {f"flood {n}" for n, r in replies.items()
                            if n < flood and _error_kind(r[0]) == "ok"}
                assert accepted <= stored
                await ws.aclose()
        finally:
            gate.release()
    emit("request flood on one connection (3000 calls, engine held)", inputs=flood,
         faults=0, acknowledged=kinds["ok"], lost=0, crashes=0,
         overloaded=kinds["overloaded"], **figures)


async def test_a_client_that_does_not_read_is_slowed_not_buffered(tmp_path: Path) -> None:
    """10k requests (pings, and every fifth a ``tools/list`` whose 13 kB answers add up to
    more than any socket buffers) sent without reading: the server stops reading too (its
    reply queue is bounded), then answers every one, in order, once the client reads."""
    count = 10_000
    with measured() as figures:
        async with hostile_server(tmp_path) as (_, address, watch):
            ws = await connect(address)
            sent = 0

            async def send_all() -> None:
                nonlocal sent
                for n in range(count):
                    await ws.send_text(ping(n) if n % 5 else
                                       '{"jsonrpc":"2.0","id":' + str(n) +
                                       ',"method":"tools/list"}')
                    sent += 1

            with trio.fail_after(60):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(send_all)
                    await trio.sleep(1.0)  # not reading: the sender stalls on backpressure
                    stalled_at = sent
                    got = 0
                    while got < count:
                        reply = await ws.receive()
                        assert isinstance(reply, dict) and reply["id"] == got, reply
                        got += 1
            await ws.aclose()
    assert stalled_at < count, "the server should have stopped reading a client that does not"
    emit("requests without reading (10k)", inputs=count, faults=0, acknowledged=0, lost=0,
         crashes=0, sent_before_backpressure=stalled_at, sentinel_calls=watch.calls, **figures)
    assert figures["rss_growth_mb"] < RSS_GROWTH_BOUND_MB, figures


# -- slow and idle clients ----------------------------------------------------------------

async def test_slowloris_handshakes_time_out_and_stalled_frames_hold_only_a_slot(
        tmp_path: Path) -> None:
    options = WebSocketOptions(handshake_timeout=1.0, max_connections=21)  # sentinel + 20
    partial = 200
    with measured() as figures:
        async with hostile_server(tmp_path, options) as (_, address, watch):
            host, port = address.host, address.port
            request = handshake_request(host, port)
            with trio.fail_after(60):
                started = time.perf_counter()
                durations: list[float] = []

                async def slow_handshake(n: int) -> None:
                    ws = await RawWs.connect(host, port, handshake=False)
                    if n % 2:
                        await ws.send(request[: len(request) // 2])  # half, then silence
                    else:
                        for i in range(0, 40):  # a byte every 100 ms: never finishes in time
                            if not await ws.send(request[i:i + 1]):
                                break
                            with trio.move_on_after(0.1):
                                if await ws.read_frame() is None:
                                    break
                    closed = await ws.closed()
                    durations.append(time.perf_counter() - started)
                    assert closed == Closed(None)
                    await ws.aclose()

                async with trio.open_nursery() as nursery:
                    for n in range(partial):
                        nursery.start_soon(slow_handshake, n)
                assert max(durations) < 3.0, max(durations)  # the 1 s handshake timeout
                # After the handshake, a frame that never finishes holds one slot, no more.
                stalled = []
                for _ in range(20):
                    ws = await connect(address)
                    await ws.send(bytes([0x81, 0xFE, 0x10, 0x00]))  # 4096 bytes promised...
                    stalled.append(ws)
                extra = await RawWs.connect(host, port)
                assert extra.status == 503  # the slots are all taken
                await extra.aclose()
                for ws in stalled:
                    await ws.aclose()
                while True:  # the slots free as the stalled clients go
                    again = await RawWs.connect(host, port)
                    await again.aclose()
                    if again.status == 101:
                        break
                    await trio.sleep(0.05)
    emit("slowloris handshakes and stalled frames", inputs=partial + 21, faults=partial + 20,
         acknowledged=0, lost=0, crashes=0, slowest_close_s=round(max(durations), 2),
         sentinel_calls=watch.calls, **figures)


async def idle_connections(tmp_path: Path, connections: int, max_connections: int
                           ) -> dict[str, Any]:
    raise_fd_limit(2 * connections + 2048)
    options = WebSocketOptions(max_connections=max_connections)
    with measured() as figures:
        async with hostile_server(tmp_path, options) as (_, address, watch):
            baseline_fds = open_fds()
            opened: list[RawWs] = []
            limiter = trio.CapacityLimiter(64)

            async def open_one() -> None:
                async with limiter:
                    opened.append(await RawWs.connect(address.host, address.port))

            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    for _ in range(connections):
                        nursery.start_soon(open_one)
                statuses = Counter(ws.status for ws in opened)
                await trio.sleep(1.5)  # refused connections are closed after a short linger
                held_fds = open_fds() - baseline_fds
                for ws in opened:
                    await ws.aclose()
                while True:  # the slots free as the idle clients go
                    again = await RawWs.connect(address.host, address.port)
                    await again.aclose()
                    if again.status == 101:
                        break
                    await trio.sleep(0.05)
    accepted = max_connections - 1  # the sentinel holds one slot
    assert statuses == {101: accepted, 503: connections - accepted}, statuses
    # This process holds the client ends (all of them) and the server ends of the accepted
    # ones; the server ends of the refused ones are closed.
    assert held_fds < connections + accepted + 100, (held_fds, connections, accepted)
    return {"inputs": connections, "faults": 0, "acknowledged": 0, "lost": 0, "crashes": 0,
            "accepted": statuses[101], "refused_503": statuses[503], "fds_held": held_fds,
            "sentinel_calls": watch.calls, **figures}


async def test_idle_connections_beyond_the_limit_get_503_short(tmp_path: Path) -> None:
    report = await idle_connections(tmp_path, connections=1000, max_connections=100)
    emit("idle connections beyond max_connections (1000, limit 100)", **report)
    assert report["rss_growth_mb"] < RSS_GROWTH_BOUND_MB, report


@pytest.mark.slow
async def test_idle_connections_beyond_the_limit_get_503_long(tmp_path: Path) -> None:
    # Each connection costs this process two descriptors (client and server ends).
    connections = min(6000, (raise_fd_limit(2 * 6000 + 2048) - 2048) // 2)
    report = await idle_connections(tmp_path, connections=connections, max_connections=512)
    emit(f"idle connections beyond max_connections ({connections}, limit 512)",
         variant="long", **report)
    assert report["rss_growth_mb"] < 2 * RSS_GROWTH_BOUND_MB, report


# -- the fuzzer ---------------------------------------------------------------------------

@attrs.define
class _Conn:
    ws: RawWs
    sent_ids: Counter[Any] = attrs.field(factory=Counter)
    replies: Counter[Any] = attrs.field(factory=Counter)
    expect_close: bool = False
    closed: Closed | None = None


async def fuzz(tmp_path: Path, inputs: int, seed: int, connections: int = 4
               ) -> dict[str, Any]:
    fuzzer = Fuzzer(random.Random(seed))
    kinds: Counter[str] = Counter()
    replies: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    with measured() as figures:
        async with hostile_server(tmp_path) as (_, address, watch), \
                trio.open_nursery() as readers:

            async def read(conn: _Conn) -> None:
                while True:
                    message = await conn.ws.receive()  # raises BadReply if malformed
                    if isinstance(message, Closed):
                        conn.closed = message
                        assert conn.expect_close, f"the server closed a connection: {message}"
                        return
                    request_id = message.get("id")
                    if "method" in message:
                        replies[f"notification {message['method']}"] += 1
                        continue
                    if "error" in message:
                        replies[f"error {message['error']['data']['kind']}"] += 1
                    else:
                        result = message["result"]
                        structured = result.get("structuredContent", {})
                        if result.get("isError"):
                            replies[f"tool error {structured['error']['kind']}"] += 1
                        else:
                            replies["result"] += 1
                            replies["stored"] += "created" in structured
                        memory = structured.get("memory")
                        if isinstance(memory, dict) and len(fuzzer.known_ids) < 200:
                            fuzzer.known_ids.append(memory["id"])
                    if request_id is not None:
                        conn.replies[json.dumps(request_id)] += 1
                        assert conn.replies[json.dumps(request_id)] <= \
                            conn.sent_ids[json.dumps(request_id)], message

            async def new_conn() -> _Conn:
                conn = _Conn(await connect(address))
                readers.start_soon(read, conn)
                return conn

            async def checkpoint(conn: _Conn, n: int) -> None:
                key = json.dumps(f"checkpoint {n}")
                conn.sent_ids[key] += 1
                await conn.ws.send_text('{"jsonrpc":"2.0","id":' + key + ',"method":"ping"}')
                with trio.fail_after(30):
                    await wait_until(lambda: conn.replies[key] > 0)

            pool = [await new_conn() for _ in range(connections)]
            with trio.fail_after(max(120, inputs * 0.02)):
                for n in range(inputs):
                    item: Input = fuzzer.next()
                    kinds[item.kind] += 1
                    slot = fuzzer.rng.randrange(connections)
                    conn = pool[slot]
                    if item.frame is not None:
                        conn.expect_close = True
                        await conn.ws.send(item.frame)
                        with trio.fail_after(10):
                            await wait_until(lambda c=conn: c.closed is not None)  # type: ignore[misc]
                        assert conn.closed is not None
                        closes[str(conn.closed.code)] += 1
                        await conn.ws.aclose()
                        pool[slot] = await new_conn()
                        continue
                    assert item.text is not None
                    with contextlib.suppress(ValueError, RecursionError):
                        sent = json.loads(item.text)
                        if isinstance(sent, dict) and "id" in sent:
                            conn.sent_ids[json.dumps(sent["id"])] += 1
                    assert await conn.ws.send_text(item.text), "the server closed on us"
                    if n % 50 == 49:
                        for c in pool:
                            await checkpoint(c, n)
                for c in pool:
                    await checkpoint(c, inputs)
            for c in pool:
                c.expect_close = True
                await c.ws.aclose()
            readers.cancel_scope.cancel()
    return {"inputs": inputs, "faults": kinds["frame"], "acknowledged": replies["stored"],
            "lost": None, "crashes": 0, "kinds": dict(kinds), "replies": dict(replies),
            "closes": dict(closes), "sentinel_calls": watch.calls,
            "sentinel_slowest_ms": round(watch.slowest_ms, 1), **figures}


async def test_fuzzer_over_a_live_socket_short(tmp_path: Path) -> None:
    report = await fuzz(tmp_path, inputs=2000, seed=2000)
    emit("fuzzer over a live WebSocket (2k inputs)", **report)
    assert report["replies"].get("error internal_error", 0) == 0, report
    assert report["replies"].get("tool error engine_closed", 0) == 0, report
    assert report["rss_growth_mb"] < RSS_GROWTH_BOUND_MB, report


@pytest.mark.slow
async def test_fuzzer_over_a_live_socket_long(tmp_path: Path) -> None:
    report = await fuzz(tmp_path, inputs=100_000, seed=100_000)
    emit("fuzzer over a live WebSocket (100k inputs)", variant="long", **report)
    assert report["replies"].get("error internal_error", 0) == 0, report
    assert report["replies"].get("tool error engine_closed", 0) == 0, report
    assert report["rss_growth_mb"] < 2 * RSS_GROWTH_BOUND_MB, report
