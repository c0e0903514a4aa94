"""Online backup through SQLite's backup API, one bounded step at a time.

The store actor runs one step between its other work, so writers pause for at most one step
(``pages_per_step`` pages). The copy is written beside the target as ``<target>.partial`` and
renamed into place only once complete and checked, so a crash mid-backup never leaves a
truncated file under the target's name. The result is a single self-contained file
(rollback-journal mode, no ``-wal`` beside it).

A commit by another process (another engine or CLI on the same file) makes SQLite restart the
copy from the first page at the next step; this process's own writes do not. Under another
process's steady writes a fixed step size never finishes (measured: a backup beside a process
running 8 writers was still restarting after 120 s). So each restart doubles the step: the
copy finishes in a handful of steps, at worst one step holding a read transaction, which in
WAL mode does not block the other process's writers.
"""

from __future__ import annotations

import contextlib
import os

import apsw
import attrs

from ._errors import InvalidMemory, StoreIOError


@attrs.frozen
class BackupRequest:
    destination: str
    pages_per_step: int = 256
    overwrite: bool = False


@attrs.frozen
class BackupResult:
    destination: str
    pages: int
    steps: int
    bytes: int
    restarts: int = 0  # copies restarted by another process's commits


@attrs.define(eq=False)
class BackupJob:
    request: BackupRequest
    _dest: apsw.Connection
    _backup: apsw.Backup
    _partial: str
    steps: int = 0
    restarts: int = 0
    _pages: int = 0  # pages per step, doubled on each restart
    _copied: int = 0  # pages copied after the last step

    @classmethod
    def start(cls, source: apsw.Connection, request: BackupRequest) -> BackupJob:
        target = os.path.abspath(request.destination)
        if os.path.exists(target) and not request.overwrite:
            raise InvalidMemory("destination", f"{target} exists; refusing to overwrite it")
        if not os.path.isdir(os.path.dirname(target)):
            raise InvalidMemory("destination", f"directory {os.path.dirname(target)} does not "
                                               "exist")
        partial = target + ".partial"
        for leftover in (partial, partial + "-journal", partial + "-wal"):
            if os.path.exists(leftover):
                os.remove(leftover)
        try:
            dest = apsw.Connection(partial)
            return cls(request, dest, dest.backup("main", source, "main"), partial)
        except apsw.Error as exc:
            raise StoreIOError(f"cannot write backup {partial}: {exc}") from None

    def step(self) -> bool:
        """Copy the next pages; True when the copy is complete."""
        self.steps += 1
        pages = self._pages or self.request.pages_per_step
        done = bool(self._backup.step(pages))
        copied = self._backup.pagecount - self._backup.remaining
        if not done and self.steps > 1 and copied < self._copied + pages:
            self.restarts += 1  # started over from page one: another process committed
            pages *= 2
        self._pages, self._copied = pages, copied
        return done

    def finish(self) -> BackupResult:
        pages = self._backup.pagecount
        self._backup.finish()
        dest = self._dest
        try:
            dest.execute("PRAGMA journal_mode=DELETE")
            check = dest.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise StoreIOError(f"backup failed its check: {check[:3]}")
        finally:
            dest.close()
        target = os.path.abspath(self.request.destination)
        with open(self._partial, "rb") as f:
            os.fsync(f.fileno())
        os.replace(self._partial, target)
        directory = os.open(os.path.dirname(target), os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself must survive a crash
        finally:
            os.close(directory)
        return BackupResult(target, pages, self.steps, os.path.getsize(target), self.restarts)

    def abort(self) -> None:
        with contextlib.suppress(apsw.Error):
            self._backup.finish()
        self._dest.close()
        if os.path.exists(self._partial):
            os.remove(self._partial)
