"""``serve_session``: the one async driver of the MCP core, shared by every transport.

Concurrency invariants of a session (one per connection):

- one reader task feeds incoming messages to the ``McpConnection`` in arrival order, so the
  protocol state (era, handshake, in-flight ids) has a single writer;
- every ``tools/call`` runs in its own task under its own ``CancelScope``, keyed by the core's
  call key; ``notifications/cancelled`` cancels that scope and the core guarantees the request
  is never answered. At most ``max_concurrent`` calls run at once (a ``CapacityLimiter``); the
  core refuses calls beyond ``ServerOptions.max_in_flight`` with ``overloaded``;
- one message is sent at a time (``_sending``), and in the order it was produced: a reply goes
  straight to the transport from the task that made it when nothing is queued ahead of it and
  no send is in progress (the common case: no channel round trip and task switch to the
  writer per reply), else through a bounded channel to the writer task. A call's
  progress notifications are queued ahead of its answer, so they stay ahead. A client that
  stops reading blocks its own sends and then fills its queue, which slows its own session
  down (backpressure) and nobody else's;
- when the peer goes away every call the session started is cancelled. Writes the engine had
  accepted still commit (the engine's call protocol), only their answers are dropped.

Shutdown: setting ``draining`` makes the session refuse new calls (``shutting_down``), wait
for the calls in flight, send their answers and return. The transport shell then closes the
connection. A caller that needs a hard deadline wraps the whole thing in a cancel scope.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from ..engine import Engine
from .mcp import (
    CancelCall,
    EngineCall,
    McpConnection,
    Reply,
    ServerOptions,
    StartCall,
    dumps,
    rpc_error,
)
from .mcp._jsonrpc import error_message

logger = logging.getLogger("triomem.transports")


class MessageTooLarge(Exception):
    """Raised by ``MessageTransport.receive`` for a message over its size limit that it
    skipped (the stream is still in sync): answered with -32600, and the session goes on."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"message larger than {limit} bytes")
        self.limit = limit


class MessageTransport(Protocol):
    """One MCP message per call, in both directions. What a shell adapts its medium to."""

    async def receive(self) -> str | bytes:
        """The next incoming message. Raises ``trio.EndOfChannel`` when the peer is done, or
        ``MessageTooLarge`` for a message it skipped."""
        ...

    async def send(self, text: str) -> None:
        """Send one message. Raises ``trio.BrokenResourceError`` (or ``ClosedResourceError``)
        when the peer is gone."""
        ...


@attrs.frozen
class SessionOptions:
    """Per-connection limits.

    ``cancel_on_eof``: what the end of the peer's input means. On a socket it means the peer
    left, so calls in flight are cancelled; on stdio a client may close stdin right after its
    last request and still read the answers, so the session finishes its calls first.
    """

    server: ServerOptions = attrs.field(factory=ServerOptions)
    max_concurrent: int = attrs.field(default=16, validator=attrs.validators.gt(0))
    outgoing_queue: int = attrs.field(default=64, validator=attrs.validators.ge(0))
    cancel_on_eof: bool = True


async def perform(engine: Engine, call: EngineCall,
                  progress: Callable[[float, float | None, str], None] | None = None) -> Any:
    """Run one engine call; ``progress`` goes to methods that report it (recall). A
    checkpoint; raises what the engine raises."""
    method = getattr(engine, call.method)
    kwargs = dict(call.kwargs)
    if progress is not None:
        kwargs["progress"] = progress
    return await method(*call.args, **kwargs)


async def serve_session(
    engine: Engine,
    transport: MessageTransport,
    *,
    options: SessionOptions | None = None,
    draining: trio.Event | None = None,
) -> None:
    """Serve MCP on one connection until the peer leaves, or ``draining`` is set and the calls
    in flight have been answered. Never raises for anything the peer sends.

    Cancelling it cancels every call it started (their writes still commit) and sends nothing
    more.
    """
    session = _Session(engine, transport, options or SessionOptions())
    await session.run(draining)


@attrs.define(eq=False)
class _Session:
    engine: Engine
    transport: MessageTransport
    options: SessionOptions
    core: McpConnection = attrs.field(init=False)
    _out_send: trio.MemorySendChannel[str] = attrs.field(init=False)
    _out_receive: trio.MemoryReceiveChannel[str] = attrs.field(init=False)
    _limiter: trio.CapacityLimiter = attrs.field(init=False)
    _scopes: dict[int, trio.CancelScope] = attrs.field(factory=dict)
    _idle: trio.Event = attrs.field(factory=trio.Event)
    _peer_done: bool = False
    _sending: trio.StrictFIFOLock = attrs.field(factory=trio.StrictFIFOLock)
    _queued: int = 0  # messages in the writer's channel or being sent by it
    _session_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)

    def __attrs_post_init__(self) -> None:
        self.core = McpConnection(self.options.server)
        self._out_send, self._out_receive = trio.open_memory_channel[str](
            self.options.outgoing_queue)
        self._limiter = trio.CapacityLimiter(self.options.max_concurrent)
        self._idle.set()

    async def run(self, draining: trio.Event | None) -> None:
        async with trio.open_nursery() as nursery:
            self._session_scope = nursery.cancel_scope
            nursery.start_soon(self._write_loop)
            async with trio.open_nursery() as reading:
                reading.start_soon(self._read_loop, nursery, reading.cancel_scope, draining)
                if draining is not None:
                    reading.start_soon(self._drain_when, draining, reading.cancel_scope)
            # Input is over: the peer is done, or we drained.
            if self._peer_done and self.options.cancel_on_eof:
                for scope in self._scopes.values():
                    scope.cancel()
            await self._wait_idle()
            # Every answer is queued now; the writer sends them and ends.
            self._out_send.close()

    async def _read_loop(self, calls: trio.Nursery, reading: trio.CancelScope,
                         draining: trio.Event | None) -> None:
        try:
            while True:
                try:
                    data = await self.transport.receive()
                except MessageTooLarge as exc:
                    await self._send(dumps(error_message(None, rpc_error(
                        "message_too_large", str(exc), {"limit": exc.limit}))))
                    continue
                if draining is not None and draining.is_set():
                    # Checked per message, not left to the watcher task, so no call slips
                    # in between the signal and the watcher being scheduled.
                    self.core.start_draining()
                event = self.core.receive(data)
                if isinstance(event, Reply):
                    await self._send(event.text)
                elif isinstance(event, StartCall):
                    # The scope exists before the task starts, so a cancel that arrives
                    # right behind the request still finds it.
                    scope = trio.CancelScope()
                    if not self._scopes:
                        self._idle = trio.Event()
                    self._scopes[event.key] = scope
                    calls.start_soon(self._run_call, event, scope)
                elif isinstance(event, CancelCall):
                    cancelled = self._scopes.get(event.key)
                    if cancelled is not None:
                        cancelled.cancel()
        except (trio.EndOfChannel, trio.BrokenResourceError, trio.ClosedResourceError):
            self._peer_done = True
        reading.cancel()  # stop the drain watcher

    async def _drain_when(self, draining: trio.Event, reading: trio.CancelScope) -> None:
        await draining.wait()
        self.core.start_draining()
        await self._wait_idle()
        reading.cancel()

    async def _run_call(self, event: StartCall, scope: trio.CancelScope) -> None:
        key = event.key
        text: str | None = None
        try:
            with scope:
                async with self._limiter:
                    progress = None
                    if event.wants_progress and event.tool.reports_progress:
                        # An immediate "started" (0), then the engine's own steps (>= 1).
                        await self._send(self.core.progress(key, 0, None,
                                                            f"{event.tool.name}: started"))
                        progress = functools.partial(self._report_progress, key)
                    try:
                        value = await perform(self.engine, event.call, progress)
                    except Exception as exc:
                        text = self.core.call_failed(key, exc)
                    else:
                        text = self.core.call_succeeded(key, value)
            if text is None:
                self.core.call_cancelled(key)
            else:
                # Outside the call's scope: once the core has handed out the answer the
                # request is finished, and a late cancel must not swallow it.
                await self._send(text)
        finally:
            del self._scopes[key]
            if not self._scopes:
                self._idle.set()

    def _report_progress(self, key: int, value: float, total: float | None,
                         message: str) -> None:
        """The engine's progress callback (synchronous, on the trio thread). Progress is
        advisory: when the client is not reading and the queue is full, it is dropped rather
        than stalling the engine's recall."""
        text = self.core.progress(key, value, total, message)
        if text is not None:
            try:
                self._out_send.send_nowait(text)
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                return
            self._queued += 1

    async def _send(self, text: str | None) -> None:
        """Send one message after every message produced before it."""
        if text is None:
            return
        if self._queued or self._sending.locked():
            self._queued += 1
            queued = False
            try:
                await self._out_send.send(text)
                queued = True
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the writer is gone, and so is the peer: there is nobody to answer
            finally:
                if not queued:  # also when cancelled: counted only what the writer will see
                    self._queued -= 1
            return
        self._sending.acquire_nowait()  # free, checked above: no scheduling round
        try:
            await self.transport.send(text)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._peer_gone()
        finally:
            self._sending.release()

    async def _write_loop(self) -> None:
        async for text in self._out_receive:
            try:
                async with self._sending:
                    await self.transport.send(text)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._peer_gone()
                return
            finally:
                self._queued -= 1

    def _peer_gone(self) -> None:
        """The peer is gone: nobody will read what the calls would answer."""
        self._peer_done = True
        self._session_scope.cancel()

    async def _wait_idle(self) -> None:
        while self._scopes:
            await self._idle.wait()
