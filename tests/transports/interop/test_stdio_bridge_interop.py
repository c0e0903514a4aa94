"""Interop: the official Python SDK 1.x stdio client through ``triomem stdio``, as a desktop
client runs it: the SDK launches the bridge, the bridge starts the server that owns the
database, and the server outlives the client for the next one.

Uses the venv of ``setup_venvs.sh`` (see test_interop.py); TRIOMEM_SKIP_INTEROP=1 skips.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.transports._bridges import TRIOMEM, daemon_info, open_bridge, stop_daemon, structured
from tests.transports.interop.test_interop import HERE, ROOT, check_answers, run_client

pytestmark = pytest.mark.skipif(os.environ.get("TRIOMEM_SKIP_INTEROP") == "1",
                                reason="TRIOMEM_SKIP_INTEROP=1")


@pytest.fixture(scope="session")
def mcp1_python() -> Path:
    """The mcp 1.x venv's interpreter, created once by setup_venvs.sh."""
    result = subprocess.run(["bash", str(HERE / "setup_venvs.sh"), "mcp1"],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, f"setup_venvs.sh failed:\n{result.stderr[-3000:]}"
    return ROOT / ".venv-mcp1" / "bin" / "python"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Path]:
    path = tmp_path / "interop.db"
    try:
        yield path
    finally:
        with trio.CancelScope(shield=True), trio.fail_after(30):
            await stop_daemon(path)


async def test_python_sdk_1x_stdio_client_through_the_bridge(mcp1_python: Path,
                                                             db: Path) -> None:
    report = await run_client(mcp1_python, "client_mcp1.py", "bridge", str(TRIOMEM), str(db))
    memory_id = check_answers(report, "2025-11-25")
    assert report["server_name"] == "triomem"
    # The SDK client is gone; its server is not, and holds what it stored.
    server = daemon_info(db).pid
    with trio.fail_after(30):
        async with open_bridge(db) as bridge:
            await bridge.handshake()
            got = structured(await bridge.call("memory_get", {"id": memory_id}))
            assert got["memory"]["content"] == "interop through the stdio bridge"
            assert got["memory"]["tags"] == ["interop"]
            listed = structured(await bridge.call("memory_list", {}))
            assert [m["id"] for m in listed["memories"]] == [memory_id]  # the invalid store wrote nothing
            await bridge.close_stdin()
            assert await bridge.process.wait() == 0
    assert daemon_info(db).pid == server
