"""MCP over a byte stream pair, newline-delimited: the stdio transport (both eras).

One JSON-RPC message per line, UTF-8, no embedded newlines (``dumps`` never writes one).
stdout carries protocol messages only; logs go to stderr. End of input means the client is
done sending, not gone: calls in flight finish and are answered before ``serve_stdio``
returns (clients close stdin and then read; SIGTERM is their fallback).

A line over ``max_message_size`` bytes is skipped up to its newline and answered with
-32600 ``message_too_large``; the stream stays in sync and the session goes on.
"""

from __future__ import annotations

import attrs
import trio

from ..engine import Engine
from ._driver import MessageTooLarge, SessionOptions, serve_session


def _stdio_session() -> SessionOptions:
    return SessionOptions(cancel_on_eof=False)


@attrs.frozen
class StdioOptions:
    max_message_size: int = attrs.field(default=4 * 1024 * 1024, validator=attrs.validators.gt(0))
    session: SessionOptions = attrs.field(factory=_stdio_session)


@attrs.define(eq=False)
class LineTransport:
    """A ``MessageTransport`` over byte streams: newline-delimited messages."""

    incoming: trio.abc.ReceiveStream
    outgoing: trio.abc.SendStream
    max_message_size: int = 4 * 1024 * 1024
    _buffer: bytearray = attrs.field(factory=bytearray)
    _skipping: bool = False  # discarding the rest of an oversized line
    _eof: bool = False

    async def receive(self) -> str | bytes:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[:newline])
                del self._buffer[:newline + 1]
                if self._skipping or len(line) > self.max_message_size:
                    self._skipping = False
                    raise MessageTooLarge(self.max_message_size)
                if line.strip():
                    return line  # bytes: the core decodes (and rejects bad UTF-8)
                continue
            if self._skipping:
                self._buffer.clear()
            elif len(self._buffer) > self.max_message_size:
                self._buffer.clear()
                self._skipping = True
            if self._eof:
                last = bytes(self._buffer)
                self._buffer.clear()
                if self._skipping:
                    self._skipping = False
                    raise MessageTooLarge(self.max_message_size)
                if last.strip():
                    return last  # a final message without its newline
                raise trio.EndOfChannel
            chunk = await self.incoming.receive_some(65536)
            if not chunk:
                self._eof = True
            self._buffer += chunk

    async def send(self, text: str) -> None:
        await self.outgoing.send_all(text.encode("utf-8") + b"\n")


async def serve_stdio(
    engine: Engine,
    stdin: trio.abc.ReceiveStream,
    stdout: trio.abc.SendStream,
    *,
    options: StdioOptions | None = None,
    draining: trio.Event | None = None,
) -> None:
    """Serve MCP over ``stdin``/``stdout`` (for the process's own: ``trio.lowlevel.FdStream``
    on fds 0 and 1) until end of input and the last answer is written, or until ``draining``
    is set and the calls in flight are answered. Cancelling it cancels the calls in flight;
    their writes still commit."""
    options = options or StdioOptions()
    transport = LineTransport(stdin, stdout, options.max_message_size)
    await serve_session(engine, transport, options=options.session, draining=draining)
