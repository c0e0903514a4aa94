"""Periodic backups with retention, run by ``triomem serve`` (settings ``backup.*``).

Every ``every_hours`` the server copies its database with the online backup API
(``Engine.backup``: writers pause for one step at most) to
``<directory>/<database name>-<UTC time>.db``, for example
``backups/memories-20250601T120000.000Z.db``, then deletes the oldest such files beyond
``keep``. Only files named that way are ever deleted. The schedule survives restarts: the
next backup is due ``every_hours`` after the newest one in the directory (at once if that is
overdue), so a server that stops when idle still backs up.

A failed backup is logged and retried at the next period; it never stops the server.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from pathlib import Path

import attrs
import trio

from .engine import Engine, TriomemError

logger = logging.getLogger("triomem.backups")

STAMP = "%Y%m%dT%H%M%S"
_STAMPED = r"-(\d{8}T\d{6})\.(\d{3})Z\.db"


@attrs.frozen
class BackupSchedule:
    """Where and how often: ``every`` seconds, keeping the newest ``keep`` backups."""

    directory: str
    every: float = attrs.field(validator=attrs.validators.gt(0))
    keep: int = attrs.field(validator=attrs.validators.ge(1))

    @classmethod
    def default_directory(cls, database: str) -> str:
        """``backups`` beside the database."""
        return os.path.join(os.path.dirname(os.path.abspath(database)), "backups")


def backup_name(database: str, when: dt.datetime) -> str:
    """The file name of a backup of ``database`` taken at ``when`` (an aware datetime)."""
    stem = Path(database).stem
    when = when.astimezone(dt.UTC)
    return f"{stem}-{when.strftime(STAMP)}.{when.microsecond // 1000:03d}Z.db"


def existing_backups(directory: str, database: str) -> list[tuple[dt.datetime, Path]]:
    """The backups of ``database`` in ``directory``, oldest first (by the time in the name);
    none when the directory is missing or unreadable (the next backup then reports why)."""
    pattern = re.compile(re.escape(Path(database).stem) + _STAMPED)
    found = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return []
    for path in entries:
        match = pattern.fullmatch(path.name)
        if match and path.is_file():
            when = dt.datetime.strptime(match[1], STAMP).replace(
                tzinfo=dt.UTC, microsecond=int(match[2]) * 1000)
            found.append((when, path))
    return sorted(found)


def prune(directory: str, database: str, keep: int) -> list[Path]:
    """Delete the oldest backups of ``database`` beyond the newest ``keep``; return them.
    Raises OSError when a file cannot be deleted."""
    backups = existing_backups(directory, database)
    doomed = [path for _, path in backups[:max(0, len(backups) - keep)]]
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


async def back_up_once(engine: Engine, schedule: BackupSchedule) -> Path:
    """Take one backup now and prune. Raises TriomemError or OSError."""
    os.makedirs(schedule.directory, exist_ok=True)
    when = dt.datetime.now(dt.UTC)
    target = Path(schedule.directory) / backup_name(engine.path, when)
    while target.exists():  # two backups within a millisecond: the later one moves on
        when += dt.timedelta(milliseconds=1)
        target = Path(schedule.directory) / backup_name(engine.path, when)
    result = await engine.backup(target)
    logger.info("backup written", extra={"backup": result.destination, "bytes": result.bytes,
                                          "steps": result.steps, "restarts": result.restarts})
    for path in prune(schedule.directory, engine.path, schedule.keep):
        logger.info("old backup deleted", extra={"backup": str(path)})
    return target


async def run_periodic_backups(engine: Engine, schedule: BackupSchedule) -> None:
    """Back up ``engine`` on ``schedule`` until cancelled. Never raises for a failed backup
    (it is logged; the next period tries again)."""
    logger.info("periodic backups", extra={"directory": schedule.directory,
                                           "every_s": schedule.every, "keep": schedule.keep})
    newest = existing_backups(schedule.directory, engine.path)
    wait = schedule.every
    if newest:
        age = (dt.datetime.now(dt.UTC) - newest[-1][0]).total_seconds()
        wait = min(max(0.0, schedule.every - age), schedule.every)
    while True:
        await trio.sleep(wait)
        try:
            await back_up_once(engine, schedule)
        except (TriomemError, OSError) as exc:
            logger.error("backup failed: %s", exc, extra={"directory": schedule.directory})
        wait = schedule.every
