"""The public engine API on a real file, deterministic (inline executor, hash embedder)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fakes import HashEmbedder
from triomem import (
    DuplicateContent,
    EmbedderMismatch,
    Engine,
    EngineConfig,
    InvalidMemory,
    NotFound,
    StoreCorrupt,
    open_engine,
    reembed_database,
)


async def test_remember_returns_the_existing_memory_for_duplicates(engine: Engine) -> None:
    first = await engine.remember("the user prefers dark mode", tags=["ui"],
                                  metadata={"source": "chat"})
    again = await engine.remember("the user prefers dark mode", tags=["other"])
    elsewhere = await engine.remember("the user prefers dark mode", space="work")
    assert first.created and not again.created and elsewhere.created
    assert again.memory == first.memory
    assert first.memory.metadata == {"source": "chat"}
    page = await engine.list()
    assert len(page.memories) == 2


async def test_a_new_memory_is_answered_exactly_as_it_reads_back(engine: Engine) -> None:
    """remember() builds its answer from what it wrote instead of reading the row back."""
    made = await engine.remember(
        "  café ☕ notes\nline two  ", tags=["b", "a", "ünï"], type="fact", space="work.x",
        metadata={"n": 1, "f": 0.5, "nested": {"list": [1, "two", None, True]}, "e": ""},
        idempotency_key="k-1")
    assert made.created
    assert made.memory == await engine.get(made.memory.id)
    plain = await engine.remember("no tags, no metadata")
    assert plain.memory == await engine.get(plain.memory.id)


async def test_idempotency_key_makes_retries_safe(engine: Engine) -> None:
    a = await engine.remember("first text", idempotency_key="req-1")
    b = await engine.remember("retried with other text", idempotency_key="req-1")
    assert b.memory.id == a.memory.id and not b.created
    assert len((await engine.list()).memories) == 1


async def test_update_changes_only_what_is_given(engine: Engine) -> None:
    stored = (await engine.remember("alpha", tags=["a"], type="fact")).memory
    updated = await engine.update(stored.id, tags=["b", "c"])
    assert (updated.content, updated.tags, updated.type) == ("alpha", ("b", "c"), "fact")
    assert updated.version > stored.version
    assert updated.created_at == stored.created_at
    changed = await engine.update(stored.id, content="beta", metadata={"k": 1})
    assert (changed.content, changed.metadata) == ("beta", {"k": 1})
    hits = (await engine.recall("beta")).hits
    assert hits and hits[0].memory.id == stored.id
    other = (await engine.remember("gamma")).memory
    with pytest.raises(DuplicateContent) as info:
        await engine.update(other.id, content="beta")
    assert info.value.existing_id == stored.id
    with pytest.raises(InvalidMemory, match="nothing to update"):
        await engine.update(other.id)


async def test_forget_tombstones(engine: Engine) -> None:
    stored = (await engine.remember("forget me", tags=["x"])).memory
    assert await engine.forget(stored.id) is True
    assert await engine.forget(stored.id) is False
    with pytest.raises(NotFound):
        await engine.get(stored.id)
    with pytest.raises(NotFound):
        await engine.update(stored.id, tags=["y"])
    with pytest.raises(NotFound):
        await engine.forget("01234567-0000-7000-8000-000000000000")
    assert (await engine.list(tags_any=["x"])).memories == ()
    assert (await engine.recall("forget me")).hits == ()
    again = await engine.remember("forget me")
    assert again.created and again.memory.id != stored.id
    facts = (await engine.statistics()).database
    assert (facts.live_memories, facts.forgotten_memories) == (1, 1)


async def test_list_filters_by_time_type_and_tags(engine: Engine) -> None:
    a = (await engine.remember("one", type="fact", tags=["x", "y"])).memory
    await trio.sleep(0.01)
    b = (await engine.remember("two", type="task", tags=["y"])).memory
    assert [m.id for m in (await engine.list(type="fact")).memories] == [a.id]
    assert [m.id for m in (await engine.list(tags_all=["x", "y"])).memories] == [a.id]
    assert {m.id for m in (await engine.list(tags_any=["x", "y"])).memories} == {a.id, b.id}
    after_a = a.created_at + dt.timedelta(milliseconds=1)
    assert [m.id for m in (await engine.list(created_after=after_a)).memories] == [b.id]
    assert [m.id for m in (await engine.list(created_before=after_a)).memories] == [a.id]
    assert (await engine.list(created_after=b.created_at.timestamp() + 1)).memories == ()


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("remember", {"content": ""}, "content"),
    ("remember", {"content": "   "}, "content"),
    ("remember", {"content": "x" * (64 * 1024 + 1)}, "content"),
    ("remember", {"content": "ok", "tags": [1]}, "tags[0]"),
    ("remember", {"content": "ok", "tags": "ui"}, "tags"),
    ("remember", {"content": "ok", "tags": [f"t{i}" for i in range(33)]}, "tags"),
    ("remember", {"content": "ok", "space": "no spaces allowed"}, "space"),
    ("remember", {"content": "ok", "type": ""}, "type"),
    ("remember", {"content": "ok", "metadata": ["not", "an", "object"]}, "metadata"),
    ("remember", {"content": "ok", "metadata": {"x": math.inf}}, "metadata"),
    ("remember", {"content": "ok", "vector": [math.nan] * 64}, "vector"),
    ("remember", {"content": "ok", "vector": [math.inf] + [0.0] * 63}, "vector"),
    ("remember", {"content": "ok", "vector": [1.0] * 3}, "vector"),
    ("remember", {"content": "ok", "vector": [0.0] * 64}, "vector"),
    ("remember", {"content": "ok", "idempotency_key": ""}, "idempotency_key"),
    ("list", {"limit": 0}, "limit"),
    ("list", {"limit": 5000}, "limit"),
    ("list", {"created_after": dt.datetime(2026, 1, 1)}, "created_after"),
    ("list", {"cursor": "zz"}, "cursor"),
    ("recall", {"query": ""}, "query"),
    ("recall", {"query": "x", "limit": -1}, "limit"),
    ("get", {"memory_id": 42}, "id"),
]


@pytest.mark.parametrize(("method", "kwargs", "field"), BAD_CALLS)
async def test_bad_input_names_the_field_and_writes_nothing(
        engine: Engine, method: str, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMemory) as info:
        await getattr(engine, method)(**kwargs)
    assert info.value.field == field
    facts = (await engine.statistics()).database
    assert facts.live_memories + facts.forgotten_memories == 0


async def test_supplied_vectors_are_used_as_given(engine: Engine) -> None:
    vector = [0.0] * 64
    vector[3] = 2.0
    stored = await engine.remember("opaque", vector=vector)
    hits = (await engine.recall("something unrelated entirely")).hits
    assert stored.memory.id in [h.memory.id for h in hits]


async def test_opening_with_another_embedder_is_refused_until_reembedded(db_path: Path) -> None:
    first = EngineConfig(embedder=HashEmbedder(dim=64), executor="inline")
    second = EngineConfig(embedder=HashEmbedder(dim=32), executor="inline")
    async with open_engine(db_path, first) as engine:
        for i in range(150):
            await engine.remember(f"memory about topic {i}")
        await engine.forget((await engine.list(limit=1)).memories[0].id)
    with pytest.raises(EmbedderMismatch) as info:
        async with open_engine(db_path, second):
            pass
    assert "reembed" in str(info.value)
    seen: list[tuple[int, int]] = []
    converted = await reembed_database(db_path, HashEmbedder(dim=32),
                                       lambda done, total: seen.append((done, total)), second)
    assert converted == 149
    assert seen and seen[-1][0] == seen[-1][1]
    async with open_engine(db_path, second) as engine:
        hits = (await engine.recall("memory about topic 7", limit=3)).hits
        assert hits[0].memory.content == "memory about topic 7"
        assert (await engine.statistics()).embedder == "test:hash-32"
    with pytest.raises(EmbedderMismatch):
        async with open_engine(db_path, first):
            pass


async def test_a_running_engine_with_the_old_embedder_stops_writing_after_reembed(
        db_path: Path) -> None:
    old = EngineConfig(embedder=HashEmbedder(dim=64), executor="inline")
    async with open_engine(db_path, old) as engine:
        await engine.remember("before")
        await reembed_database(db_path, HashEmbedder(dim=32), None,
                               EngineConfig(embedder=HashEmbedder(dim=32), executor="inline"))
        with pytest.raises(EmbedderMismatch):
            await engine.remember("after, with stale vectors")
        assert (await engine.list()).memories[0].content == "before"


async def test_a_corrupt_file_is_refused_untouched(tmp_path: Path,
                                                   inline_config: EngineConfig) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my precious notes, not a database\n" * 50)
    before = path.read_bytes()
    with pytest.raises(StoreCorrupt):
        async with open_engine(path, inline_config):
            pass
    assert path.read_bytes() == before


async def test_statistics_report_the_store(engine: Engine) -> None:
    await engine.remember("one")
    stats = await engine.statistics()
    assert stats.database.live_memories == 1
    assert stats.database.schema_version >= 1
    assert stats.store.writes_committed == 1
    assert stats.embed.texts == 1
    assert stats.embedder == "test:hash-64"


async def test_host_nursery_form(db_path: Path, inline_config: EngineConfig) -> None:
    from triomem import run_engine

    async with trio.open_nursery() as nursery:
        engine: Engine = await nursery.start(run_engine, db_path, inline_config)
        await engine.remember("hosted")
        await engine.aclose()
        await engine.aclose()  # idempotent
    async with open_engine(db_path, inline_config) as engine:
        assert (await engine.list()).memories[0].content == "hosted"


HOSTILE: list[tuple[str, dict[str, Any], str]] = [
    ("get", {"memory_id": "\ud800"}, "id"),
    ("forget", {"memory_id": "a\udfffb"}, "id"),
    ("update", {"memory_id": "\ud800", "content": "x"}, "id"),
    ("list", {"tags_all": ["\ud800"]}, "tags_all[0]"),
    ("list", {"tags_any": ["ok", "\udfff"]}, "tags_any[1]"),
    ("recall", {"query": "x", "tags_all": ["\ud800"]}, "tags_all[0]"),
    ("remember", {"content": "x", "tags": ["\ud800"]}, "tags[0]"),
    ("remember", {"content": "x", "idempotency_key": "\ud800"}, "idempotency_key"),
    ("list", {"cursor": "f" * 20}, "cursor"),
    ("list", {"cursor": "-8000000000000001"}, "cursor"),
    ("recall", {"query": "x", "after": "99999999999 days ago"}, "after"),
    ("list", {"updated_before": "99999999 years ago"}, "updated_before"),
]


@pytest.mark.parametrize(("method", "kwargs", "field"), HOSTILE)
async def test_hostile_input_is_typed_and_the_engine_serves_on(
        engine: Engine, method: str, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidMemory) as info:
        await getattr(engine, method)(**kwargs)
    assert info.value.field == field
    assert (await engine.remember("still serving")).created


async def test_metadata_nested_past_the_limit_is_refused(engine: Engine) -> None:
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(5000):  # deeper than Python's own recursion limit
        node["a"] = {}
        node = node["a"]
    with pytest.raises(InvalidMemory) as info:
        await engine.remember("deep", metadata=deep)
    assert info.value.field == "metadata"
    assert (await engine.remember("still serving")).created
