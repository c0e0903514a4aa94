"""Servers and clients for the reliability tests over the wire.

- ``running_server``: ``serve_websocket`` in this process on 127.0.0.1, port 0;
- ``ServeProcess``: a real ``triomem serve`` process (killed by its pid, never by name);
- ``RawWs``: a WebSocket client on a bare TCP stream that sends exactly the bytes it is told
  to (masked frames with any opcode, flags, declared length or payload), for hostile input;
- ``Mcp``: a JSON-RPC client over trio-websocket that checks every reply is well-formed.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import trio
from trio_websocket import WebSocketConnection

from tests.transports._messages import initialize_params, is_well_formed_reply
from triomem import Engine
from triomem.transports import ServerAddress, WebSocketOptions, serve_websocket

ROOT = Path(__file__).resolve().parents[2]

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


@contextlib.asynccontextmanager
async def running_server(engine: Engine, options: WebSocketOptions | None = None
                         ) -> AsyncIterator[ServerAddress]:
    """``serve_websocket`` on 127.0.0.1:0 for the block; shut down gracefully after it. An
    exception from the server (a crash) propagates out of the block."""
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        address: ServerAddress = await nursery.start(
            lambda task_status: serve_websocket(engine, "127.0.0.1", 0, options=options,
                                                shutdown=shutdown, task_status=task_status))
        try:
            yield address
        finally:
            shutdown.set()


# -- JSON-RPC over trio-websocket ---------------------------------------------------------

class BadReply(AssertionError):
    pass


def check_reply(text: str | bytes) -> dict[str, Any]:
    """Decode one server message; raise ``BadReply`` unless it is well-formed JSON-RPC."""
    if not isinstance(text, str):
        raise BadReply(f"the server sent a binary frame: {text[:100]!r}")
    try:
        decoded = json.loads(text)
    except ValueError as exc:
        raise BadReply(f"not JSON: {text[:200]!r}") from exc
    if not is_well_formed_reply(decoded):
        raise BadReply(f"not well-formed JSON-RPC: {text[:300]!r}")
    result: dict[str, Any] = decoded
    return result


@attrs.define(eq=False)
class Mcp:
    """A client on one trio-websocket connection: requests by id, replies checked."""

    ws: WebSocketConnection
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1))

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send_message(message if isinstance(message, str) else json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        return check_reply(await self.ws.get_message())

    async def request(self, method: str, params: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        await self.send(message)
        while True:
            reply = await self.receive()
            if "method" not in reply:
                if reply.get("id") != request_id:
                    raise BadReply(f"answer to {reply.get('id')!r} while waiting for "
                                   f"{request_id}: {reply}")
                return reply

    async def handshake(self) -> None:
        answer = await self.request("initialize", initialize_params())
        assert "result" in answer, answer
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def call(self, name: str, arguments: dict[str, Any] | None = None
                   ) -> dict[str, Any]:
        """The ``tools/call`` reply: ``{"result": ...}`` or ``{"error": ...}``."""
        return await self.request("tools/call", {"name": name, "arguments": arguments or {}})


def tool_result(reply: dict[str, Any]) -> dict[str, Any]:
    assert "result" in reply, reply
    result: dict[str, Any] = reply["result"]
    return result


# -- a real ``triomem serve`` -------------------------------------------------------------

def clean_environment(home: Path) -> dict[str, str]:
    """This environment without ``TRIOMEM_*`` settings and with a config directory of its
    own (no settings file), so a developer's settings cannot change what a test runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOMEM_")}
    env.update(HF_HUB_OFFLINE="1", XDG_CONFIG_HOME=str(home / "xdg-config"))
    return env


@attrs.define(eq=False)
class ServeProcess:
    """``python -m triomem serve --db DB --port 0 --embedder wordllama --json``, its stderr in
    a file beside the database. ``url`` is set once it announced that it listens."""

    db: Path
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    @classmethod
    def spawn(cls, db: Path, *extra: str) -> ServeProcess:
        """Start the process; ``wait_listening`` for its announcement."""
        log = db.with_name(db.name + f".serve{time.monotonic_ns()}.log")
        with open(log, "wb") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "triomem", "serve", "--db", str(db), "--port", "0",
                 "--embedder", "wordllama", "--json", *extra],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                env=clean_environment(db.parent))
        return cls(db, process, log)

    @classmethod
    async def start(cls, db: Path, *extra: str, within: float = 60.0) -> ServeProcess:
        """Start the process and wait until it listens (killed if it does not)."""
        server = cls.spawn(db, *extra)
        try:
            with trio.fail_after(within):
                server.url = await server._announced()
        except BaseException:
            server.kill()
            raise
        return server

    async def _announced(self) -> str:
        while True:
            for line in self.log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    event = json.loads(line)
                    if event.get("event") == "listening":
                        url: str = event["url"]
                        return url
            if self.process.poll() is not None:
                raise RuntimeError(f"triomem serve exited {self.process.returncode}: "
                                   f"{self.log.read_text(errors='replace')}")
            await trio.sleep(0.02)

    @property
    def pid(self) -> int:
        return self.process.pid

    def listening(self) -> bool:
        """Whether it has announced its address by now."""
        return '"listening"' in self.stderr()

    def kill(self) -> bool:
        """SIGKILL, by pid, and reap it. False if it had already exited by itself."""
        alive = self.process.poll() is None
        if alive:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        return alive

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")


# -- a raw WebSocket client ---------------------------------------------------------------

def handshake_request(host: str, port: int, path: str = "/mcp",
                      headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             "Sec-WebSocket-Protocol: mcp", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True,
          declared: int | None = None) -> bytes:
    """One client frame. The mask key is zero (valid: the payload goes as is); ``declared``
    overrides the length field (a frame that promises more than it carries)."""
    length = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + length.to_bytes(8, "big")
    return head + (b"\0\0\0\0" if masked else b"") + payload


def text_frame(text: str | bytes) -> bytes:
    return frame(OP_TEXT, text.encode() if isinstance(text, str) else text)


@attrs.frozen
class Closed:
    """The server ended the connection: ``code`` from its close frame, or None for a TCP
    close without one."""

    code: int | None
    reason: str = ""


@attrs.define(eq=False)
class RawWs:
    stream: trio.SocketStream
    status: int = 0
    headers: dict[str, str] = attrs.field(factory=dict)  # of the HTTP response, lower case
    _buffer: bytearray = attrs.field(factory=bytearray)
    _sending: trio.Lock = attrs.field(factory=trio.Lock)  # a sender and a reader may share it

    @classmethod
    async def connect(cls, host: str, port: int, *, path: str = "/mcp",
                      headers: tuple[tuple[str, str], ...] = (), handshake: bool = True
                      ) -> RawWs:
        """Open a TCP stream; with ``handshake``, upgrade it and record the HTTP status."""
        ws = cls(await trio.open_tcp_stream(host, port))
        if handshake:
            try:
                await ws.stream.send_all(handshake_request(host, port, path, headers))
                ws.status = await ws._response_status()
            except BaseException:
                await ws.aclose()
                raise
        return ws

    async def _fill(self) -> bool:
        data = await self.stream.receive_some(65536)
        self._buffer += data
        return bool(data)

    async def _response_status(self) -> int:
        while b"\r\n\r\n" not in self._buffer:
            if not await self._fill():
                return 0  # closed before answering
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        self._buffer[:] = rest[length:] if status != 101 else rest
        return status

    async def send(self, data: bytes) -> bool:
        """Send raw bytes; False when the server has already closed the connection."""
        try:
            async with self._sending:
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def send_text(self, text: str | bytes) -> bool:
        return await self.send(text_frame(text))

    async def _need(self, n: int) -> bool:
        while len(self._buffer) < n:
            try:
                if not await self._fill():
                    return False
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return False
        return True

    async def read_frame(self) -> tuple[bool, int, bytes] | None:
        """The next server frame (fin, opcode, payload), or None at the end of the stream."""
        if not await self._need(2):
            return None
        length = self._buffer[1] & 0x7F
        offset = 2
        if length == 126:
            if not await self._need(4):
                return None
            length, offset = int.from_bytes(self._buffer[2:4], "big"), 4
        elif length == 127:
            if not await self._need(10):
                return None
            length, offset = int.from_bytes(self._buffer[2:10], "big"), 10
        if not await self._need(offset + length):
            return None
        fin, opcode = bool(self._buffer[0] & 0x80), self._buffer[0] & 0xF
        payload = bytes(self._buffer[offset:offset + length])
        del self._buffer[:offset + length]
        return fin, opcode, payload

    async def receive(self) -> dict[str, Any] | Closed:
        """The next JSON-RPC message (checked well-formed), or how the connection ended.
        Pings are answered; a close frame is answered and ends the connection."""
        parts: list[bytes] = []
        while True:
            got = await self.read_frame()
            if got is None:
                return Closed(None)
            fin, opcode, payload = got
            if opcode == OP_PING:
                await self.send(frame(OP_PONG, payload))
            elif opcode == OP_PONG:
                continue
            elif opcode == OP_CLOSE:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                await self.send(frame(OP_CLOSE, payload[:2]))
                return Closed(code, payload[2:].decode(errors="replace"))
            elif opcode in (OP_TEXT, OP_CONTINUATION):
                parts.append(payload)
                if fin:
                    return check_reply(b"".join(parts).decode("utf-8"))
            else:
                return check_reply(payload)  # a binary frame from the server: a BadReply

    async def closed(self) -> Closed:
        """Read until the server ends the connection; replies on the way are checked."""
        while True:
            got = await self.receive()
            if isinstance(got, Closed):
                return got

    async def aclose(self) -> None:
        """Drop the TCP connection (no closing handshake)."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self.stream.aclose()


async def wait_until(condition: Callable[[], bool], interval: float = 0.002) -> None:
    """Poll ``condition``: state another task keeps, with no event to wait on."""
    while not condition():  # noqa: ASYNC110
        await trio.sleep(interval)


def task_names() -> Counter[str]:
    """Every task alive in this trio run (the root task's whole tree), by name."""
    root = trio.lowlevel.current_root_task()
    assert root is not None
    names: Counter[str] = Counter()
    stack = [root]
    while stack:
        task = stack.pop()
        names[task.name] += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return names


def count_tasks() -> int:
    return task_names().total()
