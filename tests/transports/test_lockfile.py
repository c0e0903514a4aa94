"""The lock file beside a database: liveness by flock, never by the content."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
import trio

from triomem.transports.lockfile import (
    DaemonInfo,
    DaemonPaths,
    DatabaseServed,
    OwnerLock,
    Probe,
    probe,
)


def info_for(paths: DaemonPaths, pid: int = 4242) -> DaemonInfo:
    return DaemonInfo(pid=pid, host="127.0.0.1", port=40000, path="/mcp", token="secret",
                      database=paths.database, embedder="wordllama")


def write_file(path: str, text: str) -> None:
    Path(path).write_text(text)


def test_paths_are_beside_the_resolved_database(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    paths = DaemonPaths.for_database(tmp_path / "link" / "m.db")
    database = str((tmp_path / "real" / "m.db").resolve())
    assert paths == DaemonPaths(database, database + ".triomem.lock",
                                database + ".triomem.spawn", database + ".triomem.log")
    assert DaemonPaths.for_database(os.path.relpath(tmp_path / "real" / "m.db")) == paths


async def test_owner_lock_lifecycle(tmp_path: Path) -> None:
    paths = DaemonPaths.for_database(tmp_path / "m.db")
    assert probe(paths) == Probe(held=False)  # no file yet
    with await OwnerLock.acquire(paths) as owner:
        assert os.stat(paths.lock).st_mode & 0o777 == 0o600
        assert probe(paths) == Probe(held=True)  # starting: held, nothing published
        owner.publish(info_for(paths))
        assert probe(paths) == Probe(held=True, info=info_for(paths))
        owner.clear()  # stopping: held, address withdrawn
        assert probe(paths) == Probe(held=True)
        owner.publish(info_for(paths, pid=7))
    assert probe(paths) == Probe(held=False)
    assert os.stat(paths.lock).st_size == 0  # released: emptied, not removed
    with pytest.raises(RuntimeError):
        owner.publish(info_for(paths))


async def test_a_second_owner_is_refused_with_the_first_ones_address(tmp_path: Path) -> None:
    paths = DaemonPaths.for_database(tmp_path / "m.db")
    with await OwnerLock.acquire(paths) as owner:
        owner.publish(info_for(paths))
        with trio.fail_after(5), pytest.raises(DatabaseServed) as refused:
            await OwnerLock.acquire(paths)
    assert refused.value.info == info_for(paths)
    assert "already served by pid 4242 on ws://127.0.0.1:40000/mcp" in str(refused.value)


async def test_a_stale_file_is_free_and_emptied_by_the_next_owner(tmp_path: Path) -> None:
    paths = DaemonPaths.for_database(tmp_path / "m.db")
    # What a server killed with SIGKILL leaves: its address, and no lock on the file.
    write_file(paths.lock, info_for(paths).dumps())
    assert probe(paths) == Probe(held=False)
    with await OwnerLock.acquire(paths):
        assert probe(paths) == Probe(held=True)  # the dead server's address is gone


async def test_a_probe_at_the_same_instant_does_not_make_the_owner_fail(tmp_path: Path) -> None:
    paths = DaemonPaths.for_database(tmp_path / "m.db")
    write_file(paths.lock, "")
    fd = os.open(paths.lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a client's probe, caught in the middle

        async def let_go() -> None:
            await trio.sleep(0.1)
            fcntl.flock(fd, fcntl.LOCK_UN)

        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(let_go)
                with await OwnerLock.acquire(paths):
                    assert probe(paths).held
    finally:
        os.close(fd)


@pytest.mark.parametrize("text", [
    "",
    '{"format":1,"pid":1',  # caught mid-write
    '{"format":1,"pid":1}\n',  # fields missing
    '{"format":2,"pid":1,"host":"h","port":1,"path":"/","token":null,"database":"d",'
    '"embedder":"e"}\n',  # another format
    '{"format":1,"pid":"1","host":"h","port":1,"path":"/","token":null,"database":"d",'
    '"embedder":"e"}\n',  # wrong type
    "[1, 2]\n",
    "not json\n",
])
def test_unreadable_content_reads_as_starting(text: str) -> None:
    assert DaemonInfo.loads(text) is None


def test_info_round_trips_and_connects_to_loopback_for_any_address() -> None:
    info = DaemonInfo(pid=1, host="0.0.0.0", port=8765, path="/mcp", token=None,
                      database="/d", embedder="minilm")
    assert DaemonInfo.loads(info.dumps()) == info
    assert info.url == "ws://127.0.0.1:8765/mcp"
    v6 = DaemonInfo(pid=1, host="::1", port=8765, path="/mcp", token=None, database="/d",
                    embedder="minilm")
    assert v6.url == "ws://[::1]:8765/mcp"
