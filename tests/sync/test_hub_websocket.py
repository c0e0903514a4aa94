"""HubRemote over a real WebSocket on 127.0.0.1: the contract suite, devices syncing through
``serve_websocket(hub=True)``, and a refused token."""

from __future__ import annotations

import contextlib
import functools
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from tests.fakes import HashEmbedder
from tests.remote.contract import ContractHarness, RemoteContract
from triomem import DeviceInfo, EngineConfig, HubService, RemoteAuth, SyncConfig, open_engine
from triomem.remotes import remote_from_url
from triomem.remotes.hub import HubRemote
from triomem.transports.websocket import WebSocketOptions, serve_websocket

DIM, MODEL = 8, "test-model-8"


@contextlib.asynccontextmanager
async def hub_server(path: Path, *, token: str | None = None, embedder: HashEmbedder,
                     service: list[HubService] | None = None) -> AsyncIterator[str]:
    config = EngineConfig(embedder=embedder, executor="inline")
    async with open_engine(path, config) as hub, trio.open_nursery() as nursery:
        hub_service = HubService(hub)
        if service is not None:
            service.append(hub_service)
        address = await nursery.start(functools.partial(
            serve_websocket, hub, "127.0.0.1", 0, hub=hub_service,
            options=WebSocketOptions(hub=True, token=token)))
        yield f"ws://127.0.0.1:{address.port}/hub"
        nursery.cancel_scope.cancel()


@attrs.define
class WebSocketHubHarness:
    path: Path
    dim: int = DIM
    model: str | None = MODEL
    max_skew_ms: int = 300_000
    services: list[HubService] = attrs.field(factory=list)

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[HubRemote]:
        async with hub_server(self.path, embedder=HashEmbedder(dim=DIM, name=MODEL),
                              service=self.services) as url:
            yield HubRemote(url)

    async def require_protocol(self, min_protocol: int) -> None:
        for service in self.services:
            service.min_protocol = min_protocol


class TestWebSocketHubContract(RemoteContract):
    @pytest.fixture
    def harness(self) -> ContractHarness:
        return WebSocketHubHarness(Path(tempfile.mkdtemp()) / "hub.db")


async def test_devices_sync_through_a_websocket_hub(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    with trio.fail_after(60):
        async with hub_server(tmp_path / "hub.db", token="s3cret", embedder=embedder) as url:
            device = EngineConfig(embedder=HashEmbedder(), executor="thread",
                                  remote_url=url, remote_token="s3cret",
                                  sync=SyncConfig(seed=1))
            async with open_engine(tmp_path / "a.db", device) as a, \
                    open_engine(tmp_path / "b.db", device) as b:
                made = (await a.remember("across the hub", tags=["x"])).memory
                await a.sync_now()
                await b.sync_now()
                assert (await b.get(made.id)).tags == ("x",)


async def test_a_wrong_token_is_an_auth_error(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with hub_server(tmp_path / "hub.db", token="right",
                              embedder=HashEmbedder()) as url:
            remote = remote_from_url(url, dim=64, model="m", token="wrong")
            with pytest.raises(RemoteAuth):
                await remote.handshake(DeviceInfo("dev", 0))
