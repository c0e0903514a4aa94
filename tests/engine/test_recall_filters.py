"""Recall on a real database: filters against a brute-force oracle, the index against exact
search, and the index following writes made by another connection."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

from tests.fakes import HashEmbedder
from triomem import Engine, EngineConfig, open_engine
from triomem.actors import _store
from triomem.actors._vector_index import VectorChange, VectorIndex

BASE_MS = 1_780_000_000_000
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda"]


async def _seed(engine: Engine, monkeypatch: pytest.MonkeyPatch, n: int) -> list[dict[str, Any]]:
    rng = random.Random(5)
    oracle = []
    for i in range(n):
        created = BASE_MS + i * 3_600_000  # one an hour
        monkeypatch.setattr(_store, "wall_ms", lambda created=created: created)
        tags = sorted(rng.sample(["red", "green", "blue", "work", "home"], rng.randint(0, 3)))
        space = rng.choice(["default", "work"])
        type_ = rng.choice(["note", "fact", "task"])
        content = f"memory {i}: " + " ".join(rng.choices(WORDS, k=6))
        memory = (await engine.remember(content, tags=tags, space=space, type=type_)).memory
        oracle.append({"id": memory.id, "tags": set(tags), "space": space, "type": type_,
                       "created": created})
    monkeypatch.undo()
    return oracle


FILTERS: list[dict[str, Any]] = [
    {"tags_all": ["red", "blue"]},
    {"tags_any": ["red", "blue"]},
    {"space": "work", "type": "fact"},
    {"tags_any": ["home"], "space": "default"},
    {"after": (BASE_MS + 50 * 3_600_000) / 1000, "before": (BASE_MS + 90 * 3_600_000) / 1000},
    {"type": "task", "tags_all": ["green"], "after": (BASE_MS + 20 * 3_600_000) / 1000},
    {},
]


def _matches(row: dict[str, Any], f: dict[str, Any]) -> bool:
    tags: set[str] = row["tags"]
    return (
        set(f.get("tags_all", [])) <= tags
        and (not f.get("tags_any") or bool(tags & set(f["tags_any"])))
        and f.get("space", row["space"]) == row["space"]
        and f.get("type", row["type"]) == row["type"]
        and row["created"] >= float(f.get("after", 0)) * 1000
        and row["created"] < float(f.get("before", 1e18)) * 1000
    )


async def test_recall_and_list_filters_equal_a_brute_force_oracle(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    oracle = await _seed(engine, monkeypatch, 150)
    for f in FILTERS:
        expected = {row["id"] for row in oracle if _matches(row, f)}
        result = await engine.recall("alpha gamma", limit=1000, **f)
        assert {h.memory.id for h in result.hits} == expected, f
        listing = {k.replace("after", "created_after").replace("before", "created_before"): v
                   for k, v in f.items()}
        page = await engine.list(limit=1000, **listing)
        assert {m.id for m in page.memories} == expected, f


async def test_time_phrases_filter_recall(engine: Engine) -> None:
    await engine.remember("written just now")
    assert (await engine.recall("written", after="1 hour ago")).hits
    assert not (await engine.recall("written", before="yesterday")).hits
    assert (await engine.recall("written", after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
            ).hits


def test_vector_index_equals_exact_search() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(32)
    index.apply([VectorChange(i + 1, f"m{i}", i + 1, v.astype("<f4").tobytes())
                 for i, v in enumerate(vectors)])
    forgotten = set(range(0, 3000, 3))
    index.apply([VectorChange(i + 1, f"m{i}", 5000 + i, None) for i in forgotten])
    assert len(index) == 2000
    queries = rng.standard_normal((5, 32)).astype(np.float32)
    allowed = np.arange(1, 3001, 2, dtype=np.int64)  # odd seqs only
    results = index.search(queries, 10, [None, None, allowed, None, allowed])
    for q, got, restrict in zip(queries, results, [False, False, True, False, True],
                                strict=True):
        live = [i for i in range(3000) if i not in forgotten and (not restrict or i % 2 == 0)]
        scores = vectors[live] @ q
        exact = [f"m{live[j]}" for j in np.argsort(-scores)[:10]]
        assert [memory_id for memory_id, _ in got] == exact


async def test_index_follows_writes_from_another_connection(
        db_path: Path, inline_config: EngineConfig, autojump_clock: trio.abc.Clock) -> None:
    """Another engine's writes reach this engine's index within its external refresh
    interval (50 ms): its own writes at once."""
    async with open_engine(db_path, inline_config) as reader, \
            open_engine(db_path, inline_config) as writer:
        assert (await reader.recall("anything")).hits == ()
        stored = (await writer.remember("written by the other engine")).memory
        await trio.sleep(0.05)
        hits = (await reader.recall("written by the other engine")).hits
        assert [h.memory.id for h in hits] == [stored.id]
        await writer.update(stored.id, content="rewritten elsewhere entirely")
        await trio.sleep(0.05)
        hits = (await reader.recall("rewritten elsewhere entirely")).hits
        assert hits[0].memory.content == "rewritten elsewhere entirely"
        assert hits[0].vector_similarity == pytest.approx(1.0, abs=1e-5)
        await writer.forget(stored.id)
        await trio.sleep(0.05)
        assert (await reader.recall("rewritten elsewhere entirely")).hits == ()
        assert (await reader.statistics()).recall.index_size == 0


async def test_recall_after_reembed_reloads_the_index(db_path: Path) -> None:
    from triomem import reembed_database

    small = EngineConfig(embedder=HashEmbedder(dim=32), executor="inline")
    async with open_engine(db_path, EngineConfig(embedder=HashEmbedder(dim=64),
                                                 executor="inline")) as engine:
        await engine.remember("kept across models")
        assert (await engine.recall("kept across models")).hits
    await reembed_database(db_path, HashEmbedder(dim=32), None, small)
    async with open_engine(db_path, small) as engine:
        hits = (await engine.recall("kept across models")).hits
        assert hits[0].vector_similarity == pytest.approx(1.0, abs=1e-5)


async def test_concurrent_recalls_share_index_batches(engine: Engine) -> None:
    for i in range(30):
        await engine.remember(f"fact number {i} about {WORDS[i % len(WORDS)]}")
    results: list[int] = []

    async def one(i: int) -> None:
        results.append(len((await engine.recall(f"fact about {WORDS[i % 5]}")).hits))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    assert len(results) == 20
    assert all(n > 0 for n in results)
