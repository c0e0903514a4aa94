"""Disk and file faults: a full disk, a read-only directory, the file deleted or replaced
while open. Typed errors, no acknowledgement of a write that did not commit, reads go on."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest
import trio

from tests.fakes import HashEmbedder
from tests.reliability._processes import spawn
from triomem import EngineConfig, StoreIOError, open_engine


def _config() -> EngineConfig:
    return EngineConfig(embedder=HashEmbedder(), executor="inline")


async def test_a_full_disk_fails_writes_typed_and_keeps_what_was_acknowledged(
        tmp_path: Path) -> None:
    path = tmp_path / "full.db"
    async with open_engine(path, _config()):
        pass
    proc = spawn("filler", str(path), str(2 * 1024 * 1024))
    with trio.fail_after(120):
        out, err = await trio.to_thread.run_sync(proc.communicate)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]
    acked = {line["acked"] for line in lines if "acked" in line}
    errors = [line["error"] for line in lines if "error" in line]
    assert acked, "some writes fitted before the disk filled"
    assert errors and set(errors) == {"store_io"}, errors
    assert lines[-1]["reads"] > 0  # the engine kept answering reads
    conn = apsw.Connection(str(path))
    ids = {r[0] for r in conn.execute("SELECT id FROM memories")}
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    assert ids == acked, "exactly the acknowledged writes are on disk"


async def test_a_deleted_database_refuses_writes_but_answers_reads(tmp_path: Path) -> None:
    path = tmp_path / "gone.db"
    async with open_engine(path, _config()) as engine:
        kept = (await engine.remember("written before the delete")).memory
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(f"{path}{suffix}")
        with pytest.raises(StoreIOError, match="deleted or replaced"):
            await engine.remember("must not be acknowledged")
        assert (await engine.get(kept.id)).content == "written before the delete"
        assert (await engine.statistics()).store.writes_failed == 1


async def test_a_replaced_database_refuses_writes(tmp_path: Path) -> None:
    path, other = tmp_path / "db.db", tmp_path / "other.db"
    async with open_engine(other, _config()) as engine:
        await engine.remember("the other file")
    async with open_engine(path, _config()) as engine:
        await engine.remember("ours")
        os.replace(other, path)
        with pytest.raises(StoreIOError):
            await engine.remember("must not land in either file")
    conn = apsw.Connection(str(path))
    assert [r[0] for r in conn.execute("SELECT content FROM memories")] == ["the other file"]
    conn.close()


@contextlib.contextmanager
def _read_only(directory: Path) -> Iterator[Path]:
    """``directory`` seen through a read-only bind mount (root bypasses file modes)."""
    view = directory.parent / (directory.name + "-ro")
    view.mkdir()
    subprocess.run(["mount", "--bind", str(directory), str(view)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"),
                    reason="a read-only bind mount needs root (CI runs as root)")
async def test_a_read_only_directory_is_a_typed_error_and_the_file_is_untouched(
        tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    async with open_engine(data / "m.db", _config()) as engine:
        await engine.remember("written while writable")
    before = (data / "m.db").read_bytes()
    with _read_only(data) as view:
        with pytest.raises(StoreIOError):
            async with open_engine(view / "m.db", _config()):
                pass
        with pytest.raises(StoreIOError):
            async with open_engine(view / "new.db", _config()):
                pass
    assert (data / "m.db").read_bytes() == before
