"""The store actor under trio's autojump clock with the inline executor: deterministic.

Another process's write lock is a second real connection holding BEGIN IMMEDIATE on the same
file; the engine's busy timeout is 0 so every attempt fails at once and only the trio clock
(virtual) measures the retry schedule.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import attrs
import pytest
import trio
import trio.testing

from tests.fakes import HashEmbedder
from triomem import (
    EmbedderUnavailable,
    EngineClosed,
    EngineConfig,
    Overloaded,
    RetryPolicy,
    StoreBusy,
    open_engine,
)
from triomem.actors._call import Call, Mailbox
from triomem.actors._db import scalar


@pytest.fixture
def config() -> EngineConfig:
    return EngineConfig(embedder=HashEmbedder(), executor="inline", seed=7, busy_timeout_ms=0,
                        retry=RetryPolicy(interval=0.05, backoff=2.0, max_interval=0.4,
                                          max_retries=5, total_timeout=10.0))


@attrs.define
class Locker:
    """A second connection standing in for another process that holds the write lock."""

    conn: apsw.Connection

    def hold(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("COMMIT")


@pytest.fixture
def locker(db_path: Path) -> Iterator[Locker]:
    conn = apsw.Connection(str(db_path))
    yield Locker(conn)
    if not conn.getautocommit():
        conn.execute("ROLLBACK")
    conn.close()


def _count(db_path: Path) -> int:
    conn = apsw.Connection(str(db_path))
    try:
        count: int = scalar(conn, "SELECT count(*) FROM memories WHERE deleted_at IS NULL")
        return count
    finally:
        conn.close()


async def test_concurrent_writes_share_commits(db_path: Path, config: EngineConfig) -> None:
    async with open_engine(db_path, config) as engine, trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(engine.remember, f"memory number {i}")
    assert _count(db_path) == 50
    async with open_engine(db_path, config) as engine:
        stats = (await engine.statistics()).store
        assert stats.writes_committed == 0  # fresh actor; the file holds the data
    async with open_engine(db_path, config) as engine:
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(engine.remember, f"second round {i}")
        stats = (await engine.statistics()).store
    assert stats.writes_committed == 50
    assert stats.batches < 50
    assert stats.largest_batch > 1


async def test_writes_sent_a_few_scheduling_rounds_apart_share_one_commit(
        db_path: Path, config: EngineConfig, autojump_clock: trio.abc.Clock) -> None:
    # The store lets every task that is ready to run go first: a writer that sends after a
    # few scheduling rounds (as writers just answered by a commit do) joins the same commit.
    async def late_writer(rounds: int) -> None:
        for _ in range(rounds):
            await trio.lowlevel.checkpoint()
        await engine.remember(f"sent after {rounds} rounds")

    async with open_engine(db_path, config) as engine:
        before = (await engine.statistics()).store.batches
        async with trio.open_nursery() as nursery:
            for rounds in range(6):
                nursery.start_soon(late_writer, rounds)
        stats = (await engine.statistics()).store
    assert stats.batches - before == 1
    assert stats.writes_committed == 6


async def test_a_sleeping_writer_does_not_hold_back_a_commit(
        db_path: Path, config: EngineConfig, autojump_clock: trio.abc.Clock) -> None:
    async with open_engine(db_path, config) as engine, trio.open_nursery() as nursery:
        nursery.start_soon(trio.sleep, 1.0)  # a task that will not write any time soon
        start = trio.current_time()
        await engine.remember("committed at once")
        assert trio.current_time() == start  # not after any delay: every task was waiting


async def test_a_busy_task_delays_a_commit_by_at_most_the_commit_delay(db_path: Path) -> None:
    # Real clock: a task that never stops running must not starve the store; its commits wait
    # at most commit_delay (0.002 s here) for the event loop to go quiet.
    config = EngineConfig(embedder=HashEmbedder(), executor="inline")
    spinning = True

    async def spin() -> None:
        with trio.move_on_after(10):
            while spinning:
                await trio.lowlevel.checkpoint()

    async with open_engine(db_path, config) as engine, trio.open_nursery() as nursery:
        nursery.start_soon(spin)
        for i in range(3):
            await engine.remember(f"written beside a busy task {i}")
        assert nursery.child_tasks  # the busy task was still running throughout
        spinning = False
    assert _count(db_path) == 3


async def test_write_waits_for_another_process_then_commits(
        db_path: Path, config: EngineConfig, locker: Locker, autojump_clock: trio.abc.Clock
) -> None:
    async with open_engine(db_path, config) as engine:
        locker.hold()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.remember, "waits for the lock")

            async def release_later() -> None:
                await trio.sleep(0.5)
                locker.release()

            nursery.start_soon(release_later)
        assert trio.current_time() >= 0.5
        stats = (await engine.statistics()).store
        assert stats.busy_retries >= 3
        assert stats.busy_give_ups == 0
        assert stats.writes_committed == 1
    assert _count(db_path) == 1


async def test_raise_mode_gives_up_after_max_retries(
        db_path: Path, config: EngineConfig, locker: Locker, autojump_clock: trio.abc.Clock
) -> None:
    async with open_engine(db_path, config) as engine:
        locker.hold()
        start = trio.current_time()
        with pytest.raises(StoreBusy) as info:
            await engine.remember("never written")
        assert info.value.retries == 5
        # 5 retries of 0.05, 0.1, 0.2, 0.4, 0.4 seconds, each jittered by +/-50%
        assert 0.5 <= trio.current_time() - start <= 1.75
        stats = (await engine.statistics()).store
        assert stats.busy_retries == 6  # failed attempts: the first plus five retries
        assert stats.busy_give_ups == 1
        locker.release()
        assert (await engine.remember("after the lock")).created
    assert _count(db_path) == 1


async def test_queue_mode_keeps_the_write_until_the_total_deadline(
        db_path: Path, config: EngineConfig, locker: Locker, autojump_clock: trio.abc.Clock
) -> None:
    config = attrs.evolve(config, retry=attrs.evolve(config.retry, fail_mode="queue",
                                                     total_timeout=5.0))
    async with open_engine(db_path, config) as engine:
        locker.hold()
        start = trio.current_time()
        with pytest.raises(StoreBusy):
            await engine.remember("never written")
        waited = trio.current_time() - start
        assert 5.0 <= waited <= 5.0 + 0.4 * 1.5
        stats = (await engine.statistics()).store
        assert stats.busy_retries > 5  # more than max_retries: queue mode ignores it
        # a write queued long enough still commits when the lock goes within the deadline
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.remember, "patient write")
            await trio.sleep(3.0)
            locker.release()
    assert _count(db_path) == 1


async def test_reads_are_served_while_writes_wait_for_the_lock(
        db_path: Path, config: EngineConfig, locker: Locker, autojump_clock: trio.abc.Clock
) -> None:
    async with open_engine(db_path, config) as engine:
        stored = await engine.remember("readable")
        locker.hold()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(engine.remember, "pending")
            await trio.sleep(0.01)
            before = trio.current_time()
            assert (await engine.get(stored.memory.id)).content == "readable"
            assert trio.current_time() - before < 0.05  # not queued behind the write
            locker.release()


async def test_a_write_cancelled_while_queued_is_never_applied(
        db_path: Path, config: EngineConfig, locker: Locker, autojump_clock: trio.abc.Clock
) -> None:
    async with open_engine(db_path, config) as engine:
        locker.hold()
        with trio.move_on_after(0.2) as scope:
            await engine.remember("abandoned")
        assert scope.cancelled_caught
        locker.release()
        await engine.remember("kept")
    conn = apsw.Connection(str(db_path))
    contents = [r[0] for r in conn.execute("SELECT content FROM memories")]
    conn.close()
    assert contents == ["kept"]


async def test_shutdown_commits_queued_writes_before_closing(
        db_path: Path, config: EngineConfig, locker: Locker, autojump_clock: trio.abc.Clock
) -> None:
    acknowledged: list[str] = []
    async with open_engine(db_path, config) as engine:
        locker.hold()

        async def write(i: int) -> None:
            acknowledged.append((await engine.remember(f"queued {i}")).memory.id)

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(write, i)
            await trio.sleep(0.1)

            async def release_later() -> None:
                await trio.sleep(0.5)
                locker.release()

            nursery.start_soon(release_later)
            await engine.aclose()  # shutdown while all ten wait for the lock
        with pytest.raises(EngineClosed):
            await engine.remember("too late")
    assert len(acknowledged) == 10
    assert _count(db_path) == 10


async def test_shutdown_with_the_lock_never_released_answers_every_writer(
        db_path: Path, config: EngineConfig, locker: Locker, autojump_clock: trio.abc.Clock
) -> None:
    outcomes: list[str] = []
    async with open_engine(db_path, config) as engine:
        locker.hold()

        async def write(i: int) -> None:
            try:
                await engine.remember(f"queued {i}")
                outcomes.append("ok")
            except StoreBusy:
                outcomes.append("busy")

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(write, i)
            await trio.sleep(0.01)
            await engine.aclose()
    assert outcomes == ["busy"] * 5
    locker.release()
    assert _count(db_path) == 0


async def test_idle_checkpoint_truncates_the_wal(
        db_path: Path, config: EngineConfig, autojump_clock: trio.abc.Clock) -> None:
    async with open_engine(db_path, config) as engine:
        for i in range(20):
            await engine.remember(f"memory {i}")
        assert (await engine.statistics()).store.wal_bytes > 0
        await trio.sleep(config.idle_checkpoint_after + 0.5)
        stats = (await engine.statistics()).store
        assert stats.checkpoints >= 1
        assert stats.last_checkpoint is not None
        assert stats.last_checkpoint.mode == "truncate"
        assert stats.wal_bytes == 0


async def test_embedder_failure_writes_nothing(db_path: Path) -> None:
    embedder = HashEmbedder(fail_next=1)
    config = EngineConfig(embedder=embedder, executor="inline")
    async with open_engine(db_path, config) as engine:
        with pytest.raises(EmbedderUnavailable):
            await engine.remember("first")
        assert (await engine.remember("second")).created
        assert (await engine.statistics()).embed.failures == 1
    assert _count(db_path) == 1


async def test_try_call_refuses_instead_of_waiting_when_the_mailbox_is_full() -> None:
    send, receive = trio.open_memory_channel[object](1)
    mailbox: Mailbox[str] = Mailbox(send)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(mailbox.try_call, "fills the mailbox")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Overloaded):
            await mailbox.try_call("no room")
        nursery.cancel_scope.cancel()
    receive.close()
    with pytest.raises(EngineClosed):
        await mailbox.call("closed")


async def test_a_call_handed_on_to_a_closed_mailbox_fails_instead_of_hanging() -> None:
    send, receive = trio.open_memory_channel[object](1)
    mailbox: Mailbox[str] = Mailbox(send)
    receive.close()
    handed_on: Call[str] = Call("a write the embed actor completed")
    await mailbox.forward(handed_on)
    assert handed_on.done.is_set() and handed_on.result is not None
    with pytest.raises(EngineClosed):
        handed_on.result.unwrap()


async def test_wal_stays_bounded_under_constant_load(db_path: Path) -> None:
    """No idle moment at all: autocheckpoint and journal_size_limit alone bound the WAL."""
    config = EngineConfig(embedder=HashEmbedder(), executor="inline",
                          wal_autocheckpoint_pages=100, journal_size_limit_bytes=512 * 1024)
    largest = 0
    async with open_engine(db_path, config) as engine:
        for round_ in range(40):
            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(engine.remember, f"round {round_} memory {i} " * 8)
            largest = max(largest, (await engine.statistics()).store.wal_bytes)
        stats = (await engine.statistics()).store
    assert stats.writes_committed == 2000
    assert stats.checkpoints == 0  # never idle: the bound came from autocheckpoint
    assert 0 < largest < 2 * 1024 * 1024


@attrs.frozen
class _SlowRead:
    """A read that would run for minutes: a recursive CTE counting to a billion."""

    def run(self, conn: apsw.Connection) -> int:
        value: int = scalar(conn, "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 "
                                  "FROM c WHERE n < 1000000000) SELECT count(*) FROM c")
        return value


async def test_a_read_past_its_deadline_is_interrupted_in_sqlite(db_path: Path) -> None:
    from triomem.actors._executor import ThreadExecutor
    from triomem.actors._sql_read import ReadFacts
    from triomem.actors._store import StoreActor

    actor = StoreActor(str(db_path), "test:hash-8", 8, ThreadExecutor())
    async with trio.open_nursery() as nursery:
        store = await nursery.start(actor.run)
        with trio.fail_after(30):  # a safety net only; the read is interrupted long before
            with trio.move_on_after(0.2) as scope:
                await store.call(_SlowRead())
            assert scope.cancelled_caught
            facts = await store.call(ReadFacts(str(db_path)))  # the actor serves on
        assert facts.live_memories == 0
        assert store.statistics().reads_interrupted == 1
        await store.aclose()
