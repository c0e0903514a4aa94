"""The embed actor: how it batches concurrent callers, and the embed-then-store handoff."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import attrs
import trio
import trio.testing

from tests.fakes import GateEmbedder, HashEmbedder
from triomem import Engine, EngineClosed, EngineConfig, Remembered, open_engine
from triomem.actors._embed import EmbedActor
from triomem.actors._executor import InlineExecutor
from triomem.embedders import Embedder, Vectors


async def _burst(embedder: Embedder, *, workers: int = 2, max_batch: int = 64,
                 learn_speed: bool = False) -> None:
    """Ten callers at once, each embedding one text, through an actor of its own."""
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(EmbedActor(embedder, InlineExecutor(), workers=workers,
                                                max_batch=max_batch).run)
        if learn_speed:
            await handle.embed(["one text, to learn the model's speed"])
        async with trio.open_nursery() as callers:
            for i in range(10):
                callers.start_soon(handle.embed, [f"text number {i}"])
        await handle.aclose()


async def test_a_fast_models_burst_stays_one_batch_with_two_workers() -> None:
    # Two workers each waiting on the channel used to get one request apiece, so a burst
    # became a batch of one plus the rest, and the lone batch repeated every round.
    embedder = HashEmbedder()
    await _burst(embedder)
    assert embedder.batches == [10]


@attrs.define(eq=False)
class SlowEmbedder(HashEmbedder):
    """Takes ``seconds_per_text`` of (virtual) time per text."""

    clock: trio.testing.MockClock | None = None
    seconds_per_text: float = 0.0

    def embed(self, texts: Sequence[str]) -> Vectors:
        assert self.clock is not None
        self.clock.jump(self.seconds_per_text * len(texts))
        return super().embed(texts)


async def test_a_slow_models_burst_is_spread_over_the_free_workers(
        mock_clock: trio.testing.MockClock) -> None:
    embedder = SlowEmbedder(clock=mock_clock, seconds_per_text=0.010)
    await _burst(embedder, learn_speed=True)
    first, *burst = embedder.batches
    # Each dispatch takes its share of the queue over the workers free at that moment.
    assert (first, sum(burst), max(burst)) == (1, 10, 5) and len(burst) > 1


async def test_a_burst_larger_than_max_batch_is_cut_into_full_batches() -> None:
    embedder = HashEmbedder()
    await _burst(embedder, max_batch=4)
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


async def test_a_remember_cancelled_while_its_text_is_embedded_is_never_stored(
        db_path: Path) -> None:
    embedder = GateEmbedder()
    async with open_engine(db_path, EngineConfig(embedder=embedder)) as engine:
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def remember() -> None:
                with scope:
                    await engine.remember("HOLD: a write whose caller gives up")

            nursery.start_soon(remember)
            await embedder.wait_entered()
            scope.cancel()
        embedder.release()
        assert (await engine.remember("a later write")).created
        contents = [m.content for m in (await engine.list()).memories]
    assert contents == ["a later write"]


async def test_writes_being_embedded_when_the_engine_closes_are_committed(
        db_path: Path) -> None:
    embedder = GateEmbedder()
    results: list[Remembered | BaseException] = []

    async def remember(engine: Engine, text: str) -> None:
        try:
            results.append(await engine.remember(text))
        except EngineClosed as exc:
            results.append(exc)

    async with open_engine(db_path, EngineConfig(embedder=embedder)) as engine, \
            trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(remember, engine, f"HOLD: in flight at close {i}")
        await embedder.wait_entered()
        nursery.start_soon(engine.aclose)
        await trio.testing.wait_all_tasks_blocked()  # aclose waits on the embed actor
        embedder.release()
    assert all(isinstance(r, Remembered) and r.created for r in results), results
    async with open_engine(db_path, EngineConfig(embedder=embedder.inner)) as engine:
        assert len((await engine.list()).memories) == 5


@attrs.define(eq=False)
class ThreadRecordingEmbedder(HashEmbedder):
    """Records the thread each batch ran on; opts into inline batches up to 40 characters."""

    threads: list[int] = attrs.field(factory=list)
    inline_chars: int = 40

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.threads.append(threading.get_ident())
        return super().embed(texts)


async def test_small_batches_of_an_inline_model_run_on_the_trio_thread(db_path: Path) -> None:
    embedder = ThreadRecordingEmbedder()
    async with open_engine(db_path, EngineConfig(embedder=embedder)) as engine:
        await engine.remember("short")  # 5 characters: inline
        await engine.remember("a memory longer than the forty characters allowed inline")
        assert (await engine.get((await engine.remember("short")).memory.id)).content == "short"
    trio_thread = threading.get_ident()
    assert embedder.threads[0] == trio_thread and embedder.threads[1] != trio_thread
