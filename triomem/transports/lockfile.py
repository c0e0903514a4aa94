"""The lock file beside a database: who serves it, and where to reach them.

``<db>.triomem.lock`` (mode 0600) is held with an exclusive ``fcntl.flock`` by the one server
that owns the database, for that server's whole life; while listening it holds one JSON line
with the server's pid, address and token. Liveness is decided by the lock, never by the pid:
the kernel drops a flock when its holder dies (SIGKILL included), and a pid may be reused, so
a file whose lock is free is stale whatever it says.

The file is never unlinked. A lock is bound to an inode: a process that unlinked and
re-created the file could hold a lock on a new inode while another still locks the old one,
and both would believe they own the database. Its content is rewritten in place instead, so
a reader can catch it empty or half-written; it then treats the server as still starting.

Locks are advisory and need a local file system (``flock`` on network mounts varies).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from typing import Any

import attrs
import trio

LOCK_SUFFIX = ".triomem.lock"
SPAWN_SUFFIX = ".triomem.spawn"
LOG_SUFFIX = ".triomem.log"
FORMAT = 1
POLL_INTERVAL = 0.02  # seconds between two tries of a lock that is taken
ACQUIRE_PATIENCE = 0.5  # seconds a server waits for its lock: a probe holds it for microseconds


class DatabaseServed(Exception):
    """Raised by ``OwnerLock.acquire`` when another server holds the database's lock.

    ``info`` is what that server published, or None while it is starting or stopping.
    """

    def __init__(self, path: str, info: DaemonInfo | None) -> None:
        where = f"pid {info.pid} on {info.url}" if info else "another triomem process"
        super().__init__(f"{path} is already served by {where}")
        self.path = path
        self.info = info


@attrs.frozen
class DaemonPaths:
    """The files beside one database (its path made absolute, symlinks resolved, so every
    client that names the same file finds the same lock)."""

    database: str
    lock: str
    spawn: str
    log: str

    @classmethod
    def for_database(cls, database: str | os.PathLike[str]) -> DaemonPaths:
        path = os.path.realpath(database)
        return cls(path, path + LOCK_SUFFIX, path + SPAWN_SUFFIX, path + LOG_SUFFIX)


_of = attrs.validators.instance_of


@attrs.frozen
class DaemonInfo:
    """What a listening server publishes in its lock file."""

    pid: int = attrs.field(validator=_of(int))
    host: str = attrs.field(validator=_of(str))
    port: int = attrs.field(validator=_of(int))
    path: str = attrs.field(validator=_of(str))
    token: str | None = attrs.field(validator=attrs.validators.optional(_of(str)))
    database: str = attrs.field(validator=_of(str))
    embedder: str = attrs.field(validator=_of(str))

    @property
    def connect_host(self) -> str:
        """Where a local client connects: loopback when the server listens on every
        interface."""
        if self.host in ("", "0.0.0.0"):
            return "127.0.0.1"
        if self.host == "::":
            return "::1"
        return self.host

    @property
    def url(self) -> str:
        host = f"[{self.connect_host}]" if ":" in self.connect_host else self.connect_host
        return f"ws://{host}:{self.port}{self.path}"

    def dumps(self) -> str:
        return json.dumps({"format": FORMAT, **attrs.asdict(self)}, separators=(",", ":")) + "\n"

    @classmethod
    def loads(cls, text: str) -> DaemonInfo | None:
        """Parse a lock file's content; None if it is empty, partial or of another format."""
        if not text.endswith("\n"):
            return None  # empty, or caught mid-write
        try:
            data: Any = json.loads(text)
            if not isinstance(data, dict) or data.pop("format", None) != FORMAT:
                return None
            return cls(**data)
        except (ValueError, TypeError):  # not JSON, missing or unknown fields, wrong types
            return None


@attrs.frozen
class Probe:
    """The state of a database's lock: free (no server), held without ``info`` (a server is
    starting or stopping), or held with ``info`` (a server is listening)."""

    held: bool
    info: DaemonInfo | None = None


def probe(paths: DaemonPaths) -> Probe:
    """Look at the lock without taking it for more than an instant. Never blocks.

    A free lock is taken shared and let go at once: a server that tries to take it at that
    very instant retries (``OwnerLock.acquire``), so the look never makes it fail.
    """
    try:
        fd = os.open(paths.lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return Probe(held=False)
    try:
        if _try_flock(fd, fcntl.LOCK_SH):
            return Probe(held=False)  # closing the fd below lets the shared lock go
        return Probe(held=True, info=DaemonInfo.loads(_read_all(fd)))
    finally:
        os.close(fd)


def _try_flock(fd: int, operation: int) -> bool:
    """Take a flock without waiting; False if another process holds a conflicting one."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _read_all(fd: int) -> str:
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 65536, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


async def take_flock(path: str) -> int:
    """Open (creating, mode 0600) ``path`` and take an exclusive flock on it, waiting as long
    as it takes (run it under a deadline). Returns the fd, which holds the lock until it is
    closed.

    Raises ``OSError`` if the file cannot be opened. Polls rather than blocking in a thread: a
    flock call abandoned in a thread could take the lock after its caller gave up.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        # No event tells that another process let go of a flock: polling is the only way.
        while not _try_flock(fd, fcntl.LOCK_EX):  # noqa: ASYNC110
            await trio.sleep(POLL_INTERVAL)
    except BaseException:
        os.close(fd)
        raise
    return fd


@attrs.define(eq=False)
class OwnerLock:
    """The exclusive lock a server holds on its database for as long as it runs.

    ``publish`` writes the server's address once it listens, ``clear`` empties it when the
    server stops listening, ``release`` lets go (closing the process does too, whatever the
    way it dies).
    """

    paths: DaemonPaths
    _fd: int | None

    @classmethod
    async def acquire(cls, paths: DaemonPaths) -> OwnerLock:
        """Take the database's lock and empty the file (a dead server's address must not be
        read as ours). A short wait (``ACQUIRE_PATIENCE``) rides out clients that ``probe``
        at the same instant.

        Raises ``DatabaseServed`` if another server holds it, ``OSError`` if the file cannot be
        opened.
        """
        with trio.move_on_after(ACQUIRE_PATIENCE):
            fd = await take_flock(paths.lock)
            os.fchmod(fd, 0o600)  # a file someone else created keeps the token private too
            os.ftruncate(fd, 0)
            return cls(paths, fd)
        raise DatabaseServed(paths.database, probe(paths).info)

    def publish(self, info: DaemonInfo) -> None:
        """Write ``info`` for clients to find. Raises ``RuntimeError`` after ``release``."""
        fd = self._held()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info.dumps().encode(), 0)

    def clear(self) -> None:
        """Withdraw the published address (the server no longer accepts connections)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)

    def release(self) -> None:
        """Clear and let go of the lock. Idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)

    def _held(self) -> int:
        if self._fd is None:
            raise RuntimeError("the database lock was released")
        return self._fd

    def __enter__(self) -> OwnerLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()
