"""The recall actor under the autojump clock: deadlines, partial answers, the retry cache,
progress and cancellation, with deliberately slow fake legs."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
import trio.testing

from tests.fakes import HashEmbedder
from triomem import (
    Engine,
    EngineConfig,
    LegQuery,
    RecallConfig,
    RecallLeg,
    RecallTimeout,
    open_engine,
)


@attrs.define(eq=False)
class SlowLeg:
    """Answers ``ids`` after ``delay`` seconds (forever when None); records what happened."""

    delay: float | None
    ids: list[str] = attrs.field(factory=list)
    background: bool = False
    name: str = "slow"
    needs_vector: bool = True
    calls: int = 0
    cancelled: int = 0
    finished: int = 0

    async def search(self, query: LegQuery) -> list[tuple[str, float]]:
        self.calls += 1
        try:
            await trio.sleep(self.delay if self.delay is not None else 10**9)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        self.finished += 1
        return [(i, 0.99) for i in self.ids]


async def _engine(db_path: Path, leg: RecallLeg, **recall: float) -> AsyncIterator[Engine]:
    config = EngineConfig(embedder=HashEmbedder(), executor="inline", extra_legs=(leg,),
                          recall=RecallConfig(**recall))  # type: ignore[arg-type]
    async with open_engine(db_path, config) as engine:
        yield engine


@pytest.fixture
def slow() -> SlowLeg:
    return SlowLeg(delay=10.0)


@pytest.fixture
async def engine(db_path: Path, slow: SlowLeg) -> AsyncIterator[Engine]:
    async for engine in _engine(db_path, slow, deadline=1.0, background_budget=5.0):
        yield engine


async def test_answers_at_the_deadline_with_what_is_ready(
        engine: Engine, slow: SlowLeg, autojump_clock: trio.abc.Clock) -> None:
    stored = (await engine.remember("the deploy runs on tuesday")).memory
    start = trio.current_time()
    result = await engine.recall("deploy tuesday")
    assert trio.current_time() - start <= 1.0
    assert result.partial
    assert set(result.legs_finished) == {"vector", "text"}
    assert result.legs_pending == ("slow",)
    assert [h.memory.id for h in result.hits] == [stored.id]
    assert slow.cancelled == 1  # not a background leg: cut at the deadline
    stats = (await engine.statistics()).recall
    assert (stats.served, stats.partial) == (1, 1)


async def test_the_callers_shorter_deadline_wins(
        engine: Engine, autojump_clock: trio.abc.Clock) -> None:
    await engine.remember("something")
    start = trio.current_time()
    with trio.fail_after(0.3):
        result = await engine.recall("something")
    assert result.partial
    assert trio.current_time() - start <= 0.3


async def test_without_partial_answers_a_typed_retry(
        engine: Engine, autojump_clock: trio.abc.Clock) -> None:
    await engine.remember("something")
    with pytest.raises(RecallTimeout) as info:
        await engine.recall("something", include_partial=False)
    assert info.value.retry_after > 0
    assert "retry in" in str(info.value)


async def test_nothing_ready_is_a_retry_not_a_hang(
        db_path: Path, autojump_clock: trio.abc.Clock) -> None:
    from triomem.actors._embed import EmbedActor
    from triomem.actors._executor import InlineExecutor
    from triomem.actors._recall import RecallActor, RecallRequest
    from triomem.actors._sql_read import MemoryFilter
    from triomem.actors._store import StoreActor

    never = SlowLeg(delay=None)
    embedder = HashEmbedder()
    async with trio.open_nursery() as nursery:
        store = await nursery.start(StoreActor(str(db_path), embedder.model_id, embedder.dim,
                                               InlineExecutor()).run)
        embed = await nursery.start(EmbedActor(embedder, InlineExecutor()).run)
        recall = await nursery.start(RecallActor(store, embed, [never],
                                                 RecallConfig(deadline=0.2)).run)
        start = trio.current_time()
        with pytest.raises(RecallTimeout):
            await recall.recall(RecallRequest("x", 5, MemoryFilter()))
        assert trio.current_time() - start <= 0.2
        assert never.cancelled == 1
        assert recall.statistics().timeouts == 1
        for handle in (recall, embed, store):
            await handle.aclose()


async def test_background_leg_result_serves_the_retry(
        db_path: Path, autojump_clock: trio.abc.Clock) -> None:
    remote = SlowLeg(delay=3.0, background=True, name="remote")
    async for engine in _engine(db_path, remote, deadline=1.0, background_budget=5.0,
                                cache_ttl=30.0):
        local = (await engine.remember("a local memory")).memory
        elsewhere = (await engine.remember("known remotely")).memory
        remote.ids = [elsewhere.id]
        first = await engine.recall("anything")
        assert first.partial
        assert first.legs_pending == ("remote",)
        again = await engine.recall("anything")  # the search is still in flight: shared
        assert again.partial
        assert remote.calls == 1
        await trio.sleep(3.0)
        assert remote.finished == 1
        start = trio.current_time()
        retry = await engine.recall("anything")
        assert trio.current_time() == start  # served at once from the cache
        assert not retry.partial
        assert remote.calls == 1
        ranked = [h.memory.id for h in retry.hits]
        assert elsewhere.id in ranked
        assert local.id in ranked
        assert "remote" in next(h for h in retry.hits if h.memory.id == elsewhere.id).legs
        assert (await engine.statistics()).recall.cache_hits == 1


async def test_background_legs_are_bounded_by_their_budget(
        db_path: Path, autojump_clock: trio.abc.Clock) -> None:
    remote = SlowLeg(delay=None, background=True, name="remote")
    async for engine in _engine(db_path, remote, deadline=1.0, background_budget=2.0):
        await engine.recall("anything")
        await trio.sleep(2.5)
        assert remote.cancelled == 1
        assert (await engine.statistics()).recall.background_running == 0


async def test_progress_is_steady_and_strictly_increasing(
        db_path: Path, autojump_clock: trio.abc.Clock) -> None:
    slow = SlowLeg(delay=2.0)
    reports: list[tuple[float, float, float | None]] = []
    async for engine in _engine(db_path, slow, deadline=5.0, progress_after=0.5,
                                progress_every=0.25):
        await engine.remember("something")
        start = trio.current_time()

        def report(p: float, total: float | None, message: str, start: float = start) -> None:
            reports.append((trio.current_time() - start, p, total))

        await engine.recall("something", progress=report)
    values = [p for _, p, _ in reports]
    assert values == sorted(values)
    assert len(set(values)) == len(values)
    times = [t for t, _, _ in reports if t >= 0.5]
    assert times[0] == pytest.approx(0.5)
    assert all(b - a <= 0.25 + 1e-9 for a, b in itertools.pairwise(times))
    assert times[-1] >= 2.0
    assert reports[-1][1] == reports[-1][2]  # the last report is complete: progress == total


async def test_a_cancelled_recall_leaves_no_task_behind(
        engine: Engine, slow: SlowLeg, autojump_clock: trio.abc.Clock) -> None:
    await engine.remember("something")
    with trio.CancelScope() as scope:  # no deadline the actor could see: a plain cancel

        async def cancel_soon() -> None:
            await trio.sleep(0.3)
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_soon)
            await engine.recall("something")
    await trio.testing.wait_all_tasks_blocked()
    assert slow.cancelled == 1
    assert trio.current_time() == pytest.approx(0.3)  # the leg stopped when the caller left
    stats = (await engine.statistics()).recall
    assert stats.running == 0
    assert stats.served == 0


async def test_bad_recall_input_names_the_field(engine: Engine) -> None:
    from triomem import InvalidMemory

    for kwargs, field in [({"query": ""}, "query"), ({"query": "x", "limit": 0}, "limit"),
                          ({"query": "x", "min_score": 2}, "min_score"),
                          ({"query": "x", "after": "someday"}, "after"),
                          ({"query": "x", "tags_any": "ui"}, "tags_any"),
                          ({"query": "x", "space": "not valid"}, "space")]:
        with pytest.raises(InvalidMemory) as info:
            await engine.recall(**kwargs)  # type: ignore[arg-type]
        assert info.value.field == field
