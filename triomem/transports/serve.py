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

Beside the WebSocket, the server optionally runs a Prometheus endpoint (``metrics.py``) and
periodic backups with retention (``triomem.backups``). Every value comes in a ``ServeOptions``
the command line builds from the settings (file, environment, flags).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import attrs
import trio

from ..backups import BackupSchedule, run_periodic_backups
from ..engine import EngineConfig, TriomemError, open_engine
from .lockfile import DaemonInfo, DaemonPaths, DatabaseServed, OwnerLock
from .metrics import MetricsUnavailable, serve_metrics
from .websocket import InsecureBind, ServerAddress, WebSocketOptions, check_bind, serve_websocket

logger = logging.getLogger("triomem.serve")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_SERVED = 3

DAEMON_IDLE_EXIT = 15 * 60.0


@attrs.frozen
class MetricsAddress:
    host: str = "127.0.0.1"
    port: int = 9464


@attrs.frozen
class ServeOptions:
    """Everything ``triomem serve`` needs, resolved from settings and flags.

    ``embedder`` is the name published in the lock file (so other commands know what the
    server runs); ``idle_exit`` is in seconds, 0 for never, None for the default (15 minutes
    with ``daemon``, else never); ``metrics`` and ``backups`` are None when off.
    """

    database: str
    engine: EngineConfig
    embedder: str
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    daemon: bool = False
    idle_exit: float | None = None
    json: bool = False
    hub: bool = False
    metrics: MetricsAddress | None = None
    backups: BackupSchedule | None = None


def hub_supported() -> bool:
    """True when this build's WebSocket server has a hub mode."""
    return "hub" in attrs.fields_dict(WebSocketOptions)


def serve_main(options: ServeOptions) -> int:
    """Run the server for ``triomem serve``; return the exit code.

    Prints one line on stderr once listening: the URL (a JSON object with ``json``), and the
    metrics URL when enabled. Exit codes: 0 after a signal or the idle exit, 1 when the
    engine, the socket or the metrics endpoint fails, 2 for a refused configuration (a
    non-loopback bind without a token, a hub mode this build lacks), 3 when another server
    holds the database.
    """
    try:
        check_bind(options.host, options.token)
    except InsecureBind as exc:
        print(f"triomem: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if options.hub and not hub_supported():
        print("triomem: --hub: this build of the WebSocket server has no hub mode yet",
              file=sys.stderr)
        return EXIT_USAGE
    path = options.database
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    token = options.token or (secrets.token_urlsafe(32) if options.daemon else None)
    idle_exit = options.idle_exit if options.idle_exit is not None else (
        DAEMON_IDLE_EXIT if options.daemon else 0)
    extra: dict[str, Any] = {"hub": True} if options.hub else {}
    ws_options = WebSocketOptions(token=token, idle_timeout=idle_exit or None, **extra)
    try:
        trio.run(_serve, options, ws_options)
    except BaseException as exc:  # unwrap a single failure from trio's exception groups
        error = single_failure(exc)
        if isinstance(error, DatabaseServed):
            print(f"triomem: {error}", file=sys.stderr)
            return EXIT_SERVED
        if isinstance(error, TriomemError):
            print(f"triomem: {error.kind}: {error}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(error, MetricsUnavailable):
            print(f"triomem: {error}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(error, OSError) and error.filename:  # the lock file beside the database
            print(f"triomem: {error.filename}: {error.strerror or error}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(error, OSError):
            print(f"triomem: cannot serve on {options.host}:{options.port}: "
                  f"{error.strerror or error}", file=sys.stderr)
            return EXIT_ERROR
        raise
    return EXIT_OK


def single_failure(exc: BaseException) -> BaseException:
    """The one exception inside nested single-member exception groups (or ``exc`` itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _announce(address: ServerAddress, path: str, as_json: bool, metrics: str | None) -> None:
    if as_json:
        event = {"event": "listening", "url": address.url, "db": path}
        if metrics:
            event["metrics"] = metrics
        line = json.dumps(event)
    else:
        line = f"triomem: serving MCP on {address.url} (database {path})"
        if metrics:
            line += f", metrics on {metrics}"
    print(line, file=sys.stderr, flush=True)


async def _serve(options: ServeOptions, ws_options: WebSocketOptions) -> None:
    path = options.database
    paths = DaemonPaths.for_database(path)
    # Open the receiver first: a signal that arrives while the engine loads still counts.
    with (trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
          await OwnerLock.acquire(paths) as owner):
        async with open_engine(path, options.engine) as engine:
            shutdown = trio.Event()
            async with trio.open_nursery() as nursery:

                async def run_server(task_status: trio.TaskStatus[ServerAddress]) -> None:
                    try:
                        await serve_websocket(engine, options.host, options.port,
                                              options=ws_options, shutdown=shutdown,
                                              task_status=task_status)
                    finally:
                        owner.clear()  # not accepting any more: nobody should try to connect
                    nursery.cancel_scope.cancel()  # drained: stop the helpers below

                metrics_url = None
                if options.metrics is not None:
                    port = await nursery.start(serve_metrics, engine, options.metrics.host,
                                               options.metrics.port)
                    host = options.metrics.host
                    metrics_url = f"http://{f'[{host}]' if ':' in host else host}:{port}/metrics"
                address = await nursery.start(run_server)
                owner.publish(DaemonInfo(
                    pid=os.getpid(), host=address.host, port=address.port, path=address.path,
                    token=ws_options.token, database=paths.database, embedder=options.embedder))
                _announce(address, path, options.json, metrics_url)
                if options.backups is not None:
                    nursery.start_soon(run_periodic_backups, engine, options.backups)
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
