"""``triomem serve``: one engine, MCP over WebSocket, until SIGINT or SIGTERM.

The first signal starts a graceful shutdown: stop accepting, let calls in flight answer
within the grace period, close the connections, then close the engine (queued writes commit,
the database closes cleanly). A second signal skips the wait for calls in flight; writes the
engine accepted still commit before the database closes.

One server per database file: the server holds the database's lock file
(``lockfile.OwnerLock``) from before the engine opens until after it closes, and publishes its
address there while it listens, so ``triomem stdio`` bridges find it instead of opening the
file themselves. ``--daemon`` is how those bridges start one: a token of its own when none is
given (any local user can reach a loopback port; only the owner can read the lock file) and an
idle exit, 15 minutes by default.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator

import trio

from ..engine import EngineConfig, TriomemError, open_engine
from .lockfile import DaemonInfo, DaemonPaths, DatabaseServed, OwnerLock
from .websocket import InsecureBind, ServerAddress, WebSocketOptions, check_bind, serve_websocket

logger = logging.getLogger("triomem.serve")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SERVED = 3

DAEMON_IDLE_EXIT = 15 * 60.0


def serve_main(args: argparse.Namespace, default_db: str) -> int:
    """Run the server for ``triomem serve``; return the exit code.

    ``args`` has ``db`` (None: ``default_db``), ``embedder``, ``host``, ``port``, ``token``,
    ``json``, ``daemon`` and ``idle_exit`` (seconds, 0 for never; None: 15 minutes with
    ``daemon``, else never). Prints one line on stderr once listening: the URL (a JSON object
    with ``--json``). Exit codes: 0 after a signal or the idle exit, 1 when the engine or the
    socket fails, 2 for a refused configuration (a non-loopback bind without a token), 3 when
    another server holds the database.
    """
    try:
        check_bind(args.host, args.token)
    except InsecureBind as exc:
        print(f"triomem: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = args.db or default_db
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    token = args.token or (secrets.token_urlsafe(32) if args.daemon else None)
    idle_exit = args.idle_exit if args.idle_exit is not None else (
        DAEMON_IDLE_EXIT if args.daemon else 0)
    options = WebSocketOptions(token=token, idle_timeout=idle_exit or None)
    try:
        trio.run(_serve, path, args, options)
    except BaseException as exc:  # unwrap a single failure from trio's exception groups
        error = single_failure(exc)
        if isinstance(error, DatabaseServed):
            print(f"triomem: {error}", file=sys.stderr)
            return EXIT_SERVED
        if isinstance(error, TriomemError):
            print(f"triomem: {error.kind}: {error}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(error, OSError) and error.filename:  # the lock file beside the database
            print(f"triomem: {error.filename}: {error.strerror or error}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(error, OSError):
            print(f"triomem: cannot serve on {args.host}:{args.port}: {error.strerror or error}",
                  file=sys.stderr)
            return EXIT_ERROR
        raise
    return EXIT_OK


def single_failure(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (or ``exc`` itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _announce(address: ServerAddress, path: str, as_json: bool) -> None:
    if as_json:
        line = json.dumps({"event": "listening", "url": address.url, "db": path})
    else:
        line = f"triomem: serving MCP on {address.url} (database {path})"
    print(line, file=sys.stderr, flush=True)


async def _serve(path: str, args: argparse.Namespace, options: WebSocketOptions) -> None:
    paths = DaemonPaths.for_database(path)
    # Open the receiver first: a signal that arrives while the engine loads still counts.
    with (trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
          await OwnerLock.acquire(paths) as owner):
        async with open_engine(path, EngineConfig(embedder=args.embedder)) as engine:
            shutdown = trio.Event()
            async with trio.open_nursery() as nursery:

                async def run_server(task_status: trio.TaskStatus[ServerAddress]) -> None:
                    try:
                        await serve_websocket(engine, args.host, args.port, options=options,
                                              shutdown=shutdown, task_status=task_status)
                    finally:
                        owner.clear()  # not accepting any more: nobody should try to connect
                    nursery.cancel_scope.cancel()  # drained: stop watching signals

                address = await nursery.start(run_server)
                owner.publish(DaemonInfo(
                    pid=os.getpid(), host=address.host, port=address.port, path=address.path,
                    token=options.token, database=paths.database, embedder=args.embedder))
                _announce(address, path, args.json)
                nursery.start_soon(functools.partial(_watch_signals, signals, shutdown,
                                                     nursery.cancel_scope))
        logger.info("database closed")


async def _watch_signals(signals: AsyncIterator[int], shutdown: trio.Event,
                         server: trio.CancelScope) -> None:
    async for signum in signals:
        if not shutdown.is_set():
            logger.info("%s: shutting down gracefully", signal.Signals(signum).name)
            shutdown.set()
        else:
            logger.info("%s again: closing connections now", signal.Signals(signum).name)
            server.cancel()
