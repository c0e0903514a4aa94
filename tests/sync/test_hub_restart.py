"""The hub process killed (SIGKILL) and restarted while a device keeps writing: the device's
outbox holds everything meanwhile and drains into the restarted hub; nothing is lost."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import apsw
import trio

from tests.fakes import HashEmbedder
from triomem import EngineConfig, SyncConfig, open_engine

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def _start_hub(db: Path, port: int) -> trio.Process:
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "tests.sync.hub_process", str(db), str(port)], cwd=ROOT,
        stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = b""
    while not line.endswith(b"\n"):
        chunk = await proc.stdout.receive_some()
        assert chunk, "the hub exited before listening"
        line += chunk
    assert line == b"listening\n"
    return proc


async def _kill(proc: trio.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


def _hub_ids(db: Path) -> set[str]:
    conn = apsw.Connection(str(db))
    try:
        return {r[0] for r in conn.execute("SELECT id FROM memories")}
    finally:
        conn.close()


async def test_hub_killed_and_restarted(tmp_path: Path) -> None:
    hub_db, port = tmp_path / "hub.db", _free_port()
    config = EngineConfig(embedder=HashEmbedder(), remote_url=f"ws://127.0.0.1:{port}/hub",
                          sync=SyncConfig(seed=2, backoff_base=0.05, backoff_cap=0.5))
    hub = await _start_hub(hub_db, port)
    try:
        with trio.fail_after(120):
            async with open_engine(tmp_path / "device.db", config) as device:
                before = [(await device.remember(f"before the crash {i}")).memory.id
                          for i in range(20)]
                await device.sync_now()
                await _kill(hub)
                during = [(await device.remember(f"while the hub is down {i}")).memory.id
                          for i in range(20)]
                await trio.sleep(1.0)
                status = await device.sync_status()
                assert status.outbox == 20
                assert status.state in ("backoff", "syncing")
                hub = await _start_hub(hub_db, port)
                await device.sync_now()
                assert (await device.sync_status()).outbox == 0
    finally:
        await _kill(hub)
    assert set(before + during) <= _hub_ids(hub_db)
