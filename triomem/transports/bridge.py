"""Relay MCP between a newline-delimited stream (a client's stdio) and a WebSocket (the server
that owns the database), message for message, in both directions.

The relay never answers for the server, with two exceptions that cannot reach it: a line over
the size limit and a line that is not UTF-8 (a WebSocket text frame must be) are answered
here with the error the server itself gives (-32600 ``message_too_large``, -32700).

End of input means the client is done sending, not gone (the stdio rule): the relay keeps the
socket open until every request it forwarded has its answer, then returns. It tells which
requests are still open with the core's own parser (``InFlight``), so it counts exactly what
the server will answer: requests and malformed messages, not notifications nor responses, and
not a request the client cancelled.
"""

from __future__ import annotations

import collections

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

from ._driver import MessageTooLarge
from .mcp import RequestId, dumps, parse_message, rpc_error
from .mcp._jsonrpc import (
    Malformed,
    Message,
    Notification,
    PeerResponse,
    Request,
    error_message,
    is_request_id,
)
from .stdio import LineTransport


class DaemonDisconnected(Exception):
    """The server closed the WebSocket (or the connection broke) before the client was done."""

    def __init__(self, code: int, reason: str | None) -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"the server closed the connection (code {code}{detail})")
        self.code = code
        self.reason = reason


def _disconnected(exc: ConnectionClosed) -> DaemonDisconnected:
    if exc.reason is None:  # the TCP connection broke without a closing handshake
        return DaemonDisconnected(1006, "connection lost")
    return DaemonDisconnected(exc.reason.code, exc.reason.reason)


class ClientGone(Exception):
    """The client closed its end of the output (nobody reads the answers any more)."""


@attrs.define(eq=False)
class InFlight:
    """Requests forwarded to the server and not answered yet, counted by id (an id may be
    counted twice: the server answers a duplicate id with an error and still answers the
    first; None stands for the messages it answers with ``"id": null``)."""

    _waiting: collections.Counter[RequestId | None] = attrs.field(factory=collections.Counter)
    _empty: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self._empty.set()

    @property
    def count(self) -> int:
        return self._waiting.total()

    def sent(self, message: Message) -> None:
        """Account for one message forwarded to the server."""
        if isinstance(message, Request | Malformed):
            if not self._waiting:
                self._empty = trio.Event()
            self._waiting[message.id] += 1
        elif isinstance(message, Notification) and message.method == "notifications/cancelled":
            # A cancelled request is never answered. Its answer may already be on its way: it
            # is then simply not waited for.
            request_id = message.params.get("requestId")
            if is_request_id(request_id):
                self._answered(request_id)

    def received(self, message: Message) -> None:
        """Account for one message from the server (after it was written to the client)."""
        if isinstance(message, PeerResponse):
            self._answered(message.id)

    def _answered(self, request_id: RequestId | None) -> None:
        if self._waiting[request_id] > 0:
            self._waiting[request_id] -= 1
            if not self._waiting[request_id]:
                del self._waiting[request_id]
            if not self._waiting:
                self._empty.set()

    async def wait_empty(self) -> None:
        """Return once every forwarded request has its answer."""
        while self._waiting:
            await self._empty.wait()


async def relay(ws: WebSocketConnection, lines: LineTransport) -> None:
    """Relay until the client's input ends and every request forwarded has been answered.

    Does not close ``ws``. Raises ``DaemonDisconnected`` if the server goes away first and
    ``ClientGone`` if the client stops reading; either stops both directions.
    """
    await _Relay(ws, lines).run()


@attrs.define(eq=False)
class _Relay:
    ws: WebSocketConnection
    lines: LineTransport
    in_flight: InFlight = attrs.field(factory=InFlight)
    # Answers from the server and the relay's own error replies share the output.
    _writing: trio.Lock = attrs.field(factory=trio.Lock)
    _failure: Exception | None = None

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._to_client, nursery.cancel_scope)
            if await self._to_server(nursery.cancel_scope):
                await self.in_flight.wait_empty()
            nursery.cancel_scope.cancel()
        # Raised here, outside the nursery, so callers get the error itself, not a group.
        if self._failure is not None:
            raise self._failure

    def _fail(self, failure: Exception, scope: trio.CancelScope) -> None:
        if self._failure is None:  # the first failure is the cause; the rest follow from it
            self._failure = failure
        scope.cancel()

    async def _to_server(self, scope: trio.CancelScope) -> bool:
        """Forward the client's lines; True at the end of its input, False after a failure."""
        while True:
            try:
                data = await self.lines.receive()
            except trio.EndOfChannel:
                return True
            except MessageTooLarge as exc:
                reply = error_message(None, rpc_error("message_too_large", str(exc),
                                                      {"limit": exc.limit}))
                if not await self._write(dumps(reply), scope):
                    return False
                continue
            try:
                text = data.decode("utf-8") if isinstance(data, bytes) else data
            except UnicodeDecodeError:
                malformed = parse_message(data)
                assert isinstance(malformed, Malformed)  # bad UTF-8 is a parse error
                if not await self._write(dumps(error_message(None, malformed.error)), scope):
                    return False
                continue
            # Counted before it is sent: the answer can come back before send_message returns.
            self.in_flight.sent(parse_message(text))
            try:
                await self.ws.send_message(text)
            except ConnectionClosed as exc:
                self._fail(_disconnected(exc), scope)
                return False

    async def _to_client(self, scope: trio.CancelScope) -> None:
        while True:
            try:
                message = await self.ws.get_message()
            except ConnectionClosed as exc:
                self._fail(_disconnected(exc), scope)
                return
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            if not await self._write(text, scope):
                return
            self.in_flight.received(parse_message(text))

    async def _write(self, text: str, scope: trio.CancelScope) -> bool:
        try:
            async with self._writing:
                await self.lines.send(text)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._fail(ClientGone("the client closed its input (our stdout)"), scope)
            return False
        return True
