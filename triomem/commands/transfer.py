"""import and export: memories as JSONL (every field; a round trip is lossless), and the
foreign formats of ``read_records`` on the way in.

Both open the database file in this process, also beside a running server (the engine is
multi-process safe). Export streams page by page; import validates every record first and,
with any bad one and no ``--skip-bad``, imports nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

from ..engine import ImportReport, read_records
from ..progress import Progress
from ..settings import Settings
from ._common import CommandFailed, emit, local_engine, note

SHOWN_ERRORS = 20


def _check_readable(path: str) -> None:
    if not os.path.exists(path):
        raise CommandFailed(f"{path}: no such file")
    if os.path.isdir(path):
        raise CommandFailed(f"{path}: is a directory")
    if not os.access(path, os.R_OK):
        raise CommandFailed(f"{path}: permission denied")


def _report_errors(errors: tuple[tuple[int, str], ...]) -> None:
    for line, message in errors[:SHOWN_ERRORS]:
        note(message if message.startswith(f"line {line}:") else f"line {line}: {message}")
    if len(errors) > SHOWN_ERRORS:
        note(f"... and {len(errors) - SHOWN_ERRORS} more")


def _lines(errors: tuple[tuple[int, str], ...]) -> str:
    numbers = sorted({line for line, _ in errors})
    shown = ", ".join(map(str, numbers[:SHOWN_ERRORS]))
    return shown + (", ..." if len(numbers) > SHOWN_ERRORS else "")


async def import_file(settings: Settings, args: argparse.Namespace) -> None:
    """``triomem import FILE``. Raises CommandFailed (exit 1) for an unreadable file, for bad
    records without ``--skip-bad`` (nothing imported then) and for records that failed to
    write."""
    _check_readable(args.file)
    try:
        records = read_records(args.file, args.format)
        async with local_engine(settings) as engine:
            with Progress("importing") as bar:
                report = await engine.import_records(records, skip_bad=args.skip_bad,
                                                     progress=bar.set)
    except OSError as exc:
        raise CommandFailed(f"{args.file}: {exc.strerror or exc}") from None
    _report_errors(report.errors)
    if not report.applied and not report.imported:
        raise CommandFailed(f"nothing imported: {len(report.errors)} bad record(s) on line(s) "
                            f"{_lines(report.errors)}; fix them, or pass --skip-bad to import "
                            "the good ones")
    emit(args.json, _report_json(report),
         f"imported {report.imported}, unchanged {report.unchanged}"
         + (f", skipped {len(report.errors)} (lines {_lines(report.errors)})"
            if report.errors else ""))
    if report.errors and not args.skip_bad:
        raise CommandFailed(f"{len(report.errors)} record(s) failed on line(s) "
                            f"{_lines(report.errors)}")


def _report_json(report: ImportReport) -> dict[str, Any]:
    return {"imported": report.imported, "unchanged": report.unchanged,
            "applied": report.applied,
            "errors": [{"line": line, "error": message} for line, message in report.errors]}


# Characters ``str.splitlines`` and many JSONL readers take for line breaks, which JSON
# leaves raw inside strings (it only escapes those below U+0020).
_LINE_BREAKS = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


def _encode(record: dict[str, Any]) -> bytes:
    """One JSONL line. Readable UTF-8, or ``\\u`` escapes for text UTF-8 cannot carry (a
    lone surrogate in metadata) and for Unicode line breaks, so any line-splitting reader
    reads back the same record."""
    try:
        text = json.dumps(record, ensure_ascii=False).translate(_LINE_BREAKS)
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record) + "\n").encode("ascii")


@contextlib.contextmanager
def _output(target: str | None, force: bool) -> Iterator[IO[bytes]]:
    """stdout, or ``target`` written beside itself and renamed into place when complete
    (an interrupted export never leaves a truncated file under its name)."""
    if target is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    if os.path.exists(target) and not force:
        raise CommandFailed(f"{target} exists; pass --force to overwrite it")
    partial = target + ".partial"
    try:
        with open(partial, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise


async def export(settings: Settings, args: argparse.Namespace) -> None:
    """``triomem export``: JSONL on stdout, or into ``--to FILE`` (refused if it exists,
    unless ``--force``). Raises CommandFailed."""
    count = 0
    to = _absolute(args.to)
    try:
        async with local_engine(settings, must_exist=True) as engine:
            facts = (await engine.statistics()).database
            total = facts.live_memories + (facts.forgotten_memories
                                           if args.include_forgotten else 0)
            with (_output(to, args.force) as out,
                  Progress("exporting", total=total, enabled=None if to else False)
                  as bar):
                async for record in engine.export(include_forgotten=args.include_forgotten,
                                                  with_vectors=args.with_vectors):
                    out.write(_encode(record))
                    count += 1
                    bar.advance()
    except BrokenPipeError:  # the reader (``| head``) has had enough: stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit does not fail again
        os.close(devnull)
        return
    except OSError as exc:
        raise CommandFailed(f"{exc.filename or to}: {exc.strerror or exc}") from None
    if to:
        emit(args.json, {"exported": count, "to": to}, f"exported {count} memories to {to}")


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)
