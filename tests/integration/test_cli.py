"""The real console script in subprocesses, on a real file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TRIOMEM = str(Path(sys.executable).with_name("triomem"))


def run(*args: str, db: Path, embedder: str = "wordllama") -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRIOMEM, *args, "--db", str(db), "--embedder", embedder],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_remember_recall_list_forget_stats(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    first = run("remember", "Deploys happen on Tuesdays", "--tag", "ops", "--json", db=db)
    assert first.returncode == 0, first.stderr
    stored = json.loads(first.stdout)
    assert stored["created"] is True
    memory_id = stored["memory"]["id"]
    again = json.loads(run("remember", "Deploys happen on Tuesdays", "--json", db=db).stdout)
    assert again["created"] is False
    assert again["memory"]["id"] == memory_id
    run("remember", "The cat is called Miso", db=db)
    recalled = json.loads(run("recall", "when do we deploy", "--json", db=db).stdout)
    assert recalled["hits"][0]["memory"]["id"] == memory_id
    listed = json.loads(run("list", "--tag", "ops", "--json", db=db).stdout)
    assert [m["id"] for m in listed["memories"]] == [memory_id]
    assert run("forget", memory_id, db=db).stdout.strip() == "forgotten"
    stats = json.loads(run("stats", "--json", db=db).stdout)
    assert (stats["database"]["live_memories"], stats["database"]["forgotten_memories"]) == \
        (1, 1)
    assert stats["embedder"] == "wordllama:l2_supercat_256"
    assert stats["store"]["busy_retries"] == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [(("forget", "01234567-0000-7000-8000-000000000000"), 1, "not_found"),
     (("remember", "   "), 1, "invalid_input"),
     (("recall", "x", "--limit", "0"), 1, "limit"),
     (("frobnicate",), 2, "invalid choice")],
)
def test_errors_are_typed_with_exit_codes(tmp_path: Path, args: tuple[str, ...], code: int,
                                          message: str) -> None:
    result = run(*args, db=tmp_path / "cli.db") if args[0] != "frobnicate" else \
        subprocess.run([TRIOMEM, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_embedder_and_corrupt_file_are_refused(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    assert run("remember", "made with wordllama", db=db).returncode == 0
    mismatch = run("list", db=db, embedder="minilm")
    assert mismatch.returncode == 1
    assert "embedder_mismatch" in mismatch.stderr
    assert "reembed" in mismatch.stderr
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite" * 100)
    corrupt = run("list", db=junk)
    assert corrupt.returncode == 1
    assert "store_corrupt" in corrupt.stderr
    assert junk.read_bytes() == b"definitely not sqlite" * 100


def test_reembed_converts_the_file(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    run("remember", "The user prefers dark mode", db=db)
    run("remember", "Deploys happen on Tuesdays", db=db)
    converted = run("reembed", db=db, embedder="minilm")
    assert converted.returncode == 0, converted.stderr
    assert "re-embedded 2 memories" in converted.stdout
    recalled = json.loads(run("recall", "what colour scheme?", "--json", db=db,
                              embedder="minilm").stdout)
    assert recalled["hits"][0]["memory"]["content"] == "The user prefers dark mode"
