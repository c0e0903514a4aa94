"""Several OS processes, each with its own engine, on one database file (seed 001's shape)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apsw
import pytest
import trio

from tests.fakes import HashEmbedder
from triomem import EngineConfig, open_engine

ROOT = Path(__file__).resolve().parents[2]


def _spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "tests.integration.mp_worker", *args],
                            cwd=ROOT, stderr=subprocess.PIPE)


@pytest.mark.parametrize(("writers", "count"), [(4, 1000)])
async def test_processes_sharing_one_file_lose_nothing(
        tmp_path: Path, writers: int, count: int) -> None:
    path = str(tmp_path / "shared.db")
    async with open_engine(path, EngineConfig(embedder=HashEmbedder())):
        pass  # create the file first so the locker has a schema to write to
    outs = [tmp_path / f"writer{i}.json" for i in range(writers)]
    locker = _spawn("locker", path, "6", "0.25")
    procs = [_spawn("writer", path, str(count), str(out)) for out in outs]
    with trio.fail_after(120):
        for proc in [*procs, locker]:
            await trio.to_thread.run_sync(proc.wait)
    for proc in [*procs, locker]:
        assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    results = [json.loads(out.read_text()) for out in outs]
    acked = [memory_id for r in results for memory_id in r["acked"]]
    conn = apsw.Connection(path)
    rows = conn.execute("SELECT id, content FROM memories").fetchall()
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    ids = [r[0] for r in rows]
    assert len(ids) == len(set(ids)), "duplicated rows"
    assert len({r[1] for r in rows}) == len(rows), "duplicated content"
    assert set(acked) <= set(ids), "an acknowledged write is missing"
    assert len(acked) == len(set(acked))
    gave_up = sum(r["gave_up"] for r in results)
    assert len(ids) == len(acked), "a write that was not acknowledged was applied"
    assert len(acked) + gave_up == writers * count
    assert gave_up == sum(r["stats"]["busy_give_ups"] for r in results)
    retries = sum(r["stats"]["busy_retries"] for r in results)
    print(f"acked={len(acked)} gave_up={gave_up} busy_retries={retries}")
    assert retries > 0, "contention was not visible"
