"""What every command shares: exit codes, the typed failure, output, a local engine."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import attrs

from ..engine import Engine, open_engine
from ..settings import Settings
from ..transports.lockfile import DaemonPaths, probe

logger = logging.getLogger("triomem.cli")

EXIT_OK = 0
EXIT_ERROR = 1  # a typed engine error, or a failure the message explains
EXIT_USAGE = 2  # argparse's own code for bad flags
EXIT_SERVED = 3  # the database is served by another process (serve, restore)


class CommandFailed(Exception):
    """A command could not do its job for a reason the message explains (no traceback).
    ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def emit(as_json: bool, value: Any, text: str) -> None:
    """Print the command's answer on stdout: ``value`` as JSON, or ``text``."""
    print(json.dumps(value, ensure_ascii=False) if as_json else text, flush=True)


def note(text: str) -> None:
    """A remark for the human on stderr (stdout stays for the answer)."""
    print(text, file=sys.stderr, flush=True)


def database_path(settings: Settings, *, must_exist: bool = False) -> str:
    """The configured database path, its directory created. Raises CommandFailed when
    ``must_exist`` and there is no such file."""
    path: str = settings.get("db")
    if must_exist and not os.path.exists(path):
        raise CommandFailed(f"{path}: no such database (set --db or TRIOMEM_DB)")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def embedder_for(settings: Settings, path: str) -> str:
    """The embedder to open ``path`` with: the configured one, or, when none is configured
    and a server owns the database, the server's (so file commands beside it just work)."""
    name: str = settings.get("embedder")
    if not settings.given("embedder"):
        info = probe(DaemonPaths.for_database(path)).info
        if info is not None and info.embedder != name:
            logger.info("using the server's embedder", extra={"embedder": info.embedder})
            return info.embedder
    return name


@contextlib.asynccontextmanager
async def local_engine(settings: Settings, *, must_exist: bool = False
                       ) -> AsyncIterator[Engine]:
    """An engine on the configured database in this process, without the remote (its writes
    wait in the durable outbox for the server to push). Safe beside a running server: the
    engine is multi-process safe. Raises CommandFailed, or the engine's typed open errors."""
    path = database_path(settings, must_exist=must_exist)
    config = attrs.evolve(settings.engine_config(with_remote=False),
                          embedder=embedder_for(settings, path))
    async with open_engine(path, config) as engine:
        yield engine
