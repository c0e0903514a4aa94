"""The RemoteBackend contract suite (tests/remote/contract.py) against the FakeRemote and
against a hub engine in process; tests/remote runs it against PostgreSQL."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from tests.fake_remote import FakeRemote, FakeServer
from tests.fakes import HashEmbedder
from tests.remote.contract import ContractHarness, RemoteContract
from triomem import EngineConfig, HubService, RemoteBackend, open_engine

DIM, MODEL = 8, "test-model-8"


@attrs.define
class FakeHarness:
    server: FakeServer = attrs.field(factory=FakeServer)
    dim: int = DIM
    model: str | None = MODEL
    max_skew_ms: int = 300_000

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[RemoteBackend]:
        yield FakeRemote(self.server)

    async def require_protocol(self, min_protocol: int) -> None:
        self.server.min_protocol = min_protocol


@attrs.define
class HubHarness:
    path: Path
    dim: int = DIM
    model: str | None = MODEL
    max_skew_ms: int = 300_000
    min_protocol: int = 1
    services: list[HubService] = attrs.field(factory=list)

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[RemoteBackend]:
        config = EngineConfig(embedder=HashEmbedder(dim=DIM, name=MODEL), executor="inline")
        async with open_engine(self.path, config) as hub:
            service = HubService(hub, self.max_skew_ms, self.min_protocol)
            self.services.append(service)
            yield service

    async def require_protocol(self, min_protocol: int) -> None:
        self.min_protocol = min_protocol
        for service in self.services:
            service.min_protocol = min_protocol


class TestFakeContract(RemoteContract):
    @pytest.fixture
    def harness(self) -> ContractHarness:
        return FakeHarness()


class TestHubContract(RemoteContract):
    @pytest.fixture
    def harness(self) -> ContractHarness:
        tmp = tempfile.mkdtemp()
        return HubHarness(Path(tmp) / "hub.db")
