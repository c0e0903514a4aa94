"""Online backup while writers run; restore by opening the copy."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest
import trio

from tests.fakes import HashEmbedder
from triomem import EngineConfig, InvalidMemory, open_engine


async def test_backup_while_eight_writers_run_holds_every_earlier_write(
        tmp_path: Path) -> None:
    config = EngineConfig(embedder=HashEmbedder(), executor="thread")
    backup_path = tmp_path / "backup.db"
    async with open_engine(tmp_path / "live.db", config) as engine:
        for i in range(300):
            await engine.remember(f"before the backup {i} " + "padding " * 40)
        before = {m.id for m in (await engine.list(limit=1000)).memories}
        stop = trio.Event()
        written: list[str] = []

        async def writer(n: int) -> None:
            i = 0
            while not stop.is_set() and i < 400:
                written.append((await engine.remember(f"writer {n} memory {i}")).memory.id)
                i += 1

        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(writer, n)
            result = await engine.backup(backup_path, pages_per_step=8)
            stop.set()
        assert result.steps > 1  # it really went in steps while writers ran
        assert written  # writers made progress meanwhile
    conn = apsw.Connection(str(backup_path))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA journal_mode").fetchall() == [("delete",)]
    conn.close()
    assert not (tmp_path / "backup.db.partial").exists()
    # Restore = open the copy as a database.
    async with open_engine(backup_path, config) as restored:
        ids = {m.id for m in (await restored.list(limit=1000)).memories}
        assert before <= ids
        assert (await restored.recall("before the backup 7")).hits


async def test_backup_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    config = EngineConfig(embedder=HashEmbedder(), executor="inline")
    target = tmp_path / "exists.db"
    target.write_bytes(b"keep me")
    async with open_engine(tmp_path / "live.db", config) as engine:
        await engine.remember("x")
        with pytest.raises(InvalidMemory) as info:
            await engine.backup(target)
        assert info.value.field == "destination"
        assert target.read_bytes() == b"keep me"
        with pytest.raises(InvalidMemory):
            await engine.backup(tmp_path / "missing-dir" / "b.db")
        result = await engine.backup(target, overwrite=True)
        assert result.bytes > 0
    assert target.read_bytes()[:16] == b"SQLite format 3\x00"
