from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes import GateEmbedder
from triomem import Engine, EngineConfig, open_engine


@pytest.fixture
def gate() -> GateEmbedder:
    return GateEmbedder()


@pytest.fixture
async def gated_engine(tmp_path: Path, gate: GateEmbedder) -> AsyncIterator[Engine]:
    """A real engine on a real file, threads for SQL and embedding, and a gate to hold one
    embedding mid-call. The gate opens before the engine closes (closing waits for it)."""
    async with open_engine(tmp_path / "gated.db",
                           EngineConfig(embedder=gate, executor="thread")) as engine:
        try:
            yield engine
        finally:
            gate.release()
