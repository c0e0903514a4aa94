"""Interop client: the official Python SDK 1.x (legacy era), one scenario over three transports.

Runs in .venv-mcp1 (not triomem's venv). Prints one JSON report on stdout for the test:

- ``python client_mcp1.py ws://127.0.0.1:PORT/mcp``: the SDK's WebSocket client;
- ``python client_mcp1.py stdio PYTHON CWD DB``: its stdio transport, launching
  ``PYTHON -m tests.transports.stdio_server DB`` in CWD;
- ``python client_mcp1.py bridge TRIOMEM DB``: its stdio transport launching ``triomem stdio``
  the way Claude Code or Claude Desktop does (``StdioServerParameters``, the SDK's own minimal
  environment).
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import anyio
from mcp import (  # type: ignore[import-not-found, unused-ignore]
    ClientSession,
    StdioServerParameters,
)
from mcp.client.stdio import stdio_client  # type: ignore[import-not-found, unused-ignore]
from mcp.client.websocket import websocket_client  # type: ignore[import-not-found, unused-ignore]


def _transport(target: str, args: list[str]) -> tuple[Any, str, str]:
    """The SDK transport for ``target``, and the memory text and query the scenario uses."""
    if target == "stdio":
        python, cwd, db = args
        return (stdio_client(StdioServerParameters(
            command=python, args=["-m", "tests.transports.stdio_server", db], cwd=cwd)),
            "interop with the python sdk one", "python sdk one")
    if target == "bridge":
        triomem, db = args
        return (stdio_client(StdioServerParameters(
            command=triomem, args=["stdio", "--db", db, "--embedder", "wordllama"])),
            "interop through the stdio bridge", "stdio bridge")
    return websocket_client(target), "interop with the python sdk one", "python sdk one"


async def main(target: str, *args: str) -> None:
    report: dict[str, Any] = {}
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    transport, content, query = _transport(target, list(args))
    async with transport as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        report["protocol_version"] = init.protocolVersion
        report["server_name"] = init.serverInfo.name
        report["tools"] = [tool.name for tool in (await session.list_tools()).tools]
        await session.send_ping()
        stored = await session.call_tool("memory_store", {"content": content,
                                                          "tags": ["interop"]})
        report["stored"] = {"is_error": stored.isError, "structured": stored.structuredContent}
        recalled = await session.call_tool("memory_recall", {"query": query},
                                           progress_callback=on_progress)
        report["recall_ids"] = [h["memory"]["id"] for h in recalled.structuredContent["hits"]]
        report["progress"] = progress
        missing = await session.call_tool("memory_get", {"id": "no-such-memory"})
        report["missing"] = {"is_error": missing.isError, "text": missing.content[0].text}
        invalid = await session.call_tool("memory_store", {"content": "x", "tags": [7]})
        report["invalid"] = {"is_error": invalid.isError, "text": invalid.content[0].text}
    print(json.dumps(report))


if __name__ == "__main__":
    warnings.simplefilter("ignore", DeprecationWarning)  # websocket_client is deprecated in 1.28
    anyio.run(main, sys.argv[1], *sys.argv[2:])
