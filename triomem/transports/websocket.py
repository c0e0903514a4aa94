"""MCP over WebSocket: ``ws://HOST:PORT/mcp``.

WebSocket is not an MCP spec transport; this follows the convention every WebSocket client
uses (see design/mcp.md): the server selects subprotocol ``mcp`` (Node clients abort
otherwise), one JSON-RPC message per UTF-8 text frame, the connection is the session.

Security, checked before the handshake is accepted:
- bound to 127.0.0.1 by default; binding anywhere else needs a token (``InsecureBind``);
- with a token, a client must send ``Authorization: Bearer <token>`` (or ``?token=`` for
  clients that cannot set headers), else HTTP 401;
- a request with an ``Origin`` header (every browser sends one; non-browser clients do not)
  must come from an allowed origin, else HTTP 403: a web page must not be able to drive the
  server (cross-site WebSocket hijacking, DNS rebinding).

Frames (``_wsserver``: wsproto for the handshake and rare frames, a fast path for plain text
frames): binary frames close the connection with 1003; a message over ``max_message_size``
closes it with 1009; a protocol violation gets a close frame with its code (1002, 1007).

Shutdown: when ``shutdown`` is set, or after ``idle_timeout`` seconds without a connection,
the server stops accepting, lets each session answer its calls in flight for up to
``grace_period`` seconds, closes the connections with 1001 and returns. Writes the engine
accepted commit either way.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import urllib.parse
from collections.abc import Sequence

import attrs
import trio

from ..engine import Engine, HubService
from ..remotes.wire import SUBPROTOCOL as HUB_SUBPROTOCOL
from ._driver import SessionOptions, serve_session
from ._streams import ReadWhenReadyListener
from ._wsserver import ConnectionClosed, WebSocket, WebSocketRequest, serve
from .hub import serve_hub

logger = logging.getLogger("triomem.transports.websocket")

SUBPROTOCOL = "mcp"
CLOSE_GOING_AWAY = 1001
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INTERNAL_ERROR = 1011
REFUSED_LINGER = 1.0  # seconds a refused client gets to read the answer and hang up


class InsecureBind(ValueError):
    """Refused to listen beyond loopback without a token."""


@attrs.frozen
class WebSocketOptions:
    """How the WebSocket server listens and what it lets in.

    ``allowed_origins``: exact origins (``scheme://host[:port]``) allowed when a request has
    an ``Origin`` header; ``None`` allows loopback origins only (``http://localhost:3000``,
    ``http://127.0.0.1``...); ``("*",)`` allows any. ``max_message_size`` is in bytes of a
    message's payload (UTF-8 for text). ``idle_timeout``: stop by itself after this many
    seconds without an open connection (None: never); only accepted connections count, so a
    client that fails the token check keeps no server alive.
    """

    path: str = "/mcp"
    token: str | None = None
    allowed_origins: tuple[str, ...] | None = None
    max_message_size: int = attrs.field(default=4 * 1024 * 1024, validator=attrs.validators.gt(0))
    max_connections: int = attrs.field(default=512, validator=attrs.validators.gt(0))
    handshake_timeout: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    grace_period: float = attrs.field(default=10.0, validator=attrs.validators.ge(0))
    idle_timeout: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.gt(0)))
    session: SessionOptions = attrs.field(factory=SessionOptions)
    # Serve the replication contract on ``hub_path`` too (``triomem serve --hub``): other
    # devices sync with this engine (``HubRemote``).
    hub: bool = False
    hub_path: str = "/hub"


@attrs.frozen
class ServerAddress:
    """Where a server listens (the port the OS chose when asked for port 0)."""

    host: str
    port: int
    path: str = "/mcp"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}{self.path}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost, or "" (all interfaces)


def check_bind(host: str, token: str | None) -> None:
    """Raise ``InsecureBind`` if ``host`` is beyond loopback and there is no token."""
    if not is_loopback(host) and not token:
        raise InsecureBind(
            f"refusing to serve on {host or 'all interfaces'} without a token: anyone who can "
            "reach the port could read and erase memories. Set --token (or TRIOMEM_TOKEN), or "
            "bind 127.0.0.1")


def origin_allowed(origin: str, allowed: Sequence[str] | None) -> bool:
    if allowed is None:
        hostname = urllib.parse.urlsplit(origin).hostname
        return hostname is not None and is_loopback(hostname)
    if "*" in allowed:
        return True
    normalized = origin.strip().rstrip("/").lower()
    return any(normalized == candidate.strip().rstrip("/").lower() for candidate in allowed)


def _header(request: WebSocketRequest, name: bytes) -> str | None:
    for key, value in request.headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _token_ok(request: WebSocketRequest, query: str, token: str) -> bool:
    expected = token.encode()
    authorization = _header(request, b"authorization")
    if authorization is not None:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(),
                                                              expected):
            return True
    for offered in urllib.parse.parse_qs(query).get("token", []):
        if hmac.compare_digest(offered.encode(), expected):
            return True
    return False


async def _refuse(request: WebSocketRequest, status: int, body: bytes,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer the handshake with ``status``; the connection ends after a moment for the
    client to read the answer and hang up (``REFUSED_LINGER``)."""
    await request.reject(status, extra_headers=headers or [], body=body, linger=REFUSED_LINGER)


@attrs.define(eq=False)
class _WebSocketTransport:
    """A ``MessageTransport`` over one accepted WebSocket."""

    ws: WebSocket

    async def receive(self) -> str | bytes:
        try:
            message = await self.ws.get_message()
        except ConnectionClosed:
            raise trio.EndOfChannel from None
        if isinstance(message, bytes):
            await self.ws.aclose(CLOSE_UNSUPPORTED_DATA, "MCP messages are UTF-8 text frames")
            raise trio.EndOfChannel
        return message

    async def send(self, text: str) -> None:
        try:
            await self.ws.send_message(text)
        except ConnectionClosed:
            raise trio.BrokenResourceError from None


@attrs.define(eq=False)
class _Server:
    engine: Engine
    options: WebSocketOptions
    hub_service: HubService | None = None
    draining: trio.Event = attrs.field(factory=trio.Event)
    connections: int = 0
    _idle: trio.Event = attrs.field(factory=trio.Event)
    _busy: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self._idle.set()

    async def handle(self, request: WebSocketRequest) -> None:
        """One connection: check the handshake, then serve MCP until either side leaves.

        Failures stay with their connection: a peer that vanishes mid-handshake is ignored,
        and an unexpected error is logged and closes only this connection (1011), so one bad
        connection never takes the other clients down.
        """
        try:
            await self._handle(request)
        except ConnectionClosed:
            pass  # the peer left during the handshake or the closing handshake
        except Exception:
            # trio-websocket closes the connection when this handler returns.
            logger.exception("WebSocket connection failed")

    async def _handle(self, request: WebSocketRequest) -> None:
        target = urllib.parse.urlsplit(request.path)
        options = self.options
        hub = options.hub and target.path == options.hub_path
        if target.path != options.path and not hub:
            await _refuse(request, 404, f"MCP is served at {options.path}\n".encode())
            return
        origin = _header(request, b"origin")
        if origin is not None and not origin_allowed(origin, options.allowed_origins):
            logger.warning("refused a WebSocket from origin %r", origin)
            await _refuse(request, 403, b"origin not allowed\n")
            return
        if options.token and not _token_ok(request, target.query, options.token):
            await _refuse(request, 401, b"missing or wrong bearer token\n",
                          [(b"WWW-Authenticate", b"Bearer")])
            return
        if self.draining.is_set() or self.connections >= options.max_connections:
            await _refuse(request, 503, b"server busy or shutting down\n")
            return
        subprotocol = SUBPROTOCOL if SUBPROTOCOL in request.proposed_subprotocols else None
        self.connections += 1
        if self.connections == 1:
            self._idle = trio.Event()
            self._busy.set()
        try:
            if hub:
                ws = await request.accept(subprotocol=HUB_SUBPROTOCOL)
                await serve_hub(self.hub_service or HubService(self.engine), ws)
                return
            ws = await request.accept(subprotocol=subprotocol)
            try:
                await serve_session(self.engine, _WebSocketTransport(ws),
                                    options=options.session, draining=self.draining)
            except Exception:
                await ws.aclose(CLOSE_INTERNAL_ERROR, "internal error")
                raise
            if self.draining.is_set():
                await ws.aclose(CLOSE_GOING_AWAY, "server shutting down")
        finally:
            self.connections -= 1
            if self.connections == 0:
                self._busy = trio.Event()
                self._idle.set()

    async def wait_idle(self) -> None:
        while self.connections:
            await self._idle.wait()

    async def wait_busy(self) -> None:
        while not self.connections:
            await self._busy.wait()

    async def stop_when_idle(self, idle_timeout: float, waiting: trio.CancelScope) -> None:
        """Cancel ``waiting`` (the server's wait for its shutdown signal) once no connection
        has been open for ``idle_timeout`` seconds."""
        while True:
            await self.wait_idle()
            with trio.move_on_after(idle_timeout):
                await self.wait_busy()
                continue
            logger.info("no connection for %g s: stopping", idle_timeout)
            waiting.cancel()
            return


async def serve_websocket(
    engine: Engine,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    options: WebSocketOptions | None = None,
    shutdown: trio.Event | None = None,
    hub: HubService | None = None,
    task_status: trio.TaskStatus[ServerAddress] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve MCP over WebSocket on ``host:port`` until ``shutdown`` is set or the server has
    been idle for ``options.idle_timeout`` (then drain and return), or until cancelled (then
    stop at once).

    Use ``await nursery.start(serve_websocket, engine, "127.0.0.1", 0)`` to learn the
    ``ServerAddress``. Raises ``InsecureBind`` before listening if the bind needs a token, and
    ``OSError`` if the address is unavailable. With ``options.hub``, ``hub`` (default: a
    ``HubService`` of ``engine``) answers on ``options.hub_path``.
    """
    options = options or WebSocketOptions()
    check_bind(host, options.token)
    listeners = [ReadWhenReadyListener(listener)
                 for listener in await trio.open_tcp_listeners(port, host=host)]
    bound_host, bound_port = listeners[0].socket.getsockname()[:2]
    address = ServerAddress(bound_host, bound_port, options.path)
    server = _Server(engine, options, hub)
    async with trio.open_nursery() as connections:
        accepting = trio.CancelScope()

        async def accept(task_status: trio.TaskStatus[object]) -> None:
            # trio.serve_listeners closes the listeners when this scope is cancelled.
            with accepting:
                await serve(server.handle, listeners, handler_nursery=connections,
                            max_message_size=options.max_message_size,
                            handshake_timeout=options.handshake_timeout,
                            task_status=task_status)

        await connections.start(accept)
        logger.info("serving MCP on %s", address.url)
        task_status.started(address)
        # Wait on ``shutdown`` itself, not through a helper task: the tick a relay would cost
        # is time for a client to connect into a listener about to close (and trio-websocket
        # clients whose connection is reset before the handshake wait for their timeout).
        with trio.CancelScope() as waiting:
            if options.idle_timeout is not None:
                connections.start_soon(server.stop_when_idle, options.idle_timeout, waiting)
            if shutdown is None:
                await trio.sleep_forever()
            else:
                await shutdown.wait()
        logger.info("shutting down: no new connections, finishing calls in flight")
        accepting.cancel()
        server.draining.set()
        with trio.move_on_after(options.grace_period):
            await server.wait_idle()
        connections.cancel_scope.cancel()
