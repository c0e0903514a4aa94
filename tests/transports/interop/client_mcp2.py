"""Interop client: the official Python SDK 2.x (``mcp.Client``) over a WebSocket.

2.x removed its WebSocket transport; ``mcp.Client`` takes any async context manager yielding
(read_stream, write_stream) of ``SessionMessage``, so ``websocket_transport`` below adapts a
``websockets`` connection the way the SDK's own stdio transport adapts a pipe.

Runs in .venv-mcp2: ``python client_mcp2.py ws://127.0.0.1:PORT/mcp MODE`` with MODE
``legacy``, ``auto`` (probe server/discover, the default) or ``2026-07-28``; or
``python client_mcp2.py stdio MODE PYTHON CWD DB`` to launch ``PYTHON -m
tests.transports.stdio_server DB`` in CWD through the SDK's own stdio transport. Prints one
JSON report on stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import mcp_types as types  # type: ignore[import-not-found, unused-ignore]
from mcp import Client, StdioServerParameters  # type: ignore[import-not-found, unused-ignore]
from mcp.shared.message import SessionMessage  # type: ignore[import-not-found, unused-ignore]
from pydantic import ValidationError  # type: ignore[import-not-found, unused-ignore]
from websockets.asyncio.client import connect  # type: ignore[import-not-found, unused-ignore]
from websockets.exceptions import ConnectionClosed  # type: ignore[import-not-found, unused-ignore]


@contextlib.asynccontextmanager
async def websocket_transport(url: str) -> AsyncIterator[tuple[Any, Any]]:
    read_writer, read_stream = anyio.create_memory_object_stream[Any](0)
    write_stream, write_reader = anyio.create_memory_object_stream[Any](0)
    async with connect(url, subprotocols=["mcp"]) as ws:

        async def reader() -> None:
            async with read_writer:
                with contextlib.suppress(ConnectionClosed):
                    async for raw in ws:
                        try:
                            message = types.jsonrpc_message_adapter.validate_json(raw,
                                                                                  by_name=False)
                        except ValidationError as exc:
                            await read_writer.send(exc)
                            continue
                        await read_writer.send(SessionMessage(message))

        async def writer() -> None:
            async with write_reader:
                async for session_message in write_reader:
                    await ws.send(session_message.message.model_dump_json(
                        by_alias=True, exclude_unset=True))

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(reader)
            tasks.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                tasks.cancel_scope.cancel()


async def main(target: str, mode: str, *stdio: str) -> None:
    report: dict[str, Any] = {}
    if target == "stdio":
        python, cwd, db = stdio
        server: Any = StdioServerParameters(
            command=python, args=["-m", "tests.transports.stdio_server", db], cwd=cwd)
    else:
        server = websocket_transport(target)
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with Client(server, mode=mode) as client:
        report["protocol_version"] = client.protocol_version
        info = client.server_info
        report["server_name"] = info.name if info is not None else None
        report["tools"] = [tool.name for tool in (await client.list_tools()).tools]
        stored = await client.call_tool("memory_store", {
            "content": f"interop with the python sdk two in {mode} mode", "tags": ["interop"]})
        report["stored"] = {"is_error": stored.is_error, "structured": stored.structured_content}
        recalled = await client.call_tool("memory_recall", {"query": f"sdk two {mode}"},
                                          progress_callback=on_progress)
        report["recall_ids"] = [h["memory"]["id"] for h in recalled.structured_content["hits"]]
        report["progress"] = progress
        missing = await client.call_tool("memory_get", {"id": "no-such-memory"})
        report["missing"] = {"is_error": missing.is_error, "text": missing.content[0].text}
        invalid = await client.call_tool("memory_store", {"content": "x", "tags": [7]})
        report["invalid"] = {"is_error": invalid.is_error, "text": invalid.content[0].text}
    print(json.dumps(report))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "auto", *sys.argv[3:])
