"""Export and import: lossless round trips, idempotence, versions, bad lines."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import HashEmbedder
from triomem import Engine, EngineConfig, open_engine


async def _export(engine: Engine, **kwargs: bool) -> list[dict[str, Any]]:
    return [r async for r in engine.export(**kwargs)]


def _lines(records: list[dict[str, Any]]) -> list[tuple[int, object]]:
    """Through JSON text, as a JSONL file would carry them."""
    return [(i, json.loads(json.dumps(r))) for i, r in enumerate(records, start=1)]


memory_st = st.fixed_dictionaries({
    "content": st.text(min_size=1, max_size=80).filter(lambda t: t.strip() and "\x00" not in t),
    "tags": st.lists(st.text(alphabet="abcdefgh-_:", min_size=1, max_size=8), max_size=4),
    "type": st.sampled_from(["note", "fact", "task"]),
    "space": st.sampled_from(["default", "work"]),
    "metadata": st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5) |
                                st.booleans(), max_size=3),
})


async def _round_trip(memories: list[dict[str, Any]], forget: list[bool]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = EngineConfig(embedder=HashEmbedder(), executor="inline")
        async with open_engine(Path(tmp) / "a.db", config) as source:
            for memory, gone in zip(memories, forget, strict=False):
                stored = await source.remember(memory["content"], tags=memory["tags"],
                                               type=memory["type"], space=memory["space"],
                                               metadata=memory["metadata"])
                if gone and stored.created:
                    await source.forget(stored.memory.id)
            exported = await _export(source, include_forgotten=True)
        async with open_engine(Path(tmp) / "b.db", config) as target:
            report = await target.import_records(_lines(exported))
            assert report.errors == ()
            assert report.imported == len(exported)
            again = await target.import_records(_lines(exported))
            assert (again.imported, again.unchanged) == (0, len(exported))
            def by_id(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return sorted(records, key=lambda r: str(r["id"]))

            assert by_id(await _export(target, include_forgotten=True)) == by_id(exported)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(memory_st, max_size=12), st.lists(st.booleans(), max_size=12))
def test_export_import_round_trip_is_lossless(memories: list[dict[str, Any]],
                                              forget: list[bool]) -> None:
    trio.run(_round_trip, memories, forget, clock=trio.testing.MockClock(autojump_threshold=0))


async def test_vectors_travel_when_the_model_matches(tmp_path: Path) -> None:
    source_embedder, target_embedder = HashEmbedder(), HashEmbedder()
    async with open_engine(tmp_path / "a.db", EngineConfig(embedder=source_embedder,
                                                           executor="inline")) as source:
        for i in range(5):
            await source.remember(f"memory {i}")
        exported = await _export(source, with_vectors=True)
    assert all(r["embedder"] == "test:hash-64" and len(r["vector"]) == 64 for r in exported)
    async with open_engine(tmp_path / "b.db", EngineConfig(embedder=target_embedder,
                                                           executor="inline")) as target:
        assert (await target.import_records(_lines(exported))).imported == 5
        assert target_embedder.calls == 0  # nothing re-embedded
        assert (await target.recall("memory 3")).hits[0].memory.content == "memory 3"


async def test_newer_versions_win_and_local_writes_order_after_imports(
        engine: Engine, tmp_path: Path) -> None:
    stored = (await engine.remember("original text")).memory
    [record] = await _export(engine)
    newer = {**record, "content": "edited elsewhere", "version": record["version"] + 10**6,
             "origin": "another-device"}
    older = {**record, "content": "stale edit", "version": record["version"] - 1}
    report = await engine.import_records([(1, older), (2, newer)])
    assert (report.imported, report.unchanged) == (1, 1)
    current = await engine.get(stored.id)
    assert (current.content, current.origin) == ("edited elsewhere", "another-device")
    assert (await engine.recall("edited elsewhere")).hits[0].memory.id == stored.id
    updated = await engine.update(stored.id, tags=["local"])
    assert updated.version > newer["version"]


async def test_bad_lines_are_reported_and_nothing_is_imported(engine: Engine) -> None:
    records: list[tuple[int, object]] = [
        (1, {"content": "fine"}), (2, ["not", "an", "object"]), (3, {"content": "  "}),
        (4, {"content": "ok", "tags": [5]}), (5, {"content": "x", "id": "abc"}),
        (6, {"content": "also fine", "space": "work"}),
    ]
    report = await engine.import_records(records)
    assert not report.applied
    assert [line for line, _ in report.errors] == [2, 3, 4, 5]
    assert "line 4: tags[0]" in report.errors[2][1]
    assert (await engine.list()).memories == ()
    skipped = await engine.import_records(records, skip_bad=True)
    assert skipped.imported == 2
    assert len(skipped.errors) == 4


async def test_new_records_dedupe_by_content(engine: Engine) -> None:
    await engine.remember("already here")
    report = await engine.import_records([(1, {"content": "already here"}),
                                          (2, {"content": "new one", "tags": ["t"]})])
    assert (report.imported, report.unchanged) == (1, 1)
