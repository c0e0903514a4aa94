"""``triomem config CLIENT``: the exact entry that adds triomem to a desktop MCP client.

Every entry runs ``triomem stdio --db DB`` with absolute paths: desktop clients start servers
with their own working directory and a minimal environment (no venv activated, often no
``$TRIOMEM_DB``), so nothing may depend on either.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

import attrs

CLIENTS = ("claude-code", "claude-desktop", "cursor")
SERVER_NAME = "triomem"


@attrs.frozen
class ClientEntry:
    """What to print: ``text`` (the command, or the JSON to merge) and ``where`` (how to
    apply it)."""

    text: str
    where: str


def triomem_command(argv0: str | None = None) -> list[str]:
    """The absolute command that runs this installation's ``triomem``.

    The console script that is running (``sys.argv[0]``), else the one beside the
    interpreter, else the one on ``PATH``, resolved to an absolute path; when there is none
    (``python -m triomem`` from a source tree), this interpreter with ``-m triomem``.
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    candidates = []
    if Path(argv0).name.startswith("triomem") and not argv0.endswith(".py"):
        candidates.append(argv0)
    candidates.append(str(Path(sys.executable).with_name("triomem")))
    if found := shutil.which("triomem"):
        candidates.append(found)
    for candidate in candidates:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path.resolve())]
    # Not resolved: a venv's python is a symlink, and resolving it would leave the venv.
    return [os.path.abspath(sys.executable), "-m", "triomem"]


def client_entry(client: str, database: str, *, embedder: str | None = None,
                 command: list[str] | None = None) -> ClientEntry:
    """The entry for ``client`` (one of ``CLIENTS``) serving ``database`` (made absolute).

    ``embedder`` is added to the command when given. Raises ``ValueError`` for an unknown
    client.
    """
    command = command or triomem_command()
    args = [*command[1:], "stdio", "--db", os.path.realpath(database)]
    if embedder:
        args += ["--embedder", embedder]
    if client == "claude-code":
        return ClientEntry(
            shlex.join(["claude", "mcp", "add", SERVER_NAME, "--", command[0], *args]),
            "Run this command in a shell (add --scope user after `add` to use triomem in "
            "every project).")
    if client == "claude-desktop":
        return ClientEntry(_json_entry(command[0], args), (
            "Merge this into claude_desktop_config.json, then restart Claude Desktop:\n"
            "  macOS: ~/Library/Application Support/Claude/claude_desktop_config.json\n"
            "  Linux: ~/.config/Claude/claude_desktop_config.json\n"
            "  Windows: %APPDATA%\\Claude\\claude_desktop_config.json"))
    if client == "cursor":
        return ClientEntry(_json_entry(command[0], args), (
            "Merge this into Cursor's mcp.json (Linux and macOS alike):\n"
            "  every project: ~/.cursor/mcp.json\n"
            "  one project:   <project>/.cursor/mcp.json"))
    raise ValueError(f"unknown client {client!r}: expected one of {', '.join(CLIENTS)}")


def _json_entry(executable: str, args: list[str]) -> str:
    return json.dumps({"mcpServers": {SERVER_NAME: {"command": executable, "args": args}}},
                      indent=2)
