"""Importers for other memory servers' files, and JSONL with broken lines."""

from __future__ import annotations

import json
from pathlib import Path

import apsw

from triomem import Engine, read_records


async def test_official_mcp_memory_graph(engine: Engine, tmp_path: Path) -> None:
    graph = tmp_path / "memory.json"
    graph.write_text("\n".join(json.dumps(line) for line in [
        {"type": "entity", "name": "Alice", "entityType": "person",
         "observations": ["prefers morning meetings", "works on the billing service"]},
        {"type": "entity", "name": "billing service", "entityType": "project",
         "observations": ["written in Go"]},
        {"type": "relation", "from": "Alice", "to": "billing service",
         "relationType": "maintains"},
    ]))
    report = await engine.import_records(read_records(graph, "mcp-memory"))
    assert (report.imported, report.errors) == (4, ())
    contents = {m.content: m for m in (await engine.list()).memories}
    assert set(contents) == {"Alice: prefers morning meetings",
                             "Alice: works on the billing service",
                             "billing service: written in Go", "Alice maintains billing service"}
    alice = contents["Alice: prefers morning meetings"]
    assert alice.tags == ("person", "Alice")
    assert alice.type == "observation"
    assert alice.metadata["entity"] == "Alice"
    assert contents["Alice maintains billing service"].type == "relation"
    again = await engine.import_records(read_records(graph, "mcp-memory"))
    assert (again.imported, again.unchanged) == (0, 4)


def _mcp_memory_service_db(path: Path) -> None:
    conn = apsw.Connection(str(path))
    conn.execute("""
        CREATE TABLE memories (
            id INTEGER PRIMARY KEY AUTOINCREMENT, content_hash TEXT UNIQUE NOT NULL,
            content TEXT NOT NULL, tags TEXT, memory_type TEXT, metadata TEXT,
            created_at REAL, updated_at REAL, created_at_iso TEXT, updated_at_iso TEXT,
            deleted_at REAL)""")
    rows = [
        ("h1", "Use ruff for linting", "python,tooling", "decision", '{"project": "x"}',
         1_700_000_000.5, 1_700_000_100.0, None),
        ("h2", "Deploys are on Tuesdays", '["ops", "schedule"]', "fact", None,
         1_700_000_200.0, None, None),
        ("h3", "A deleted memory", "x", "note", "{}", 1_700_000_300.0, None, 1_700_000_400.0),
        ("h4", "Odd type and metadata", "", "weird type!", "not json", 1_700_000_500.0, None,
         None),
    ]
    conn.executemany("INSERT INTO memories(content_hash, content, tags, memory_type, metadata, "
                     "created_at, updated_at, deleted_at) VALUES(?,?,?,?,?,?,?,?)", rows)
    conn.close()


async def test_mcp_memory_service_database(engine: Engine, tmp_path: Path) -> None:
    source = tmp_path / "sqlite_vec.db"
    _mcp_memory_service_db(source)
    before = source.read_bytes()
    report = await engine.import_records(read_records(source, "mcp-memory-service"))
    assert (report.imported, report.errors) == (3, ())
    assert source.read_bytes() == before  # read-only
    memories = {m.content: m for m in (await engine.list()).memories}
    assert "A deleted memory" not in memories
    ruff = memories["Use ruff for linting"]
    assert ruff.tags == ("python", "tooling")
    assert ruff.type == "decision"
    assert ruff.metadata == {"project": "x", "source": "mcp-memory-service"}
    assert ruff.created_at.timestamp() == 1_700_000_000.5
    assert memories["Deploys are on Tuesdays"].tags == ("ops", "schedule")
    odd = memories["Odd type and metadata"]
    assert odd.type == "weird-type"
    assert odd.metadata["raw_metadata"] == "not json"
    again = await engine.import_records(read_records(source, "mcp-memory-service"))
    assert (again.imported, again.unchanged) == (0, 3)


async def test_jsonl_with_broken_lines_reports_line_numbers(engine: Engine,
                                                            tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"content": "good one"}\n\n{not json\n{"content": ""}\n'
                    '{"content": "good two"}\n')
    report = await engine.import_records(read_records(path, "jsonl"))
    assert not report.applied
    assert [line for line, _ in report.errors] == [3, 4]
    assert "not JSON" in report.errors[0][1]
    assert (await engine.list()).memories == ()
    report = await engine.import_records(read_records(path, "jsonl"), skip_bad=True)
    assert report.imported == 2
