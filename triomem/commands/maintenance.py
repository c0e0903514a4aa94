"""backup, restore, reembed, doctor and config show.

backup, reembed and doctor work on the database file from this process, also beside a
running server (the engine is multi-process safe; doctor only reads). restore replaces the
file, so it refuses while a server owns the database.
"""

from __future__ import annotations

import argparse
import os
import shutil

import apsw
import attrs
import trio

from ..actors._schema import APPLICATION_ID, SQLITE_MAGIC
from ..doctor import check_remote, render, run_checks
from ..engine import reembed_database
from ..progress import Progress
from ..settings import Settings
from ..transports.lockfile import DaemonPaths, probe
from ._common import (
    EXIT_SERVED,
    CommandFailed,
    database_path,
    emit,
    local_engine,
    note,
)

POLL = 0.1


def _backup_target(to: str, force: bool) -> str:
    """``to`` made absolute. Raises CommandFailed when it exists (and not ``force``) or its
    directory does not."""
    target = os.path.abspath(to)
    if os.path.exists(target) and not force:
        raise CommandFailed(f"{target} exists; pass --force to overwrite it")
    if not os.path.isdir(os.path.dirname(target)):
        raise CommandFailed(f"{os.path.dirname(target)}: no such directory")
    return target


async def backup(settings: Settings, args: argparse.Namespace) -> None:
    """``triomem backup --to FILE``: an online copy (writers keep going). Refuses an
    existing target unless ``--force``. Raises CommandFailed or the engine's typed errors."""
    target = _backup_target(args.to, args.force)
    async with local_engine(settings, must_exist=True) as engine:
        total = (await engine.statistics()).database.db_bytes
        with Progress("backing up", unit="B", total=total) as bar:
            async with trio.open_nursery() as nursery:
                if bar.enabled:
                    nursery.start_soon(_watch_size, target + ".partial", bar)
                result = await engine.backup(target, overwrite=args.force)
                nursery.cancel_scope.cancel()
            bar.set(result.bytes, max(total, result.bytes))
    emit(args.json, attrs.asdict(result),
         f"backed up to {result.destination} ({result.bytes} bytes, {result.pages} pages in "
         f"{result.steps} steps" + (f", restarted {result.restarts} times by another process's "
                                    "writes)" if result.restarts else ")"))


async def _watch_size(path: str, bar: Progress) -> None:
    """Show how far a backup got: the size of its partial file, polled."""
    while True:
        size = _size_of(path)
        if size is not None:
            bar.set(size)
        await trio.sleep(POLL)


def _size_of(path: str) -> int | None:
    try:
        return os.path.getsize(path)
    except OSError:
        return None


def _check_backup(path: str) -> None:
    """Raise CommandFailed unless ``path`` is an intact triomem database."""
    if not os.path.isfile(path):
        raise CommandFailed(f"{path}: no such file")
    with open(path, "rb") as file:
        if file.read(len(SQLITE_MAGIC)) != SQLITE_MAGIC:
            raise CommandFailed(f"{path} is not a SQLite database")
    conn = apsw.Connection(f"file:{os.path.abspath(path)}?mode=ro",
                           flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    try:
        app = conn.execute("PRAGMA application_id").fetchall()[0][0]
        if app != APPLICATION_ID:
            raise CommandFailed(f"{path} is not a triomem database")
        check = conn.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            raise CommandFailed(f"{path} failed its integrity check: {check[0][0]}")
    except apsw.Error as exc:
        raise CommandFailed(f"{path}: {exc}") from None
    finally:
        conn.close()


def restore(settings: Settings, args: argparse.Namespace) -> int:
    """``triomem restore --from BACKUP``: check the backup, then put it in place of the
    database (copied beside it and renamed, stale ``-wal``/``-shm`` files removed). Refuses
    while a server owns the database (exit 3), and, unless ``--force``, when the database
    exists. Raises CommandFailed."""
    source = os.path.abspath(args.source)
    path = database_path(settings)
    state = probe(DaemonPaths.for_database(path))
    if state.held:
        owner = f"pid {state.info.pid}" if state.info else "a starting server"
        raise CommandFailed(f"{path} is served by {owner}; stop the server first", EXIT_SERVED)
    if os.path.exists(path) and not args.force:
        raise CommandFailed(f"{path} exists; pass --force to replace it with the backup")
    _check_backup(source)
    partial = path + ".restoring"
    try:
        shutil.copyfile(source, partial)
        with open(partial, "rb") as file:
            os.fsync(file.fileno())
        for stale in (path + "-wal", path + "-shm"):  # they belong to the file being replaced
            if os.path.exists(stale):
                os.remove(stale)
        os.replace(partial, path)
    except OSError as exc:
        if os.path.exists(partial):
            os.remove(partial)
        raise CommandFailed(f"{exc.filename or path}: {exc.strerror or exc}") from None
    emit(args.json, {"restored": path, "from": source}, f"restored {path} from {source}")
    return 0


async def reembed(settings: Settings, args: argparse.Namespace) -> None:
    """``triomem reembed --embedder NAME``: re-embed every memory and switch the file."""
    path = database_path(settings, must_exist=True)
    name: str = settings.get("embedder")  # the model to convert to
    with Progress(f"re-embedding with {name}") as bar:
        count = await reembed_database(path, name, bar.set,
                                       settings.engine_config(with_remote=False))
    emit(args.json, {"reembedded": count, "embedder": name},
         f"re-embedded {count} memories with {name}")


async def doctor(settings: Settings, args: argparse.Namespace) -> None:
    """``triomem doctor``: every check with its fix. Raises CommandFailed when one fails."""
    checks = [*run_checks(settings), await check_remote(settings)]
    emit(args.json, {"checks": [c.to_json() for c in checks]}, render(checks))
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        raise CommandFailed(f"{len(failed)} check(s) failed: {', '.join(failed)}")


def config_show(settings: Settings, args: argparse.Namespace) -> None:
    """``triomem config show``: the effective settings, secrets masked, each with its
    source."""
    if args.json:
        emit(True, {"file": str(settings.file) if settings.file else None,
                     "settings": settings.masked(), "sources": dict(settings.sources)}, "")
    else:
        print(settings.show(), end="")
        note("# precedence: flag > environment (TRIOMEM_*) > file > default")
