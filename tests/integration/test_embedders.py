"""The real embedders: MiniLM against reference vectors, WordLlama offline, HTTP on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import trio

from tests.fakes import HashEmbedder
from triomem import EmbedderUnavailable, EngineConfig, open_engine
from triomem.embedders.http import HttpEmbedder
from triomem.embedders.minilm import MiniLM
from triomem.embedders.wordllama import WordLlamaEmbedder

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM.load()


def test_minilm_matches_the_reference_implementation(minilm: MiniLM) -> None:
    reference = json.loads(REFERENCE.read_text())
    texts = [item["text"] for item in reference["items"]]
    expected = np.array([item["vector"] for item in reference["items"]], dtype=np.float32)
    batched = minilm.embed(texts)
    one_by_one = np.stack([minilm.embed([t])[0] for t in texts])
    for got in (batched, one_by_one):
        cosines = (got * expected).sum(axis=1) / np.linalg.norm(expected, axis=1)
        assert cosines.min() >= 0.999999, cosines
    assert any(len(t) > 1000 for t in texts)  # the truncation case is covered


def test_minilm_ranks_paraphrases_above_distractors(minilm: MiniLM) -> None:
    docs = minilm.embed(["The user prefers dark mode in every code editor.",
                         "The deployment runs every Tuesday after standup."])
    query = minilm.embed(["Which color theme does the user like?"])[0]
    assert query @ docs[0] > query @ docs[1]


def test_wordllama_loads_offline_and_normalises() -> None:
    embedder = WordLlamaEmbedder.load()
    vectors = embedder.embed(["hello world", "a completely different sentence"])
    assert vectors.shape == (2, 256)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


class _Handler(BaseHTTPRequestHandler):
    fake = HashEmbedder(dim=48)
    mode = "ok"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.mode == "slow":
            time.sleep(2)
        if self.mode == "broken":
            payload: object = {"data": [{"index": 0, "embedding": ["x"]}]}
        else:
            vectors = self.fake.embed(body["input"])
            payload = {"data": [{"index": i, "embedding": v.tolist()}
                                for i, v in reversed(list(enumerate(vectors)))],
                       "model": body["model"]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    _Handler.mode = "ok"
    server.shutdown()
    server.server_close()


def test_http_embedder_probes_dimension_and_orders_by_index(endpoint: str) -> None:
    embedder = HttpEmbedder.connect(endpoint, "fake-model")
    assert embedder.dim == 48
    assert embedder.model_id == "http:fake-model@48"
    vectors = embedder.embed(["alpha beta", "gamma"])
    assert np.allclose(vectors, _Handler.fake.embed(["alpha beta", "gamma"]), atol=1e-6)


def test_http_embedder_failures_are_typed_and_bounded(endpoint: str) -> None:
    embedder = HttpEmbedder.connect(endpoint, "fake-model", dim=48, timeout=0.3)
    _Handler.mode = "slow"
    started = time.monotonic()
    with pytest.raises(EmbedderUnavailable, match="no answer"):
        embedder.embed(["x"])
    assert time.monotonic() - started < 1.5
    _Handler.mode = "broken"
    with pytest.raises(EmbedderUnavailable):
        embedder.embed(["x"])


async def test_engine_with_threads_and_the_real_default_embedder(tmp_path: Path) -> None:
    """Integration: the production executor and the default model, end to end."""
    async with open_engine(tmp_path / "m.db", EngineConfig(embedder="minilm")) as engine:
        facts = [
            "The user prefers dark mode in every code editor.",
            "Deployments happen on Tuesdays after the standup meeting.",
            "The staging database password rotates every 30 days.",
            "Alice is the on-call engineer this week.",
        ]
        async with trio.open_nursery() as nursery:
            for fact in facts:
                nursery.start_soon(engine.remember, fact)
        hits = (await engine.recall("which colour theme does the user like?", limit=2)).hits
        assert hits[0].memory.content == facts[0]
        hits = (await engine.recall("who is on call?", limit=1)).hits
        assert hits[0].memory.content == facts[3]
        stats = await engine.statistics()
        assert stats.embedder == "minilm:all-MiniLM-L6-v2"
        assert stats.database.live_memories == 4
