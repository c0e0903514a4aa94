"""A triomem engine as the hub: devices sync through HubService in process."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.fakes import HashEmbedder
from triomem import EngineConfig, HubService, SyncConfig, open_engine


async def test_devices_sync_through_a_hub_engine(tmp_path: Path,
                                                 autojump_clock: trio.abc.Clock) -> None:
    local = EngineConfig(embedder=HashEmbedder(), executor="inline")
    async with open_engine(tmp_path / "hub.db", local) as hub:
        service = HubService(hub)
        device = EngineConfig(embedder=HashEmbedder(), executor="inline", remote=service,
                              sync=SyncConfig(seed=1))
        async with open_engine(tmp_path / "laptop.db", device) as laptop, \
                open_engine(tmp_path / "desktop.db", device) as desktop:
            note = (await laptop.remember("the hub relays this", tags=["relay"])).memory
            other = (await desktop.remember("written on the desktop", space="work")).memory
            with trio.fail_after(60):
                for engine in (laptop, desktop, laptop):
                    await engine.sync_now()
            assert (await desktop.get(note.id)).tags == ("relay",)
            assert (await laptop.get(other.id)).space == "work"
            assert {m.id for m in (await hub.list(limit=10)).memories} == {note.id, other.id}
            await desktop.forget(note.id)
            with trio.fail_after(60):
                await desktop.sync_now()
                await laptop.sync_now()
            hits = (await laptop.recall("the hub relays this")).hits
            assert note.id not in [h.memory.id for h in hits]
            remote_hits = await service.search(None, "written on the desktop", None, 5)
            assert [h.version.id for h in remote_hits] == [other.id]


async def test_a_device_sees_hub_only_memories_through_the_remote_leg(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    local = EngineConfig(embedder=HashEmbedder(), executor="inline")
    async with open_engine(tmp_path / "hub.db", local) as hub:
        known = (await hub.remember("only the hub has this memory")).memory
        device = EngineConfig(embedder=HashEmbedder(), executor="inline",
                              remote=HubService(hub), sync=SyncConfig(interval=10**6))
        async with open_engine(tmp_path / "new.db", device) as fresh:
            result = await fresh.recall("only the hub has this memory")
            if result.partial:  # the remote leg runs in the background: retry is cached
                await trio.sleep(1)
                result = await fresh.recall("only the hub has this memory")
            assert known.id in [h.memory.id for h in result.hits]
