"""A lean closed-loop MCP-over-WebSocket load generator: many connections, one thread.

The clients of ``bench.ws_clients`` run in a child process beside the server, on the same 2
cores. Written with trio-websocket they cost about 100 µs of CPU per request (their own event
loop, reader tasks, wsproto's pure-Python framing), CPU the server then cannot use: the
figure measured the client as much as the server. This one does what a load generator
should: blocking-free sockets under one ``selectors`` loop, RFC 6455 framing by hand (a text
frame per message, masked with a fresh random key as the RFC requires of clients), the
2025-11-25 handshake, then each connection sends ``tools/call memory_store`` one request at a
time and checks every answer. About 20 µs of CPU per request.

It speaks only what the benchmark needs: unfragmented text frames out; in, it reads text
frames and fails loudly on anything else (a close frame from the server is an error here).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import selectors
import socket
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from triomem.transports import _wsframes as frames

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ANSWER_TIMEOUT_S = 60.0  # a closed loop with no answer for this long is a hung server


class LoadError(RuntimeError):
    """The server answered something a well-behaved MCP server would not."""


def text_frame(text: str) -> bytes:
    """One masked, unfragmented text frame (client to server)."""
    data = text.encode()
    key = os.urandom(4)
    return (frames.header(frames.FIN | frames.TEXT, len(data), masked=True) + key
            + frames.mask(data, key))


def take_frames(buffer: bytearray) -> list[bytes]:
    """Remove the complete server frames at the front of ``buffer``; their payloads."""
    out: list[bytes] = []
    while (head := frames.parse_header(buffer)) is not None:
        second, size, offset = head
        if buffer[0] != frames.FIN | frames.TEXT or second & frames.MASKED:
            raise LoadError(f"expected an unmasked final text frame, got {bytes(buffer[:2])!r}")
        if len(buffer) < offset + size:
            break
        out.append(bytes(buffer[offset:offset + size]))
        del buffer[:offset + size]
    return out


@attrs.define(eq=False)
class Connection:
    """One WebSocket connection after its opening handshake (blocking until then)."""

    sock: socket.socket
    buffer: bytearray
    next_id: int = 0

    @classmethod
    def open(cls, url: str, subprotocol: str = "mcp", timeout: float = 10.0) -> Connection:
        target = urllib.parse.urlsplit(url)
        assert target.hostname is not None and target.port is not None, url
        sock = socket.create_connection((target.hostname, target.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key = base64.b64encode(os.urandom(16))
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n" % (
                         (target.path or "/").encode(), target.netloc.encode(), key,
                         subprotocol.encode()))
        response = b""
        while b"\r\n\r\n" not in response:
            data = sock.recv(4096)
            if not data:
                raise LoadError("the server closed the connection during the handshake")
            response += data
        head, rest = response.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(b":") for line in lines[1:])}
        accept = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())
        if b" 101 " not in lines[0] + b" " or headers.get(b"sec-websocket-accept") != accept:
            raise LoadError(f"WebSocket handshake refused: {lines[0]!r}")
        if headers.get(b"sec-websocket-protocol") != subprotocol.encode():
            raise LoadError(f"subprotocol {subprotocol!r} not selected")
        return cls(sock, bytearray(rest))

    def send(self, method: str, params: dict[str, Any] | None = None, *,
             notification: bool = False) -> int:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if not notification:
            self.next_id += 1
            message["id"] = self.next_id
        self.sock.sendall(text_frame(json.dumps(message)))
        return self.next_id

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One blocking round trip (for the handshake)."""
        request_id = self.send(method, params)
        while True:
            for payload in take_frames(self.buffer):
                reply: dict[str, Any] = json.loads(payload)
                if reply.get("id") == request_id:
                    return reply
            data = self.sock.recv(65536)
            if not data:
                raise LoadError("the server closed the connection")
            self.buffer += data


def connect(url: str, count: int, protocol_version: str) -> list[Connection]:
    """``count`` connections past the MCP handshake, switched to non-blocking."""
    connections = []
    for _ in range(count):
        connection = Connection.open(url)
        reply = connection.request("initialize", {
            "protocolVersion": protocol_version, "capabilities": {},
            "clientInfo": {"name": "bench.ws_load", "version": "1"}})
        if "result" not in reply:
            raise LoadError(f"initialize failed: {reply}")
        connection.send("notifications/initialized", notification=True)
        connection.sock.setblocking(False)
        connections.append(connection)
    return connections


@attrs.frozen
class LoadResult:
    wall_s: float
    latencies: list[float]
    answers: list[dict[str, Any]]  # each call's result, in completion order


def closed_loop(connections: Sequence[Connection],
                calls: Sequence[Sequence[tuple[str, dict[str, Any]]]],
                clock: Callable[[], float] = time.perf_counter) -> LoadResult:
    """Connection i sends ``calls[i]`` (tool name, arguments) one at a time, each as soon as
    the previous one is answered. Raises ``LoadError`` on a JSON-RPC error or ``isError``."""
    selector = selectors.DefaultSelector()
    sent_at = [0.0] * len(connections)
    position = [0] * len(connections)
    latencies: list[float] = []
    answers: list[dict[str, Any]] = []

    def fire(index: int) -> None:
        name, arguments = calls[index][position[index]]
        sent_at[index] = clock()
        connections[index].send("tools/call", {"name": name, "arguments": arguments})

    started = clock()
    active = 0
    for index, connection in enumerate(connections):
        if calls[index]:
            selector.register(connection.sock, selectors.EVENT_READ, index)
            fire(index)
            active += 1
    while active:
        events = selector.select(timeout=ANSWER_TIMEOUT_S)
        if not events:
            raise LoadError(f"no answer within {ANSWER_TIMEOUT_S} s")
        for key, _ in events:
            index = key.data
            connection = connections[index]
            data = connection.sock.recv(65536)
            if not data:
                raise LoadError("the server closed a connection mid-run")
            connection.buffer += data
            for payload in take_frames(connection.buffer):
                reply = json.loads(payload)
                if "id" not in reply:
                    continue  # a notification (progress, logging)
                latencies.append(clock() - sent_at[index])
                result = reply.get("result")
                if result is None or result.get("isError"):
                    raise LoadError(f"call failed: {reply}")
                answers.append(result)
                position[index] += 1
                if position[index] < len(calls[index]):
                    fire(index)
                else:
                    selector.unregister(connection.sock)
                    active -= 1
    selector.close()
    return LoadResult(clock() - started, latencies, answers)
