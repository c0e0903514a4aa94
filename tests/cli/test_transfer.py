"""``triomem import`` and ``triomem export``: lossless round trips, broken lines, bad files."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.cli._run import ok, triomem
from tests.fakes import HashEmbedder
from triomem import EngineConfig, open_engine, read_records
from triomem.commands.transfer import _encode

memory_st = st.fixed_dictionaries({
    "content": st.text(min_size=1, max_size=60).filter(
        lambda t: t.strip() and "\x00" not in t and not any(0xD800 <= ord(c) < 0xE000
                                                            for c in t)),
    "tags": st.lists(st.text(alphabet="abcdefgh-_: é", min_size=1, max_size=8).filter(
        str.strip), max_size=3),
    "type": st.sampled_from(["note", "fact", "task"]),
    "space": st.sampled_from(["default", "work"]),
    "metadata": st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8) |
                                st.booleans() | st.none(), max_size=3),
    "forget": st.booleans(),
})


def by_id(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: str(r["id"]))


def jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def _fill(path: Path, memories: list[dict[str, Any]], embedder: Any) -> None:
    async with open_engine(path, EngineConfig(embedder=embedder)) as engine:
        for memory in memories:
            stored = await engine.remember(memory["content"], tags=memory["tags"],
                                           type=memory["type"], space=memory["space"],
                                           metadata=memory["metadata"])
            if memory["forget"] and stored.created:
                await engine.forget(stored.memory.id)


async def _codec_round_trip(memories: list[dict[str, Any]]) -> None:
    """The CLI's JSONL lines (``_encode``) and file reader (``read_records``), in-process."""
    with tempfile.TemporaryDirectory() as tmp:
        config = EngineConfig(embedder=HashEmbedder(), executor="inline")
        await _fill(Path(tmp) / "a.db", memories, config.embedder)
        file = Path(tmp) / "export.jsonl"
        async with open_engine(Path(tmp) / "a.db", config) as source:
            exported = [r async for r in source.export(include_forgotten=True)]
        file.write_bytes(b"".join(_encode(r) for r in exported))
        async with open_engine(Path(tmp) / "b.db", config) as target:
            report = await target.import_records(read_records(file, "jsonl"))
            assert (report.errors, report.imported) == ((), len(exported))
            again = await target.import_records(read_records(file, "jsonl"))
            assert (again.imported, again.unchanged) == (0, len(exported))
            assert by_id([r async for r in target.export(include_forgotten=True)]) == \
                by_id(exported)


def test_a_jsonl_line_survives_readers_that_split_on_unicode_line_breaks() -> None:
    record = {"content": "a\x85b\u2028c\u2029d\ne", "metadata": {"k\u2028": "\x85"}}
    lines = _encode(record).decode("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [record]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(memory_st, max_size=10))
def test_the_cli_jsonl_codec_round_trips_losslessly(memories: list[dict[str, Any]]) -> None:
    trio.run(_codec_round_trip, memories)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(memory_st, min_size=1, max_size=8))
def test_export_then_import_through_the_console_script(memories: list[dict[str, Any]]
                                                       ) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source, target, file = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "out.jsonl"
        trio.run(_fill, source, memories, "wordllama")
        ok(triomem(tmp_path, "export", "--include-forgotten", "--to", str(file), db=source))
        exported = jsonl(file.read_text(encoding="utf-8"))
        imported = json.loads(ok(triomem(tmp_path, "import", str(file), "--json", db=target)))
        assert (imported["imported"], imported["errors"]) == (len(exported), [])
        again = json.loads(ok(triomem(tmp_path, "import", str(file), "--json", db=target)))
        assert (again["imported"], again["unchanged"]) == (0, len(exported))
        streamed = ok(triomem(tmp_path, "export", "--include-forgotten", db=target))
        assert by_id(jsonl(streamed)) == by_id(exported)


def test_broken_lines_import_nothing_unless_skipped(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    file = tmp_path / "in.jsonl"
    file.write_text('{"content": "good one"}\n'
                    "this is not json\n"
                    '{"content": "good two", "tags": ["x"]}\n'
                    '{"content": "   "}\n'
                    "\n"
                    '{"content": "good three"}\n', encoding="utf-8")
    refused = triomem(tmp_path, "import", str(file), db=db)
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert "line 2:" in refused.stderr and "line 4:" in refused.stderr
    assert "nothing imported" in refused.stderr and "--skip-bad" in refused.stderr
    stats = json.loads(ok(triomem(tmp_path, "stats", "--json", db=db)))
    assert stats["database"]["live_memories"] == 0
    skipped = triomem(tmp_path, "import", str(file), "--skip-bad", "--json", db=db)
    report = json.loads(ok(skipped))
    assert report["imported"] == 3
    assert [e["line"] for e in report["errors"]] == [2, 4]
    listed = json.loads(ok(triomem(tmp_path, "list", "--json", db=db)))
    assert sorted(m["content"] for m in listed["memories"]) == ["good one", "good three",
                                                                 "good two"]


def test_export_refuses_an_existing_file_and_bad_paths_are_clear(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    ok(triomem(tmp_path, "remember", "something to export", db=db))
    target = tmp_path / "exists.jsonl"
    target.write_text("keep me")
    refused = triomem(tmp_path, "export", "--to", str(target), db=db)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert target.read_text() == "keep me"
    ok(triomem(tmp_path, "export", "--to", str(target), "--force", db=db))
    assert jsonl(target.read_text())[0]["content"] == "something to export"
    assert not (tmp_path / "exists.jsonl.partial").exists()
    missing = triomem(tmp_path, "import", str(tmp_path / "nope.jsonl"), db=db)
    assert missing.returncode == 1
    assert "nope.jsonl: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
    no_db = triomem(tmp_path, "export", db=tmp_path / "absent.db")
    assert no_db.returncode == 1 and "no such database" in no_db.stderr
    assert not (tmp_path / "absent.db").exists()
