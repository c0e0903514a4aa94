"""Interop with the official MCP Python SDKs, each in its own venv, as real client processes
against a server this test runs in-process on 127.0.0.1 (port 0).

The venvs (.venv-mcp1, .venv-mcp2) are created on first use by ``setup_venvs.sh`` (about 15 s
once, well under a second after). Set TRIOMEM_SKIP_INTEROP=1 to skip on a machine without
package registry access.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.fakes import HashEmbedder
from triomem import Engine, EngineConfig, open_engine
from triomem.transports import ServerAddress, serve_websocket
from triomem.transports.mcp import TOOLS

HERE = Path(__file__).parent
ROOT = HERE.parents[2]

pytestmark = pytest.mark.skipif(os.environ.get("TRIOMEM_SKIP_INTEROP") == "1",
                                reason="TRIOMEM_SKIP_INTEROP=1")


@pytest.fixture(scope="session")
def sdk_venvs() -> dict[str, Path]:
    """Create (once) the SDK venvs; fail loudly if that is impossible."""
    result = subprocess.run(["bash", str(HERE / "setup_venvs.sh")], capture_output=True,
                            text=True, timeout=600, check=False)
    assert result.returncode == 0, f"setup_venvs.sh failed:\n{result.stderr[-3000:]}"
    return {name: ROOT / f".venv-{name}" / "bin" / "python" for name in ("mcp1", "mcp2")}


@pytest.fixture
async def served(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[tuple[Engine, str]]:
    async with open_engine(tmp_path / "interop.db",
                           EngineConfig(embedder=HashEmbedder(), executor="thread")) as engine:
        shutdown = trio.Event()
        done = trio.Event()

        async def run(task_status: trio.TaskStatus[ServerAddress]) -> None:
            try:
                await serve_websocket(engine, "127.0.0.1", 0, shutdown=shutdown,
                                      task_status=task_status)
            finally:
                done.set()

        address: ServerAddress = await nursery.start(run)
        yield engine, address.url
        shutdown.set()
        await done.wait()


async def run_client(python: Path, script: str, *args: str) -> dict[str, Any]:
    with trio.fail_after(45):
        result = await trio.run_process([str(python), str(HERE / script), *args],
                                        capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.decode().strip().splitlines()[-1])
    return report


def check_answers(report: dict[str, Any], version: str) -> str:
    """What the SDK client saw of the scenario; returns the stored memory's id."""
    assert report["protocol_version"] == version
    assert report["tools"] == [tool.name for tool in TOOLS]
    assert report["stored"]["is_error"] is False
    structured = report["stored"]["structured"]
    assert structured["created"] is True
    memory_id: str = structured["memory"]["id"]
    assert memory_id in report["recall_ids"]
    progress = report["progress"]
    assert len(progress) >= 2 and progress[0] == 0
    assert all(a < b for a, b in itertools.pairwise(progress))
    assert report["missing"]["is_error"] is True
    assert report["missing"]["text"].startswith("not_found:")
    assert report["invalid"]["is_error"] is True
    assert "tags[0]" in report["invalid"]["text"]
    return memory_id


async def check_report(report: dict[str, Any], engine: Engine, version: str) -> None:
    memory_id = check_answers(report, version)
    structured = report["stored"]["structured"]
    memory = await engine.get(memory_id)
    assert memory.content == structured["memory"]["content"]
    assert memory.tags == ("interop",)
    assert len((await engine.list()).memories) == 1  # the invalid store wrote nothing


async def test_python_sdk_1x_websocket_client(sdk_venvs: dict[str, Path],
                                              served: tuple[Engine, str]) -> None:
    engine, url = served
    report = await run_client(sdk_venvs["mcp1"], "client_mcp1.py", url)
    assert report["server_name"] == "triomem"
    await check_report(report, engine, "2025-11-25")


@pytest.mark.parametrize(("mode", "version"), [("legacy", "2025-11-25"),
                                               ("auto", "2026-07-28"),
                                               ("2026-07-28", "2026-07-28")])
async def test_python_sdk_2x_client(sdk_venvs: dict[str, Path], served: tuple[Engine, str],
                                    mode: str, version: str) -> None:
    engine, url = served
    report = await run_client(sdk_venvs["mcp2"], "client_mcp2.py", url, mode)
    await check_report(report, engine, version)


async def stdio_report(python: Path, script: str, db: Path, *mode: str) -> dict[str, Any]:
    # The SDK launches our stdio server itself, as a desktop client would.
    return await run_client(python, script, "stdio", *mode, sys.executable, str(ROOT), str(db))


async def test_python_sdk_1x_stdio_client(sdk_venvs: dict[str, Path], tmp_path: Path) -> None:
    db = tmp_path / "stdio1.db"
    report = await stdio_report(sdk_venvs["mcp1"], "client_mcp1.py", db)
    async with open_engine(db, EngineConfig(embedder=HashEmbedder(), executor="thread")) as e:
        await check_report(report, e, "2025-11-25")


@pytest.mark.parametrize(("mode", "version"), [("legacy", "2025-11-25"),
                                               ("auto", "2026-07-28")])
async def test_python_sdk_2x_stdio_client(sdk_venvs: dict[str, Path], tmp_path: Path,
                                          mode: str, version: str) -> None:
    db = tmp_path / "stdio2.db"
    report = await stdio_report(sdk_venvs["mcp2"], "client_mcp2.py", db, mode)
    async with open_engine(db, EngineConfig(embedder=HashEmbedder(), executor="thread")) as e:
        await check_report(report, e, version)
