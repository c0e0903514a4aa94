"""``triomem serve``: one engine, MCP over WebSocket, until SIGINT or SIGTERM.

The first signal starts a graceful shutdown: stop accepting, let calls in flight answer
within the grace period, close the connections, then close the engine (queued writes commit,
the database closes cleanly). A second signal skips the wait for calls in flight; writes the
engine accepted still commit before the database closes.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator

import trio

from ..engine import EngineConfig, TriomemError, open_engine
from .websocket import InsecureBind, ServerAddress, WebSocketOptions, check_bind, serve_websocket

logger = logging.getLogger("triomem.serve")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


def serve_main(args: argparse.Namespace, default_db: str) -> int:
    """Run the server for ``triomem serve``; return the exit code.

    ``args`` has ``db`` (None: ``default_db``), ``embedder``, ``host``, ``port``, ``token``
    and ``json``. Prints one line on stderr once listening: the URL (a JSON object with
    ``--json``). Exit codes: 0 after a signal, 1 when the engine or the socket fails, 2 for a
    refused configuration (a non-loopback bind without a token).
    """
    try:
        check_bind(args.host, args.token)
    except InsecureBind as exc:
        print(f"triomem: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = args.db or default_db
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        trio.run(_serve, path, args)
    except BaseException as exc:  # unwrap a single failure from trio's exception groups
        error = _single(exc)
        if isinstance(error, TriomemError):
            print(f"triomem: {error.kind}: {error}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(error, OSError):
            print(f"triomem: cannot serve on {args.host}:{args.port}: {error.strerror or error}",
                  file=sys.stderr)
            return EXIT_ERROR
        raise
    return EXIT_OK


def _single(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _announce(address: ServerAddress, path: str, as_json: bool) -> None:
    if as_json:
        line = json.dumps({"event": "listening", "url": address.url, "db": path})
    else:
        line = f"triomem: serving MCP on {address.url} (database {path})"
    print(line, file=sys.stderr, flush=True)


async def _serve(path: str, args: argparse.Namespace) -> None:
    options = WebSocketOptions(token=args.token)
    # Open the receiver first: a signal that arrives while the engine loads still counts.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_engine(path, EngineConfig(embedder=args.embedder)) as engine:
            shutdown = trio.Event()
            async with trio.open_nursery() as nursery:

                async def run_server(task_status: trio.TaskStatus[ServerAddress]) -> None:
                    await serve_websocket(engine, args.host, args.port, options=options,
                                          shutdown=shutdown, task_status=task_status)
                    nursery.cancel_scope.cancel()  # drained: stop watching signals

                address = await nursery.start(run_server)
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
