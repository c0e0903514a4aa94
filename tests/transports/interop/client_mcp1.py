"""Interop client: the official Python SDK 1.x over its WebSocket client (legacy era).

Runs in .venv-mcp1 (not triomem's venv): ``python client_mcp1.py ws://127.0.0.1:PORT/mcp``,
or ``python client_mcp1.py stdio PYTHON CWD DB`` to launch ``PYTHON -m
tests.transports.stdio_server DB`` in CWD through the SDK's stdio transport. Prints one JSON
report on stdout for the test to check.
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


async def main(target: str, *stdio: str) -> None:
    report: dict[str, Any] = {}
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    if target == "stdio":
        python, cwd, db = stdio
        transport: Any = stdio_client(StdioServerParameters(
            command=python, args=["-m", "tests.transports.stdio_server", db], cwd=cwd))
    else:
        transport = websocket_client(target)
    async with transport as (read, write), ClientSession(read, write) as session:
        init = await session.initialize()
        report["protocol_version"] = init.protocolVersion
        report["server_name"] = init.serverInfo.name
        report["tools"] = [tool.name for tool in (await session.list_tools()).tools]
        await session.send_ping()
        stored = await session.call_tool("memory_store", {
            "content": "interop with the python sdk one", "tags": ["interop"]})
        report["stored"] = {"is_error": stored.isError, "structured": stored.structuredContent}
        recalled = await session.call_tool("memory_recall", {"query": "python sdk one"},
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
