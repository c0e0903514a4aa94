"""The server side of a WebSocket: wsproto for the handshake and rare frames, a fast path for
the common one.

trio-websocket (what the server used first) runs a reader task per connection that feeds
every byte through wsproto's pure-Python frame parser and hands each message over a channel.
Measured with 64 MCP clients that was about a fifth of a request's server time
(design/performance.md). Here one task per connection reads: a whole, unfragmented, masked
text frame at the head of the buffer (what MCP clients send) is unmasked and decoded in place;
anything else (a ping, a close, a fragment, a binary frame, reserved bits) hands the buffer to
wsproto from that frame on, and the connection stays on wsproto from then on. Outgoing text
and binary messages are framed here (a server frame is a header and the payload); control
frames go through wsproto.

The opening handshake is read up to its blank line and only those bytes go to wsproto, so
frames a client sends right behind its request stay in this module's buffer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from . import _wsframes as frames
from ._streams import ReadWhenReadyStream

CLOSE_NORMAL = 1000
CLOSE_TOO_BIG = 1009
MAX_REQUEST_HEAD = 16 * 1024  # bytes of HTTP request head before the blank line
_READ = 64 * 1024
_FAST_FIRST_BYTE = frames.FIN | frames.TEXT  # no reserved bits


class ConnectionClosed(Exception):
    """The WebSocket is closed (by either side); ``code`` and ``reason`` as sent."""

    def __init__(self, code: int, reason: str | None) -> None:
        super().__init__(f"WebSocket closed: {code} {reason or ''}".rstrip())
        self.code, self.reason = code, reason


@attrs.define(eq=False)
class WebSocketRequest:
    """An opening handshake waiting for ``accept`` or ``reject``."""

    path: str
    headers: Sequence[tuple[bytes, bytes]]
    proposed_subprotocols: Sequence[str]
    _conn: WebSocket

    async def accept(self, subprotocol: str | None = None) -> WebSocket:
        await self._conn.send_raw(self._conn.ws.send(AcceptConnection(subprotocol=subprotocol)))
        return self._conn

    async def reject(self, status: int, *, extra_headers: Sequence[tuple[bytes, bytes]] = (),
                     body: bytes = b"", linger: float = 1.0) -> None:
        """Answer with an HTTP status and body, then end the connection."""
        headers = [*extra_headers, (b"Content-Length", str(len(body)).encode()),
                   (b"Content-Type", b"text/plain; charset=utf-8")]
        data = self._conn.ws.send(RejectConnection(status_code=status, headers=headers,
                                                   has_body=True))
        data += self._conn.ws.send(RejectData(data=body))
        stream = self._conn.stream
        await self._conn.send_raw(data)
        # A FIN after the response, so the client reads all of it; a moment for it to hang
        # up; then the caller closes whatever it does.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_eof()
        await _until_peer_hangs_up(stream, linger)


@attrs.define(eq=False)
class WebSocket:
    """One server-side WebSocket connection over a stream."""

    stream: ReadWhenReadyStream
    max_message_size: int
    ws: WSConnection = attrs.field(factory=lambda: WSConnection(ConnectionType.SERVER))
    _buffer: bytearray = attrs.field(factory=bytearray)
    _slow: bool = False  # everything goes through wsproto from now on
    _parts: list[str | bytes] = attrs.field(factory=list)
    _parts_size: int = 0
    _closed: ConnectionClosed | None = None
    _send_lock: trio.StrictFIFOLock = attrs.field(factory=trio.StrictFIFOLock)

    # -- handshake --------------------------------------------------------------------------

    async def read_request(self) -> WebSocketRequest | None:
        """The opening handshake, or None if the peer sent something else or left."""
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_REQUEST_HEAD:
                return None
            data = await self.stream.receive_some(_READ)
            if not data:
                return None
            self._buffer += data
        head = bytes(self._buffer[:end + 4])
        del self._buffer[:end + 4]
        try:
            self.ws.receive_data(head)
        except RemoteProtocolError as exc:  # not an HTTP upgrade: answer 400 when wsproto can
            if isinstance(exc.event_hint, RejectConnection):
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError,
                                         LocalProtocolError):
                    await self.stream.send_all(self.ws.send(exc.event_hint))
            return None
        for event in self.ws.events():
            if isinstance(event, Request):
                return WebSocketRequest(event.target, event.extra_headers,
                                        event.subprotocols, self)
            return None
        return None

    # -- receiving --------------------------------------------------------------------------

    async def get_message(self) -> str | bytes:
        """The next whole message. Raises ``ConnectionClosed`` once the connection is closed."""
        while True:
            if self._closed is not None:
                raise self._closed
            text = self._fast_message() if not self._slow else None
            if text is not None:
                return text
            if self._slow:
                message = await self._wsproto_events()
                if message is not None:
                    return message
                if self._closed is not None:
                    continue
            try:
                data = await self.stream.receive_some(_READ)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self._closed = ConnectionClosed(1006, "connection lost")
                continue
            if self._slow:
                self.ws.receive_data(data)
            else:
                self._buffer += data

    def _fast_message(self) -> str | None:
        """The text message at the head of the buffer if it is a whole, plain masked text frame;
        None when more bytes are needed. Switches to wsproto for any other frame."""
        buffer = self._buffer
        head = frames.parse_header(buffer)
        if head is None:
            return None
        second, size, offset = head
        if buffer[0] != _FAST_FIRST_BYTE or not second & frames.MASKED:
            self._go_slow()
            return None
        if size > self.max_message_size:
            self._go_slow()  # the slow path counts what arrives and closes with 1009
            return None
        end = offset + 4 + size
        if len(buffer) < end:
            return None
        key = bytes(buffer[offset:offset + 4])
        payload = bytes(buffer[offset + 4:end])
        if key != b"\0\0\0\0":
            payload = frames.mask(payload, key)
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            self._go_slow()  # wsproto closes with 1007 for invalid text
            return None
        del buffer[:end]
        return text

    def _go_slow(self) -> None:
        self._slow = True
        if self._buffer:
            self.ws.receive_data(bytes(self._buffer))
            self._buffer.clear()

    async def _wsproto_events(self) -> str | bytes | None:
        for event in self.ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                part = event.data if isinstance(event.data, str) else bytes(event.data)
                self._parts.append(part)
                self._parts_size += len(part.encode() if isinstance(part, str) else part)
                if self._parts_size > self.max_message_size:
                    await self.aclose(CLOSE_TOO_BIG, "message too big")
                    return None
                if event.message_finished:
                    parts, self._parts, self._parts_size = self._parts, [], 0
                    if isinstance(parts[0], str):
                        return "".join(p for p in parts if isinstance(p, str))
                    return b"".join(p for p in parts if isinstance(p, bytes))
            elif isinstance(event, Ping):
                await self.send_raw(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self.ws.state is not ConnectionState.CLOSED:
                    await self.send_raw(self.ws.send(event.response()))
                self._closed = ConnectionClosed(event.code, event.reason)
                await self.stream.aclose()
                return None
        return None

    # -- sending ----------------------------------------------------------------------------

    async def send_message(self, message: str | bytes) -> None:
        if self._closed is not None:
            raise self._closed
        data = message.encode("utf-8") if isinstance(message, str) else message
        opcode = frames.TEXT if isinstance(message, str) else frames.BINARY
        await self.send_raw(frames.header(frames.FIN | opcode, len(data)) + data)

    async def send_raw(self, data: bytes) -> None:
        """Send bytes as they are, one sender at a time (frames never interleave)."""
        lock = self._send_lock
        try:
            if lock.locked():
                await lock.acquire()
            else:
                lock.acquire_nowait()  # the common case: no scheduling round for the lock
            try:
                await self.stream.send_all(data)
            finally:
                lock.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed = self._closed or ConnectionClosed(1006, "connection lost")
            raise self._closed from None

    async def aclose(self, code: int = CLOSE_NORMAL, reason: str | None = None,
                     *, linger: float = 1.0) -> None:
        """Send a close frame, wait up to ``linger`` seconds for the peer's, close the stream."""
        # wsproto's state is OPEN only between an accepted handshake and a close frame.
        if self._closed is None and self.ws.state is ConnectionState.OPEN:
            self._closed = ConnectionClosed(code, reason)
            with contextlib.suppress(ConnectionClosed):
                await self.send_raw(self.ws.send(CloseConnection(code=code, reason=reason)))
                await _until_peer_hangs_up(self.stream, linger)
        self._closed = self._closed or ConnectionClosed(code, reason)
        await self.stream.aclose()


async def _until_peer_hangs_up(stream: ReadWhenReadyStream, seconds: float) -> None:
    """Read and drop what the peer still sends until it hangs up, for at most ``seconds``."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError), \
            trio.move_on_after(seconds):
        while await stream.receive_some(_READ):
            pass


async def serve(handler: Callable[[WebSocketRequest], Awaitable[None]],
                listeners: Sequence[trio.abc.Listener[ReadWhenReadyStream]], *,
                handler_nursery: trio.Nursery, max_message_size: int,
                handshake_timeout: float,
                task_status: trio.TaskStatus[list[trio.abc.Listener[ReadWhenReadyStream]]]
                = trio.TASK_STATUS_IGNORED) -> None:
    """Accept connections until cancelled; each runs ``handler`` on its opening handshake."""

    async def connection(stream: ReadWhenReadyStream) -> None:
        ws = WebSocket(stream, max_message_size)
        try:
            request = None
            with trio.move_on_after(handshake_timeout):
                request = await ws.read_request()
            if request is None:
                return
            await handler(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionClosed):
            pass
        finally:
            with trio.move_on_after(handshake_timeout) as cleanup:
                cleanup.shield = True
                await ws.aclose()

    await trio.serve_listeners(connection, list(listeners), handler_nursery=handler_nursery,
                               task_status=task_status)
