"""Find the server that owns a database, starting one when none runs.

``locate_or_start`` is what every ``triomem stdio`` bridge does before it connects:

1. look at the database's lock (``lockfile.probe``): a listening server is used as it is; one
   that is starting or stopping is waited for;
2. when the lock is free, take ``<db>.triomem.spawn`` (a second flock that serializes the
   clients starting a server), look again, since another client may have started one while
   this one waited, and only if the lock is still free start ``triomem serve --daemon``;
3. hold the spawn lock until the new server listens (or dies), so every other client finds
   it rather than starting its own: exactly one server results however many clients start
   at once. A server killed with SIGKILL leaves its lock free, so the next client starts a
   new one on the same database.

The server is detached from the client that starts it: its own session (no signal from the
client's terminal reaches it), stdin and stdout on /dev/null, stderr appended to
``<db>.triomem.log``. It outlives the client and stops by itself when idle.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import attrs
import trio

from .lockfile import DaemonInfo, DaemonPaths, probe, take_flock
from .serve import EXIT_SERVED

logger = logging.getLogger("triomem.transports.daemon")

POLL_INTERVAL = 0.05
LOG_ROTATE_BYTES = 1024 * 1024


class DaemonStartFailed(Exception):
    """The server could not be found or started; the message says why and where its log is."""


@attrs.frozen
class DaemonSpec:
    """How to start a server for a database when none runs.

    ``idle_exit`` is in seconds (0: never); ``log_level`` is the server's logging level.
    """

    paths: DaemonPaths
    embedder: str
    idle_exit: float = 15 * 60.0
    log_level: str = "info"

    def command(self) -> list[str]:
        """The server's command line: this interpreter, so the server runs the same install
        as the client that starts it. Port 0: the OS picks a free port, published in the
        lock file."""
        return [sys.executable, "-m", "triomem", "--log-level", self.log_level, "serve",
                "--daemon", "--db", self.paths.database, "--embedder", self.embedder,
                "--host", "127.0.0.1", "--port", "0", "--idle-exit", f"{self.idle_exit:g}"]


async def locate_or_start(spec: DaemonSpec) -> DaemonInfo:
    """Return the address of the server that owns ``spec.paths.database``, starting one when
    none runs. A checkpoint; loops until a server listens, so run it under a deadline.

    Raises ``DaemonStartFailed`` if a server it started exited without listening, and
    ``OSError`` if the lock files cannot be created.
    """
    paths = spec.paths
    while True:
        state = probe(paths)
        if state.info is not None:
            return state.info
        if not state.held:
            spawn_fd = await take_flock(paths.spawn)
            try:
                # Another client may have started a server while this one waited.
                if not probe(paths).held:
                    info = await _start(spec)
                    if info is not None:
                        return info
            finally:
                os.close(spawn_fd)
        await trio.sleep(POLL_INTERVAL)


async def _start(spec: DaemonSpec) -> DaemonInfo | None:
    """Start a server and wait until it listens; None if another server took the database
    first (then the caller looks again)."""
    paths = spec.paths
    _rotate(paths.log)
    log_fd = os.open(paths.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        logger.info("starting a server for %s (log: %s)", paths.database, paths.log)
        process = await trio.lowlevel.open_process(
            spec.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log_fd,
            start_new_session=True, cwd="/")
    finally:
        os.close(log_fd)  # the child has its own copy
    while True:
        state = probe(paths)
        if state.info is not None:
            return state.info
        code = process.poll()
        if code is not None:
            if code == EXIT_SERVED:
                return None
            raise DaemonStartFailed(
                f"the server for {paths.database} exited with code {code} before listening"
                f"{_log_tail(paths.log)}")
        await trio.sleep(POLL_INTERVAL)


def _rotate(log: str) -> None:
    """Keep one previous log: a database served for months must not grow an endless log.
    Called under the spawn lock, while no server writes the log."""
    try:
        if os.path.getsize(log) > LOG_ROTATE_BYTES:
            os.replace(log, log + ".1")
    except FileNotFoundError:
        pass


def _log_tail(log: str, lines: int = 5) -> str:
    try:
        with open(log, "rb") as file:
            file.seek(max(0, os.fstat(file.fileno()).st_size - 4000))
            tail = file.read().decode("utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return f"; see {log}"
    shown = "".join(f"\n  {line}" for line in tail)
    return f"; last lines of {log}:{shown}"
