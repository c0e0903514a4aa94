"""``triomem serve`` as a real process: listen, serve, shut down on a signal, exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from trio_websocket import open_websocket_url

from tests.transports._ws import WsClient
from triomem import EngineConfig, open_engine


async def read_line(stream: trio.abc.ReceiveStream, buffer: bytearray) -> str:
    while b"\n" not in buffer:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise EOFError(buffer.decode(errors="replace"))
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line.decode()


def serve_command(db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "triomem", "serve", "--db", str(db), "--embedder",
            "wordllama", "--port", "0", *extra]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_until_a_signal_then_exit_zero(tmp_path: Path, signum: int) -> None:
    db = tmp_path / "served.db"
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(serve_command(db, "--json"),
                                                   stderr=subprocess.PIPE)
        try:
            assert process.stderr is not None
            buffer = bytearray()
            announcement = json.loads(await read_line(process.stderr, buffer))
            assert announcement["event"] == "listening"
            url = announcement["url"]
            assert url.startswith("ws://127.0.0.1:") and url.endswith("/mcp")
            async with open_websocket_url(url, subprotocols=["mcp"]) as ws:
                client = WsClient(ws)
                await client.handshake()
                stored = await client.call("memory_store", {"content": "survives shutdown"})
                assert stored["isError"] is False
                process.send_signal(signum)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    async with open_engine(db, EngineConfig(embedder="wordllama")) as engine:
        assert [m.content for m in (await engine.list()).memories] == ["survives shutdown"]


async def test_plain_announcement_names_the_url(tmp_path: Path) -> None:
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(serve_command(tmp_path / "x.db"),
                                                   stderr=subprocess.PIPE)
        try:
            assert process.stderr is not None
            line = await read_line(process.stderr, bytearray())
            assert "ws://127.0.0.1:" in line and "/mcp" in line
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_non_loopback_without_token_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRIOMEM_TOKEN"}
    with trio.fail_after(60):
        result = await trio.run_process(
            serve_command(tmp_path / "never.db", "--host", "0.0.0.0"),
            capture_stderr=True, check=False, env=env)
    assert result.returncode == 2
    assert b"token" in result.stderr
    assert not (tmp_path / "never.db").exists()


async def test_engine_errors_exit_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOMEM_EMBED")}
    command = serve_command(tmp_path / "e.db")
    command[command.index("wordllama")] = "http"  # needs TRIOMEM_EMBED_URL, which is unset
    with trio.fail_after(60):
        result = await trio.run_process(command, capture_stderr=True, check=False, env=env)
    assert result.returncode == 1
    assert b"embedder_unavailable" in result.stderr
