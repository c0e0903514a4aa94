"""Progress bars: drawn on a terminal (a pseudo-terminal here), absent when stderr is not one."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.cli._run import TRIOMEM, clean_env, ok, triomem


def _input(tmp_path: Path, count: int) -> Path:
    file = tmp_path / "in.jsonl"
    file.write_text("".join(json.dumps({"content": f"memory number {i}", "tags": [f"t{i % 3}"]})
                            + "\n" for i in range(count)), encoding="utf-8")
    return file


def _on_a_terminal(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Run triomem with stderr on a fresh pseudo-terminal; (exit code, stdout, terminal)."""
    controller, terminal = os.openpty()
    try:
        process = subprocess.Popen([TRIOMEM, *args], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=terminal,
                                   env=clean_env(tmp_path))
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            shown += chunk
        assert process.stdout is not None
        out = process.stdout.read().decode()
        return process.wait(60), out, shown.decode(errors="replace")
    finally:
        os.close(controller)


def test_a_terminal_shows_the_bar_with_counts_and_rate(tmp_path: Path) -> None:
    file = _input(tmp_path, 300)
    db = tmp_path / "m.db"
    code, out, terminal = _on_a_terminal(tmp_path, "import", str(file), "--db", str(db),
                                         "--embedder", "wordllama")
    assert code == 0, terminal
    assert out.strip() == "imported 300, unchanged 0"
    assert "importing" in terminal
    assert "300/300" in terminal
    assert "memories/s" in terminal
    export = tmp_path / "out.jsonl"
    code, _, terminal = _on_a_terminal(tmp_path, "export", "--to", str(export), "--db", str(db),
                                       "--embedder", "wordllama")
    assert code == 0, terminal
    assert "exporting" in terminal and "300/300" in terminal
    code, _, terminal = _on_a_terminal(tmp_path, "backup", "--to", str(tmp_path / "b.db"),
                                       "--db", str(db), "--embedder", "wordllama")
    assert code == 0, terminal
    assert "backing up" in terminal and "100%" in terminal


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    file = _input(tmp_path, 100)
    result = triomem(tmp_path, "import", str(file), db=tmp_path / "m.db")
    assert ok(result).strip() == "imported 100, unchanged 0"
    assert result.stderr == ""
    exported = triomem(tmp_path, "export", "--to", str(tmp_path / "out.jsonl"),
                       db=tmp_path / "m.db")
    ok(exported)
    assert "exporting" not in exported.stderr and "\r" not in exported.stderr
