"""MCP over newline-delimited byte streams: in memory, and as a real stdio subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.fakes import HashEmbedder
from tests.transports._messages import call_params, initialize_params, notification, request
from triomem import Engine, EngineConfig, open_engine
from triomem.transports import StdioOptions, serve_stdio

ROOT = Path(__file__).resolve().parents[2]


async def read_messages(stream: trio.abc.ReceiveStream, count: int) -> list[dict[str, Any]]:
    buffer = b""
    messages: list[dict[str, Any]] = []
    while len(messages) < count:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        messages += [json.loads(line) for line in lines]
    return messages


async def test_lines_in_lines_out(engine: Engine, nursery: trio.Nursery) -> None:
    client, server = trio.testing.memory_stream_pair()
    done = trio.Event()

    async def run() -> None:
        await serve_stdio(engine, server, server, options=StdioOptions(max_message_size=500))
        done.set()

    nursery.start_soon(run)
    with trio.fail_after(10):
        lines = [
            request(0, "initialize", initialize_params()),
            notification("notifications/initialized"),
            "",  # blank lines are skipped
            request(1, "tools/call", call_params("memory_store", {"content": "x" * 600})),
            request(2, "tools/call", call_params("memory_store", {"content": "over stdio"})),
            "{broken",
        ]
        # Two messages in one write, and one split across writes.
        payload = ("\n".join(lines) + "\n").encode()
        await client.send_all(payload[:37])
        await client.send_all(payload[37:])
        await client.send_all(b'{"jsonrpc":"2.0","id":3,"method":"ping"}')  # no newline, EOF
        await client.send_eof()
        replies = await read_messages(client, 5)
        await done.wait()
    by_id = {r.get("id"): r for r in replies}
    assert by_id[0]["result"]["protocolVersion"] == "2025-11-25"
    too_large = [r for r in replies if r.get("error", {}).get("data", {}).get("kind") ==
                 "message_too_large"]
    assert len(too_large) == 1 and too_large[0]["id"] is None
    assert by_id[2]["result"]["structuredContent"]["created"] is True
    assert any(r.get("error", {}).get("code") == -32700 for r in replies)
    assert by_id[3]["result"] == {}
    assert [m.content for m in (await engine.list()).memories] == ["over stdio"]


async def test_real_stdio_process_answers_then_exits_on_eof(tmp_path: Path) -> None:
    db = tmp_path / "stdio.db"
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "tests.transports.stdio_server", str(db)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert process.stdin is not None and process.stdout is not None
            lines = [request(0, "initialize", initialize_params()),
                     notification("notifications/initialized"),
                     request(1, "tools/call", call_params("memory_store",
                                                          {"content": "piped memory"})),
                     request(2, "tools/call", call_params("memory_recall",
                                                          {"query": "piped"}))]
            await process.stdin.send_all(("\n".join(lines) + "\n").encode())
            await process.stdin.aclose()  # a client ends a stdio session by closing stdin
            replies = await read_messages(process.stdout, 3)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert [r["id"] for r in replies] == [0, 1, 2]
    stored = replies[1]["result"]["structuredContent"]["memory"]
    assert replies[2]["result"]["structuredContent"]["hits"][0]["memory"]["id"] == stored["id"]
    async with open_engine(db, EngineConfig(embedder=HashEmbedder(), executor="inline")) as e:
        assert (await e.get(stored["id"])).content == "piped memory"


@pytest.mark.parametrize("limit", [10, 64])
async def test_oversized_line_split_across_reads_is_skipped(engine: Engine, limit: int) -> None:
    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: serve_stdio(engine, server, server,
                                                   options=StdioOptions(max_message_size=limit)))
            await client.send_all(b"x" * 100)
            await client.send_all(b"y" * 100 + b"\n")
            await client.send_all(b'{"jsonrpc":"2.0","id":"p","method":"ping"}\n'
                                  if limit == 64 else b"{}\n")
            await client.send_eof()
            replies = await read_messages(client, 2)
    assert replies[0]["error"]["data"]["kind"] == "message_too_large"
    if limit == 64:
        assert replies[1] == {"jsonrpc": "2.0", "id": "p", "result": {}}
