"""Many OS processes, each with its own engine, on one database file (seed 001's shape)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import apsw
import trio

from tests.fakes import HashEmbedder
from triomem import EngineConfig, open_engine

ROOT = Path(__file__).resolve().parents[2]


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.integration.mp_worker", *args],
                            cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE)


async def run_processes(tmp: Path, writers: int, count: int, *, recall_every: int = 0,
                        holds: int = 6, hold_seconds: float = 0.25) -> dict[str, Any]:
    """Run the writers beside a process holding long write transactions; check the file.

    Returns the figures; asserts nothing acknowledged was lost or doubled.
    """
    path = str(tmp / "shared.db")
    async with open_engine(path, EngineConfig(embedder=HashEmbedder())):
        pass  # create the file first so the locker has a schema to write to
    outs = [tmp / f"writer{i}.json" for i in range(writers)]
    started = time.perf_counter()
    locker = spawn("locker", path, str(holds), str(hold_seconds))
    procs = [spawn("writer", path, str(count), str(out), str(recall_every)) for out in outs]
    for proc in [*procs, locker]:
        await trio.to_thread.run_sync(proc.wait)
    wall = time.perf_counter() - started
    for proc in [*procs, locker]:
        assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    results = [json.loads(out.read_text()) for out in outs]
    acked = [memory_id for r in results for memory_id in r["acked"]]
    conn = apsw.Connection(path)
    ids = [r[0] for r in conn.execute("SELECT id FROM memories")]
    integrity = conn.execute("PRAGMA integrity_check").fetchall()
    conn.close()
    gave_up = sum(r["gave_up"] for r in results)
    report = {
        "writes": writers * count, "acknowledged": len(acked), "gave_up": gave_up,
        "lost": len(set(acked) - set(ids)), "duplicates": len(ids) - len(set(ids)),
        "unacknowledged_applied": len(set(ids) - set(acked)),
        "integrity": integrity[0][0] if integrity else "?",
        "busy_retries": sum(r["stats"]["busy_retries"] for r in results),
        "busy_give_ups": sum(r["stats"]["busy_give_ups"] for r in results),
        "recalls": sum(r["recalls"] for r in results), "wall_s": round(wall, 2),
    }
    assert report["lost"] == 0, report
    assert report["duplicates"] == 0, report
    assert report["unacknowledged_applied"] == 0, report
    assert report["integrity"] == "ok", report
    assert len(acked) + gave_up == writers * count, report
    assert gave_up == report["busy_give_ups"], report
    return report


async def one_engine_wall(tmp: Path, count: int) -> float:
    """The same number of writes through one engine with 16 writers, for comparison."""
    started = time.perf_counter()
    async with open_engine(tmp / "single.db", EngineConfig(embedder=HashEmbedder())) as engine:

        async def task(offset: int) -> None:
            for i in range(offset, count, 16):
                await engine.remember(f"single engine memory {i}")

        async with trio.open_nursery() as nursery:
            for offset in range(16):
                nursery.start_soon(task, offset)
    return time.perf_counter() - started
