"""Three devices, one remote, random schedules: after heal, every replica equals the
last-writer-wins oracle of all acknowledged writes.

Each seed drives creates, edits, forgets, syncs, partitions, heals, restarts and idle time on
three engines (real SQLite files, inline executor, virtual time) whose links to a FakeRemote
drop requests and acks, deliver twice and cut pages short. The seed is in the test id: a failure
names the schedule that broke.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
import trio.testing

from tests.fake_remote import FakeRemote, FakeServer, FaultPlan
from tests.fakes import HashEmbedder
from triomem import Engine, EngineConfig, NotFound, SyncConfig, run_engine

DEVICES = 3
STEPS = 40
SEEDS = range(200)

Key = tuple[int, str]


def _rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = apsw.Connection(str(path))
    try:
        return [tuple(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


class Scenario:
    def __init__(self, seed: int, tmp: Path) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.server = FakeServer()
        self.links = [FakeRemote(self.server, FaultPlan(
            seed=seed * 10 + i, drop_request=0.05, drop_ack=0.1, duplicate=0.1,
            partial_page=0.2)) for i in range(DEVICES)]
        self.paths = [tmp / f"device{i}.db" for i in range(DEVICES)]
        self.engines: list[Engine] = []
        # every acknowledged write: (device, id, key, content or None for a forget)
        self.acked: list[tuple[int, str, Key, str | None]] = []

    def config(self, i: int) -> EngineConfig:
        return EngineConfig(embedder=HashEmbedder(dim=16), executor="inline",
                            remote=self.links[i],
                            sync=SyncConfig(seed=self.seed, interval=5.0, backoff_cap=30.0,
                                            push_batch=5, pull_page=4))

    async def start(self, nursery: trio.Nursery, i: int) -> Engine:
        engine: Engine = await nursery.start(run_engine, self.paths[i], self.config(i))
        return engine

    def version_of(self, i: int, memory_id: str) -> Key:
        [(hlc, origin)] = _rows(self.paths[i], "SELECT hlc, origin FROM memories WHERE id = ?",
                                (memory_id,))
        return (hlc, origin)

    async def known(self, i: int) -> list[str]:
        return [m.id for m in (await self.engines[i].list(limit=1000)).memories]

    async def step(self, n: int, nursery: trio.Nursery) -> None:
        i = self.rng.randrange(DEVICES)
        engine = self.engines[i]
        roll = self.rng.random()
        if roll < 0.30:
            m = (await engine.remember(f"seed {self.seed} op {n} by device {i}")).memory
            self.acked.append((i, m.id, (m.version, m.origin), m.content))
        elif roll < 0.65:
            known = await self.known(i)
            if not known:
                return
            target = self.rng.choice(known)
            try:
                if roll < 0.55:
                    m = await engine.update(target, content=f"seed {self.seed} op {n} edit by {i}")
                    self.acked.append((i, m.id, (m.version, m.origin), m.content))
                elif await engine.forget(target):
                    self.acked.append((i, target, self.version_of(i, target), None))
            except NotFound:
                pass  # forgotten by a pull between listing and writing
        elif roll < 0.80:
            with trio.move_on_after(30):
                await engine.sync_now()
        elif roll < 0.85:
            self.links[i].plan.partitioned = True
        elif roll < 0.90:
            self.links[i].plan.partitioned = False
        elif roll < 0.95:
            await engine.aclose()
            self.engines[i] = await self.start(nursery, i)
        else:
            await trio.sleep(self.rng.uniform(0, 20))

    def check(self) -> None:
        winners: dict[str, tuple[Key, str | None]] = {}
        for _, memory_id, key, content in self.acked:
            if memory_id not in winners or key > winners[memory_id][0]:
                winners[memory_id] = (key, content)
        kept: set[tuple[str, Key]] = {(v.id, v.key) for v in self.server.history}
        for path in self.paths:
            state = {r[0]: ((r[1], r[2]), r[3]) for r in _rows(
                path, "SELECT id, hlc, origin, content FROM memories")}
            assert state == winners, "a replica differs from the last-writer-wins oracle"
            assert _rows(path, "SELECT count(*) FROM sync_outbox") == [(0,)], "outbox not empty"
            kept |= {(r[0], (r[1], r[2])) for r in _rows(
                path, "SELECT memory_id, hlc, origin FROM sync_conflict")}
        for device, memory_id, key, _ in self.acked:
            later_here = any(d == device and m == memory_id and k > key
                             for d, m, k, _ in self.acked)
            assert key == winners[memory_id][0] or (memory_id, key) in kept or later_here, \
                f"acknowledged write {memory_id}@{key} vanished"


async def _run(seed: int, tmp: Path) -> None:
    scenario = Scenario(seed, tmp)
    async with trio.open_nursery() as nursery:
        scenario.engines = [await scenario.start(nursery, i) for i in range(DEVICES)]
        for n in range(STEPS):
            await scenario.step(n, nursery)
        for link in scenario.links:  # heal
            link.plan.partitioned = False
        for _ in range(3):
            for engine in scenario.engines:
                with trio.fail_after(3600):
                    await engine.sync_now()
        for engine in scenario.engines:
            await engine.aclose()
    scenario.check()


@pytest.mark.parametrize("seed", SEEDS)
def test_replicas_converge_to_the_oracle(seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(_run, seed, Path(tmp), clock=trio.testing.MockClock(autojump_threshold=0))
