from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes import HashEmbedder
from triomem import Engine, EngineConfig, open_engine

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run the long variants too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="long variant: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "memories.db"


@pytest.fixture
def inline_config() -> EngineConfig:
    """Deterministic: SQL and embedding on the trio thread, the hash embedder, seeded jitter."""
    return EngineConfig(embedder=HashEmbedder(), executor="inline", seed=1)


@pytest.fixture
async def engine(db_path: Path, inline_config: EngineConfig) -> AsyncIterator[Engine]:
    async with open_engine(db_path, inline_config) as engine:
        yield engine
