"""Periodic backups: names, retention (only our files), a schedule that survives restarts."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trio
import trio.testing

from tests.fakes import HashEmbedder
from triomem import EngineConfig, open_engine
from triomem.backups import (
    BackupSchedule,
    backup_name,
    existing_backups,
    prune,
    run_periodic_backups,
)


def test_names_sort_by_time_and_prune_touches_only_backups(tmp_path: Path) -> None:
    start = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
    names = [backup_name("/data/memories.db", start + dt.timedelta(hours=h, milliseconds=7))
             for h in (0, 30, 1, 2)]
    assert names[0] == "memories-20250601T120000.007Z.db"
    for name in names:
        (tmp_path / name).write_text("x")
    others = ["memories.db", "memories-notes.db", "other-20250601T120000.000Z.db",
              "memories-20250601T120000.000Z.db.partial"]
    for name in others:
        (tmp_path / name).write_text("keep")
    found = existing_backups(str(tmp_path), "memories.db")
    assert [p.name for _, p in found] == sorted(names)
    assert found[0][0] == start.replace(microsecond=7000)
    removed = prune(str(tmp_path), "memories.db", keep=2)
    assert sorted(p.name for p in removed) == sorted(names)[:2]
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*others, *sorted(names)[2:]])


async def test_the_schedule_backs_up_prunes_and_resumes(
        tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    config = EngineConfig(embedder=HashEmbedder(), executor="inline")
    directory = tmp_path / "backups"
    schedule = BackupSchedule(str(directory), every=3600.0, keep=3)
    async with open_engine(tmp_path / "memories.db", config) as engine:
        await engine.remember("worth keeping")
        with trio.move_on_after(3600 * 5 + 1):  # autojump clock: five periods pass at once
            await run_periodic_backups(engine, schedule)
        assert len(existing_backups(str(directory), engine.path)) == 3
        # A restart with a fresh backup waits a whole period before the next one.
        before = len(list(directory.iterdir()))
        with trio.move_on_after(60):
            await run_periodic_backups(engine, schedule)
        assert len(list(directory.iterdir())) == before
        # A failed backup is logged and the loop goes on.
        directory_file = tmp_path / "not-a-directory"
        directory_file.write_text("x")
        broken = BackupSchedule(str(directory_file), every=10.0, keep=1)
        with trio.move_on_after(35):
            await run_periodic_backups(engine, broken)
