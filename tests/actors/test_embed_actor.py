"""The embed actor: how it batches concurrent callers, and the embed-then-store handoff."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio
import trio.testing

from tests.fakes import HashEmbedder
from triomem import Engine, EngineClosed, EngineConfig, Remembered, open_engine
from triomem.actors._embed import EmbedActor, EmbedHandle
from triomem.actors._executor import InlineExecutor
from triomem.embedders import Vectors


async def _burst(handle: EmbedHandle, n: int) -> None:
    async with trio.open_nursery() as callers:
        for i in range(n):
            callers.start_soon(handle.embed, [f"text number {i}"])


async def test_a_fast_models_burst_stays_one_batch_with_two_workers() -> None:
    # Two workers each waiting on the channel used to get one request apiece, so a burst
    # became a batch of one plus the rest, and the lone batch repeated every round.
    embedder = HashEmbedder()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(EmbedActor(embedder, InlineExecutor(), workers=2,
                                                max_batch=64).run)
        await _burst(handle, 10)
        await handle.aclose()
    assert embedder.batches == [10]


@attrs.define(eq=False)
class SlowEmbedder:
    """Takes ``seconds_per_text`` of (virtual) time per text."""

    clock: trio.testing.MockClock
    seconds_per_text: float
    inner: HashEmbedder = attrs.field(factory=HashEmbedder)

    model_id = "test:slow"
    dim = 64

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.clock.jump(self.seconds_per_text * len(texts))
        return self.inner.embed(texts)


async def test_a_slow_models_burst_is_spread_over_the_free_workers(
        mock_clock: trio.testing.MockClock) -> None:
    embedder = SlowEmbedder(mock_clock, 0.010)
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(EmbedActor(embedder, InlineExecutor(), workers=2,
                                                max_batch=64).run)
        await handle.embed(["one text, to learn the model's speed"])
        await _burst(handle, 10)
        await handle.aclose()
    first, *burst = embedder.inner.batches
    # Each dispatch takes its share of the queue over the workers free at that moment.
    assert (first, sum(burst), max(burst)) == (1, 10, 5) and len(burst) > 1


async def test_a_burst_larger_than_max_batch_is_cut_into_full_batches() -> None:
    embedder = HashEmbedder()
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(EmbedActor(embedder, InlineExecutor(), workers=2,
                                                max_batch=4).run)
        await _burst(handle, 10)
        await handle.aclose()
    assert embedder.batches == [4, 4, 2]


async def test_concurrent_remembers_reach_the_store_as_one_batch(db_path: Path) -> None:
    embedder = HashEmbedder()
    config = EngineConfig(embedder=embedder, executor="inline", embed_workers=2,
                          embed_max_batch=64)
    async with open_engine(db_path, config) as engine:
        before = (await engine.statistics()).store
        async with trio.open_nursery() as nursery:
            for i in range(12):
                nursery.start_soon(engine.remember, f"memory number {i}")
        after = (await engine.statistics()).store
    assert embedder.batches == [12]
    assert (after.batches - before.batches, after.largest_batch) == (1, 12)


@attrs.define(eq=False)
class GatedEmbedder:
    """Blocks inside ``embed`` (on its worker thread) until released."""

    inner: HashEmbedder = attrs.field(factory=HashEmbedder)
    entered: threading.Event = attrs.field(factory=threading.Event)
    release: threading.Event = attrs.field(factory=threading.Event)

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.entered.set()
        self.release.wait(30)
        return self.inner.embed(texts)


async def _until_embedding(embedder: GatedEmbedder) -> None:
    with trio.fail_after(30):
        await trio.to_thread.run_sync(embedder.entered.wait)


async def test_a_remember_cancelled_while_its_text_is_embedded_is_never_stored(
        db_path: Path) -> None:
    embedder = GatedEmbedder()
    async with open_engine(db_path, EngineConfig(embedder=embedder)) as engine:
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def remember() -> None:
                with scope:
                    await engine.remember("a write whose caller gives up")

            nursery.start_soon(remember)
            await _until_embedding(embedder)
            scope.cancel()
        embedder.release.set()
        assert (await engine.remember("a later write")).created
        contents = [m.content for m in (await engine.list()).memories]
    assert contents == ["a later write"]


async def test_writes_being_embedded_when_the_engine_closes_are_committed(
        db_path: Path) -> None:
    embedder = GatedEmbedder()
    results: list[Remembered | BaseException] = []

    async def remember(engine: Engine, text: str) -> None:
        try:
            results.append(await engine.remember(text))
        except EngineClosed as exc:
            results.append(exc)

    async with open_engine(db_path, EngineConfig(embedder=embedder)) as engine, \
            trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(remember, engine, f"in flight at close {i}")
        await _until_embedding(embedder)
        nursery.start_soon(engine.aclose)
        await trio.testing.wait_all_tasks_blocked()  # aclose waits on the embed actor
        embedder.release.set()
    assert all(isinstance(r, Remembered) and r.created for r in results), results
    async with open_engine(db_path, EngineConfig(embedder=embedder.inner)) as engine:
        assert len((await engine.list()).memories) == 5
