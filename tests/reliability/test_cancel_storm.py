"""1000 engine calls cancelled at random points (by a sibling after a random number of
scheduler turns, or by a deadline): no leaked task, no half-applied write, a consistent
store whose indexes match its table."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import apsw
import sqlite_vec
import trio
import trio.testing

from tests.fakes import HashEmbedder
from triomem import Engine, EngineConfig, TriomemError, open_engine

CALLS = 1000


def check_consistency(path: Path) -> dict[str, int]:
    """Every live memory: hash matches content, tags match memory_tags, one FTS row, one
    vector; tombstones have none; no orphan index rows."""
    conn = apsw.Connection(str(path))
    conn.enable_load_extension(True)
    conn.load_extension(sqlite_vec.loadable_path())
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        table = conn.execute("SELECT value FROM meta WHERE key = 'vec_table'").fetchall()[0][0]
        live = 0
        for seq, content, chash, tags, deleted in conn.execute(
                "SELECT seq, content, content_hash, tags, deleted_at FROM memories"):
            tag_rows = {r[0] for r in conn.execute(
                "SELECT tag FROM memory_tags WHERE seq = ?", (seq,))}
            vec = conn.execute(f"SELECT count(*) FROM {table} WHERE rowid = ?",
                               (seq,)).fetchall()[0][0]
            if deleted is None:
                live += 1
                assert chash == hashlib.sha256(content.encode()).hexdigest()
                assert tag_rows == set(json.loads(tags))
                assert vec == 1
            else:
                assert (content, chash, tag_rows, vec) == (None, None, set(), 0)
        fts = conn.execute("SELECT count(*) FROM memory_fts").fetchall()[0][0]
        assert fts == live, "FTS rows must match live memories"
        orphans = conn.execute("SELECT count(*) FROM memory_tags WHERE seq NOT IN "
                               "(SELECT seq FROM memories)").fetchall()[0][0]
        assert orphans == 0
        return {"live": live}
    finally:
        conn.close()


async def _storm(engine: Engine, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    ids: list[str] = [(await engine.remember(f"seed memory {i}")).memory.id for i in range(20)]
    outcomes = {"done": 0, "cancelled": 0, "error": 0}

    async def one(n: int) -> None:
        kind = rng.choice(["remember", "update", "forget", "recall", "list", "get"])
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                if rng.random() < 0.5:
                    turns = rng.randrange(0, 40)

                    async def cancel_after() -> None:
                        for _ in range(turns):
                            await trio.lowlevel.checkpoint()
                        scope.cancel()

                    nursery.start_soon(cancel_after)
                else:
                    scope.deadline = trio.current_time() + rng.uniform(0, 0.01)
                try:
                    if kind == "remember":
                        ids.append((await engine.remember(f"storm {n}", tags=[f"t{n % 5}"]))
                                   .memory.id)
                    elif kind == "update":
                        await engine.update(rng.choice(ids), content=f"storm edit {n}",
                                            tags=[f"e{n % 3}"])
                    elif kind == "forget":
                        await engine.forget(rng.choice(ids))
                    elif kind == "recall":
                        await engine.recall(f"storm {n}")
                    elif kind == "list":
                        await engine.list(tags_any=[f"t{n % 5}"])
                    else:
                        await engine.get(rng.choice(ids))
                    outcomes["done"] += 1
                except TriomemError:
                    outcomes["error"] += 1  # not found after a forget, duplicate content...
                nursery.cancel_scope.cancel()
        if scope.cancelled_caught:
            outcomes["cancelled"] += 1

    async with trio.open_nursery() as nursery:
        for n in range(CALLS):
            nursery.start_soon(one, n)
            if n % 50 == 0:
                await trio.sleep(0.001)
    return outcomes


async def test_cancel_storm_leaves_nothing_behind(tmp_path: Path,
                                                 autojump_clock: trio.abc.Clock) -> None:
    path = tmp_path / "storm.db"
    config = EngineConfig(embedder=HashEmbedder(), executor="inline", seed=5)
    async with open_engine(path, config) as engine:
        outcomes = await _storm(engine, seed=11)
        await trio.testing.wait_all_tasks_blocked()
        stats = await engine.statistics()
        assert stats.recall.running == 0
        assert stats.store.pending_writes == 0
        assert stats.store.queued == 0
        assert (await engine.remember("the engine still serves")).created
    assert outcomes["cancelled"] > 100, outcomes
    assert outcomes["done"] > 100, outcomes
    check_consistency(path)
