"""Real ``triomem stdio`` processes for the bridge tests, and the cleanup of the servers they
start (by the pid in the lock file, never by name)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import trio

from tests.transports._messages import McpCalls
from triomem.transports.lockfile import DaemonInfo, DaemonPaths, probe

TRIOMEM = Path(sys.executable).with_name("triomem")


def stdio_command(db: Path, *extra: str) -> list[str]:
    return [str(TRIOMEM), "stdio", "--db", str(db), "--embedder", "wordllama", *extra]


@attrs.define(eq=False)
class Bridge(McpCalls):
    """One ``triomem stdio`` process, driven as a desktop client would drive it."""

    process: trio.Process
    _buffer: bytearray = attrs.field(factory=bytearray)
    _ids: itertools.count[int] = attrs.field(factory=lambda: itertools.count(0))
    notifications: list[dict[str, Any]] = attrs.field(factory=list)

    async def send(self, message: dict[str, Any] | str) -> None:
        assert self.process.stdin is not None
        text = message if isinstance(message, str) else json.dumps(message)
        await self.process.stdin.send_all(text.encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        """The next message on the bridge's stdout. Raises EOFError at its end."""
        assert self.process.stdout is not None
        while b"\n" not in self._buffer:
            chunk = await self.process.stdout.receive_some(65536)
            if not chunk:
                raise EOFError(bytes(self._buffer))
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        decoded: dict[str, Any] = json.loads(line)
        return decoded

    async def receive_all(self) -> list[dict[str, Any]]:
        """Every message up to the end of stdout."""
        messages = []
        with contextlib.suppress(EOFError):
            while True:
                messages.append(await self.receive())
        return messages

    async def close_stdin(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        chunks = []
        while chunk := await self.process.stderr.receive_some(65536):
            chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")


@contextlib.asynccontextmanager
async def open_bridge(db: Path, *extra: str, env: dict[str, str] | None = None
                      ) -> AsyncIterator[Bridge]:
    """Start ``triomem stdio`` on ``db``; killed on exit if it is still running."""
    process = await trio.lowlevel.open_process(
        stdio_command(db, *extra), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env)
    try:
        yield Bridge(process)
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


def structured(result: dict[str, Any]) -> dict[str, Any]:
    assert result["isError"] is False, result
    value: dict[str, Any] = result["structuredContent"]
    return value


def daemon_info(db: Path) -> DaemonInfo:
    info = probe(DaemonPaths.for_database(db)).info
    assert info is not None, f"no server publishes {db}"
    return info


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a server's parent may be the bridge that
    started it, which reaps it only when it exits itself)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def daemon_pids(db: Path) -> list[int]:
    """The live ``triomem serve --daemon`` processes serving ``db`` (read from /proc)."""
    wanted = os.path.realpath(db)
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        words = [word.decode(errors="replace") for word in argv]
        if "serve" in words and "--daemon" in words and wanted in words and pid_alive(
                int(entry.name)):
            pids.append(int(entry.name))
    return pids


async def poll_until(condition: Callable[[], bool], seconds: float) -> bool:
    """Check ``condition`` every 50 ms for up to ``seconds``; True once it holds. (Locks held
    and processes alive in other processes: nothing to wait on but time.)"""
    with trio.move_on_after(seconds):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.05)
        return True
    return False


async def wait_until_free(db: Path, seconds: float) -> bool:
    """Wait up to ``seconds`` for the database's lock to be free; True if it is."""
    paths = DaemonPaths.for_database(db)
    return await poll_until(lambda: not probe(paths).held, seconds)


def read_log(db: Path) -> str:
    log = Path(DaemonPaths.for_database(db).log)
    return log.read_text() if log.exists() else ""


async def stop_daemon(db: Path) -> None:
    """Stop the server holding ``db``'s lock, if any: SIGTERM by the pid it published, then
    SIGKILL if it does not let go within 10 s."""
    paths = DaemonPaths.for_database(db)

    def settled() -> bool:
        state = probe(paths)
        return not state.held or state.info is not None  # a starting server has no pid yet

    await poll_until(settled, 5)
    info = probe(paths).info
    if info is None:
        return
    for signum in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signum)
        if await wait_until_free(db, 10):
            return
    raise AssertionError(f"server pid {info.pid} still holds {paths.lock}")
