"""SIGKILL at random moments: while clients write, during the first migration, during an
online backup. After each kill the file opens cleanly and holds every acknowledged write."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import apsw
import pytest
import trio

from tests.fakes import HashEmbedder
from tests.reliability._figures import emit
from tests.reliability._processes import spawn
from tests.reliability.test_cancel_storm import check_consistency
from triomem import EngineConfig, open_engine
from triomem.actors._db import scalar


async def _read_acks(proc: subprocess.Popen[bytes], seconds: float) -> list[str]:
    """Lines the writer printed within ``seconds``: each one an acknowledged id."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    data = b""
    with trio.move_on_after(seconds):
        while True:
            await trio.lowlevel.wait_readable(fd)
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    proc.send_signal(signal.SIGKILL)
    await trio.to_thread.run_sync(proc.wait)
    return [line for line in data.decode().split("\n")[:-1] if line]  # complete lines only


def _check(path: Path) -> tuple[set[str], int]:
    check_consistency(path)  # the indexes match the table: no half-applied write
    conn = apsw.Connection(str(path))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        ids = {str(r[0]) for r in conn.execute("SELECT id FROM memories")}
        outbox: int = scalar(conn, "SELECT count(*) FROM sync_outbox")
        return ids, outbox
    finally:
        conn.close()


async def _kill_rounds(tmp_path: Path, rounds: int) -> dict[str, int]:
    rng = random.Random(rounds)
    path = tmp_path / "crash.db"
    acked: set[str] = set()
    for _ in range(rounds):
        proc = spawn("acker", str(path))
        acked |= set(await _read_acks(proc, rng.uniform(1.0, 2.5)))
        async with open_engine(path, EngineConfig(embedder=HashEmbedder(),
                                                  executor="inline")) as engine:
            stats = await engine.statistics()  # opens cleanly, WAL recovered
            assert stats.database.schema_version >= 3
        ids, outbox = _check(path)
        assert acked <= ids, f"{len(acked - ids)} acknowledged writes lost"
        assert outbox == len(ids), "the outbox must hold every memory written (no remote)"
    assert len(acked) > rounds  # the writer really wrote between kills
    return {"faults": rounds, "acknowledged": len(acked), "lost": len(acked - ids),
            "crashes": 0, "stored": len(ids)}


async def test_sigkill_while_writing_short(tmp_path: Path) -> None:
    with trio.fail_after(300):
        figures = await _kill_rounds(tmp_path, 10)
    emit("engine process SIGKILL while writing (10 rounds)", **figures)


@pytest.mark.slow
async def test_sigkill_while_writing_long(tmp_path: Path) -> None:
    with trio.fail_after(3600):
        figures = await _kill_rounds(tmp_path, 100)
    emit("engine process SIGKILL while writing (100 rounds)", variant="long", **figures)


async def test_sigkill_during_the_first_migration(tmp_path: Path) -> None:
    rng = random.Random(7)
    with trio.fail_after(300):
        for round_ in range(8):
            path = tmp_path / f"fresh{round_}.db"
            proc = spawn("opener", str(path))
            assert proc.stdout is not None
            assert await trio.to_thread.run_sync(proc.stdout.readline) == b"ready\n"
            await trio.sleep(rng.uniform(0.0, 1.0))  # somewhere in imports, creation, migration
            proc.send_signal(signal.SIGKILL)
            await trio.to_thread.run_sync(proc.wait)
            async with open_engine(path, EngineConfig(embedder=HashEmbedder(),
                                                      executor="inline")) as engine:
                assert (await engine.remember("after the crash")).created
            _check(path)


async def test_sigkill_during_an_online_backup(tmp_path: Path) -> None:
    path, backup = tmp_path / "live.db", tmp_path / "backup.db"
    async with open_engine(path, EngineConfig(embedder=HashEmbedder(),
                                              executor="inline")) as engine:
        for i in range(300):
            await engine.remember(f"memory {i} " + "padding " * 50)
    rng = random.Random(3)
    with trio.fail_after(300):
        for _ in range(5):
            proc = spawn("backer", str(path), str(backup))
            await trio.sleep(rng.uniform(0.8, 2.0))
            proc.send_signal(signal.SIGKILL)
            await trio.to_thread.run_sync(proc.wait)
            ids, _ = _check(path)
            assert len(ids) == 300
            if backup.exists():  # only ever a complete copy under the target's name
                assert len(_check(backup)[0]) == 300
