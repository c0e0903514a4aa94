"""The sync actor against FakeRemote under the autojump clock, on real SQLite files."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.fake_remote import FakeRemote, FakeServer, FaultPlan
from tests.fakes import HashEmbedder
from triomem import EngineConfig, InvalidMemory, SyncConfig, open_engine


def _config(remote: FakeRemote, **sync: object) -> EngineConfig:
    return EngineConfig(embedder=HashEmbedder(), executor="inline", remote=remote,
                        sync=SyncConfig(seed=1, **sync))  # type: ignore[arg-type]


async def test_two_devices_converge_through_the_remote(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    async with open_engine(tmp_path / "a.db", _config(FakeRemote(server))) as a, \
            open_engine(tmp_path / "b.db", _config(FakeRemote(server))) as b:
        made = (await a.remember("written on device a", tags=["x"])).memory
        with trio.fail_after(60):
            await a.sync_now()
            await b.sync_now()
        copy = await b.get(made.id)
        assert (copy.content, copy.tags, copy.version, copy.origin) == \
            (made.content, made.tags, made.version, made.origin)
        assert (await b.recall("written on device a")).hits[0].memory.id == made.id
        await b.forget(made.id)
        with trio.fail_after(60):
            await b.sync_now()
            await a.sync_now()
        with pytest.raises(Exception, match="no memory"):
            await a.get(made.id)
        status = await a.sync_status()
        assert (status.outbox, status.state, status.dead_letters) == (0, "idle", 0)


async def test_partition_backs_off_then_drains_the_outbox(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    link = FakeRemote(server, FaultPlan(partitioned=True))
    async with open_engine(tmp_path / "a.db", _config(link, backoff_cap=60.0)) as a:
        for i in range(30):
            await a.remember(f"written while offline {i}")
        await trio.sleep(600)  # ten virtual minutes of retries
        status = await a.sync_status()
        assert status.outbox == 30
        assert status.state == "backoff"
        assert status.failures > 3
        assert status.retry_in is not None
        assert status.retry_in <= 60.0
        assert server.state() == {}
        link.plan.partitioned = False
        with trio.fail_after(120):
            await a.sync_now()
        assert (await a.sync_status()).outbox == 0
        assert len(server.state()) == 30


async def test_lost_acks_and_duplicates_are_harmless(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    link = FakeRemote(server, FaultPlan(seed=3, drop_ack=0.5, duplicate=0.5, partial_page=0.5))
    async with open_engine(tmp_path / "a.db", _config(link, push_batch=4, pull_page=3)) as a:
        ids = [(await a.remember(f"memory {i}")).memory.id for i in range(20)]
        with trio.fail_after(600):
            while (await a.sync_status()).outbox:  # noqa: ASYNC110 - polling a status, not an event
                await trio.sleep(10)
        assert set(server.state()) == set(ids)
        assert all(server.rows["default"][i][1].content is not None for i in ids)
    link.plan = FaultPlan()
    async with open_engine(tmp_path / "b.db", _config(FakeRemote(server), pull_page=3)) as b:
        with trio.fail_after(60):
            await b.sync_now()
        assert len((await b.list(limit=100)).memories) == 20


async def test_a_refused_version_is_dead_lettered_not_lost(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    link = FakeRemote(server)
    async with open_engine(tmp_path / "a.db", _config(link)) as a:
        bad = (await a.remember("the remote refuses this one")).memory
        link.plan.permanent_ids.add(bad.id)
        good = (await a.remember("this one is fine")).memory
        with trio.fail_after(60):
            await a.sync_now()
        status = await a.sync_status()
        assert (status.outbox, status.dead_letters) == (0, 1)
        assert set(server.state()) == {good.id}
        assert (await a.get(bad.id)).content == "the remote refuses this one"


async def test_auth_failure_pauses_sync_while_local_work_goes_on(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    link = FakeRemote(server, FaultPlan(auth_failures=1))
    async with open_engine(tmp_path / "a.db", _config(link, backoff_cap=30.0)) as a:
        await a.remember("local work continues")
        await trio.sleep(1)
        status = await a.sync_status()
        assert (status.state, status.paused_reason) == ("paused", "remote_auth")
        assert (await a.remember("still accepted")).created
        with trio.fail_after(120):
            await a.sync_now()  # credentials fixed: the next try goes through
        assert len(server.state()) == 2


async def test_a_clock_far_ahead_is_refused(tmp_path: Path,
                                            autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer(clock_offset_ms=-3_600_000)  # the device is an hour ahead
    async with open_engine(tmp_path / "a.db", _config(FakeRemote(server))) as a:
        await a.remember("not pushed")
        await trio.sleep(1)
        status = await a.sync_status()
        assert status.paused_reason == "clock_skew"
        assert server.state() == {}


async def test_conflicts_keep_the_loser(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    link_a, link_b = FakeRemote(server), FakeRemote(server)
    async with open_engine(tmp_path / "a.db", _config(link_a)) as a, \
            open_engine(tmp_path / "b.db", _config(link_b)) as b:
        shared = (await a.remember("shared note")).memory
        with trio.fail_after(60):
            await a.sync_now()
            await b.sync_now()
        link_a.plan.partitioned = link_b.plan.partitioned = True
        await a.update(shared.id, content="edited on a")
        await trio.sleep(0.01)
        await b.update(shared.id, content="edited on b, later")
        link_a.plan.partitioned = link_b.plan.partitioned = False
        with trio.fail_after(600):
            for engine in (a, b, a, b):
                await engine.sync_now()
        assert (await a.get(shared.id)).content == "edited on b, later"
        assert (await b.get(shared.id)).content == "edited on b, later"
        # a's edit reached the remote first and was replaced there: the remote keeps it
        kept = [c["content"] for c in await a.conflicts()] + \
            [c["content"] for c in await b.conflicts()] + [v.content for v in server.history]
        assert "edited on a" in kept


async def test_outbox_survives_a_restart(tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    server = FakeServer()
    link = FakeRemote(server, FaultPlan(partitioned=True))
    async with open_engine(tmp_path / "a.db", _config(link)) as a:
        await a.remember("queued before the restart")
    link.plan.partitioned = False
    async with open_engine(tmp_path / "a.db", _config(link)) as a:
        with trio.fail_after(60):
            await a.sync_now()
    assert [v.content for v in server.state().values()] == ["queued before the restart"]


async def test_sync_calls_without_a_remote_name_the_field(tmp_path: Path) -> None:
    async with open_engine(tmp_path / "a.db",
                           EngineConfig(embedder=HashEmbedder(), executor="inline")) as a:
        with pytest.raises(InvalidMemory) as info:
            await a.sync_status()
        assert info.value.field == "remote"
