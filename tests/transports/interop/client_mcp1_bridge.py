"""Interop client: the official Python SDK 1.x stdio client, launching ``triomem stdio`` the
way Claude Code or Claude Desktop does (``StdioServerParameters``, the SDK's own minimal
environment).

Runs in .venv-mcp1: ``python client_mcp1_bridge.py TRIOMEM DB``. Prints one JSON report on
stdout.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from mcp import (  # type: ignore[import-not-found, unused-ignore]
    ClientSession,
    StdioServerParameters,
)
from mcp.client.stdio import stdio_client  # type: ignore[import-not-found, unused-ignore]


async def main(triomem: str, db: str) -> None:
    report: dict[str, Any] = {}
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    server = StdioServerParameters(command=triomem,
                                   args=["stdio", "--db", db, "--embedder", "wordllama"])
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        report["protocol_version"] = init.protocolVersion
        report["server_name"] = init.serverInfo.name
        report["tools"] = [tool.name for tool in (await session.list_tools()).tools]
        await session.send_ping()
        stored = await session.call_tool("memory_store", {
            "content": "interop through the stdio bridge", "tags": ["interop"]})
        report["stored"] = {"is_error": stored.isError, "structured": stored.structuredContent}
        recalled = await session.call_tool("memory_recall", {"query": "stdio bridge"},
                                           progress_callback=on_progress)
        report["recall_ids"] = [h["memory"]["id"] for h in recalled.structuredContent["hits"]]
        report["progress"] = progress
        missing = await session.call_tool("memory_get", {"id": "no-such-memory"})
        report["missing"] = {"is_error": missing.isError, "text": missing.content[0].text}
        invalid = await session.call_tool("memory_store", {"content": "x", "tags": [7]})
        report["invalid"] = {"is_error": invalid.isError, "text": invalid.content[0].text}
    print(json.dumps(report))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2])
