"""``triomem stdio``: a desktop client's stdio MCP server that shares one engine.

Claude Code, Claude Desktop and Cursor start one stdio server per window. If each opened the
database they would fight over the file; instead each ``triomem stdio`` finds the one server
that owns the database (``daemon.locate_or_start``, starting it when none runs), connects to
it over its loopback WebSocket with the token from the lock file, and relays messages both
ways (``bridge.relay``). It never opens the database itself.

stdout carries protocol messages only; every diagnostic goes to stderr. Exit codes: 0 at the
end of input once every answer is written, 1 when no server could be reached or started, the
server went away, or the client stopped reading.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

import trio
from trio_websocket import HandshakeError, WebSocketConnection, open_websocket

from .bridge import ClientGone, DaemonDisconnected, relay
from .daemon import DaemonSpec, DaemonStartFailed, locate_or_start
from .lockfile import DaemonInfo, DaemonPaths
from .serve import single_failure
from .stdio import LineTransport
from .websocket import SUBPROTOCOL

logger = logging.getLogger("triomem.transports.stdio_command")

EXIT_OK = 0
EXIT_ERROR = 1

MAX_LINE = 4 * 1024 * 1024  # the server's own WebSocket limit, so a line that fits is accepted
MAX_ANSWER = 64 * 1024 * 1024  # answers (a long recall) may be larger than what clients send
RETRY_INTERVAL = 0.05
# One attempt's bound. A handshake on loopback takes milliseconds, but a connection that lands
# in the backlog of a listener that is closing (a server stopping as it goes idle) is reset,
# and trio-websocket then waits for its timeout instead of failing: look again soon instead.
ATTEMPT_TIMEOUT = 2.0
CLOSE_TIMEOUT = 5.0


def stdio_main(args: argparse.Namespace, default_db: str) -> int:
    """Run ``triomem stdio``; return the exit code.

    ``args`` has ``db`` (None: ``default_db``), ``embedder``, ``idle_exit`` and
    ``start_timeout`` (seconds to find or start the server and connect).
    """
    path = args.db or default_db
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        spec = DaemonSpec(DaemonPaths.for_database(path), embedder=args.embedder,
                          idle_exit=args.idle_exit)
        trio.run(_bridge, spec, args.start_timeout)
    except BaseException as exc:  # unwrap a single failure from trio's exception groups
        error = single_failure(exc)
        if isinstance(error, DaemonStartFailed | DaemonDisconnected | ClientGone):
            print(f"triomem stdio: {error}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(error, OSError):
            print(f"triomem stdio: {path}: {error.strerror or error}", file=sys.stderr)
            return EXIT_ERROR
        raise
    return EXIT_OK


async def _bridge(spec: DaemonSpec, start_timeout: float) -> None:
    # Duplicates: closing the streams must not close fds 0 and 1 under Python's own files.
    stdin = trio.lowlevel.FdStream(os.dup(0))
    stdout = trio.lowlevel.FdStream(os.dup(1))
    async with stdin, stdout, contextlib.AsyncExitStack() as stack:
        ws = await _connect(stack, spec, start_timeout)
        await relay(ws, LineTransport(stdin, stdout, MAX_LINE))
        logger.info("input ended and every answer was written: closing")


async def _connect(stack: contextlib.AsyncExitStack, spec: DaemonSpec,
                   start_timeout: float) -> WebSocketConnection:
    """Open a WebSocket to the database's server, starting the server if needed; the
    connection closes with ``stack``.

    Retries for ``start_timeout`` seconds: an address read from the lock file may belong to a server that
    is just stopping (idle exit), or be a dead server's, caught in the instant before its
    successor empties the file; looking again settles both. Raises ``DaemonStartFailed``.
    """
    deadline = trio.current_time() + start_timeout
    last_error: BaseException | None = None
    while True:
        info: DaemonInfo | None = None
        with trio.move_on_at(deadline):
            info = await locate_or_start(spec)
        remaining = deadline - trio.current_time()
        if info is None or remaining <= 0:
            cause = f" (last error: {last_error!r})" if last_error else ""
            raise DaemonStartFailed(
                f"no server for {spec.paths.database} answered within {start_timeout:g} s{cause}; "
                f"see {spec.paths.log}")
        headers = [(b"Authorization", f"Bearer {info.token}".encode())] if info.token else []
        try:
            ws: WebSocketConnection = await stack.enter_async_context(open_websocket(
                info.connect_host, info.port, info.path, use_ssl=False,
                subprotocols=[SUBPROTOCOL], extra_headers=headers, max_message_size=MAX_ANSWER,
                connect_timeout=min(remaining, ATTEMPT_TIMEOUT),
                disconnect_timeout=CLOSE_TIMEOUT))
        except HandshakeError as exc:
            logger.info("could not connect to %s (pid %d): %r; looking again", info.url,
                        info.pid, exc)
            last_error = exc
            await trio.sleep(RETRY_INTERVAL)
            continue
        logger.info("connected to %s (pid %d)", info.url, info.pid)
        return ws
