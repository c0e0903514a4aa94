"""``triomem config CLIENT``: the entry for a desktop client, with absolute paths, through the
real console script."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.transports._bridges import TRIOMEM
from triomem.transports.client_config import client_entry, triomem_command


def run_config(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TRIOMEM), "config", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, check=True)


def test_claude_code_gets_a_command_with_absolute_paths(tmp_path: Path) -> None:
    result = run_config("claude-code", "--db", "relative dir/m.db", cwd=tmp_path)
    db = os.path.realpath(tmp_path / "relative dir" / "m.db")
    assert result.stdout == shlex.join(["claude", "mcp", "add", "triomem", "--",
                                        str(TRIOMEM.resolve()), "stdio", "--db", db]) + "\n"
    assert shlex.split(result.stdout)[5] == str(TRIOMEM.resolve())
    assert "--scope user" in result.stderr


@pytest.mark.parametrize(("client", "where"), [
    ("claude-desktop", "claude_desktop_config.json"),
    ("cursor", ".cursor/mcp.json"),
])
def test_json_clients_get_an_mcp_servers_entry(tmp_path: Path, client: str, where: str) -> None:
    result = run_config(client, "--db", "m.db", "--embedder", "wordllama", cwd=tmp_path)
    entry = json.loads(result.stdout)  # stdout is the JSON alone; the advice is on stderr
    assert entry == {"mcpServers": {"triomem": {
        "command": str(TRIOMEM.resolve()),
        "args": ["stdio", "--db", os.path.realpath(tmp_path / "m.db"), "--embedder",
                 "wordllama"]}}}
    assert Path(entry["mcpServers"]["triomem"]["command"]).is_absolute()
    assert where in result.stderr


def test_the_default_database_is_written_out(tmp_path: Path) -> None:
    env = {**os.environ, "TRIOMEM_DB": str(tmp_path / "from-env.db")}
    result = subprocess.run([str(TRIOMEM), "config", "cursor"], capture_output=True, text=True,
                            timeout=60, check=True, env=env)
    args = json.loads(result.stdout)["mcpServers"]["triomem"]["args"]
    assert args == ["stdio", "--db", os.path.realpath(tmp_path / "from-env.db")]


def test_without_a_console_script_the_interpreter_runs_the_module(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    monkeypatch.setattr("sys.executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    command = triomem_command(argv0=str(tmp_path / "__main__.py"))
    assert command == [str(tmp_path / "bin" / "python"), "-m", "triomem"]
    entry = client_entry("claude-desktop", "/data/m.db", command=command)
    assert json.loads(entry.text)["mcpServers"]["triomem"] == {
        "command": str(tmp_path / "bin" / "python"),
        "args": ["-m", "triomem", "stdio", "--db", os.path.realpath("/data/m.db")]}


def test_an_unknown_client_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown client"):
        client_entry("vim", "/data/m.db", command=["/bin/triomem"])
