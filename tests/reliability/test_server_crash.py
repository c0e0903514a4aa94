"""Crash safety of the server: a real ``triomem serve`` process, clients storing memories
over WebSocket, SIGKILL at a random moment, restart, repeat. After every restart the
database opened cleanly (the server came up on it: WAL recovered, the stale lock file taken
over), every write a client saw acknowledged (a ``tools/call`` result with ``isError``
false) is there with its content, the store is consistent and the outbox holds a row per
memory. Some rounds kill the server while it is still starting."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
from trio_websocket import ConnectionClosed, HandshakeError, open_websocket_url

from tests.reliability._figures import emit, peak_rss_mb
from tests.reliability._wire import Mcp, ServeProcess, tool_result
from tests.reliability.test_cancel_storm import check_consistency

WRITERS = 8


async def _writer(url: str, tag: str, acked: dict[str, str], sent: list[int]) -> None:
    """Store memories until the server dies under us."""
    try:
        async with open_websocket_url(url, subprotocols=["mcp"]) as ws:
            mcp = Mcp(ws)
            await mcp.handshake()
            for i in range(10**6):  # bounded by the kill (and the test's deadline)
                content = f"{tag} note {i}"
                sent[0] += 1
                result = tool_result(await mcp.call("memory_store", {
                    "content": content, "tags": [tag.split(".")[0]]}))
                assert result["isError"] is False, result
                acked[result["structuredContent"]["memory"]["id"]] = content
    except (ConnectionClosed, HandshakeError, OSError, trio.BrokenResourceError):
        pass  # killed: whatever was not acknowledged may or may not be there


def _check_file(path: Path, acked: dict[str, str]) -> dict[str, int]:
    check_consistency(path)  # integrity_check ok, indexes match the table: no half write
    conn = apsw.Connection(str(path))
    try:
        stored = {row[0]: row[1] for row in conn.execute("SELECT id, content FROM memories")}
        outbox = conn.execute("SELECT count(*) FROM sync_outbox").fetchall()[0][0]
        duplicates = conn.execute("SELECT count(*) - count(DISTINCT content) FROM memories"
                                  ).fetchall()[0][0]
    finally:
        conn.close()
    lost = [i for i, content in acked.items() if stored.get(i) != content]
    assert not lost, f"{len(lost)} acknowledged writes lost, e.g. {lost[:3]}"
    assert duplicates == 0
    assert outbox == len(stored), "the outbox must hold a row per memory (no remote)"
    return {"stored": len(stored), "lost": len(lost)}


async def crash_rounds(tmp_path: Path, rounds: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    db = tmp_path / "served.db"
    acked: dict[str, str] = {}
    sent = [0]
    kills = startup_kills = idle_kills = crashes = 0
    servers: list[ServeProcess] = []
    peak: float = 0.0
    server = await ServeProcess.start(db)
    servers.append(server)
    try:
        for round_ in range(rounds):
            if round_ % 5 == 4:
                # Kill a fresh server somewhere in its start: imports, opening the database
                # (WAL recovery), taking the lock, binding.
                crashes += not server.kill()
                idle_kills += 1
                server = ServeProcess.spawn(db)
                servers.append(server)
                await trio.sleep(rng.uniform(0.05, 0.8))
                if server.listening():
                    idle_kills += 1
                else:
                    startup_kills += 1
                crashes += not server.kill()
            else:
                async with trio.open_nursery() as writers:
                    for k in range(WRITERS):
                        writers.start_soon(_writer, server.url, f"r{round_}.w{k}", acked, sent)
                    await trio.sleep(rng.uniform(0.2, 1.2))
                    peak = max(peak, peak_rss_mb(server.pid) or 0.0)
                    crashes += not server.kill()  # SIGKILL, with stores in flight
                    kills += 1
            server = await ServeProcess.start(db)  # must open cleanly after every kill
            servers.append(server)
            figures = _check_file(db, acked)
            async with open_websocket_url(server.url, subprotocols=["mcp"]) as ws:
                mcp = Mcp(ws)  # the restarted server serves what was acknowledged
                await mcp.handshake()
                for memory_id in list(acked)[-3:]:
                    got = tool_result(await mcp.call("memory_get", {"id": memory_id}))
                    assert got["structuredContent"]["memory"]["content"] == acked[memory_id]
    finally:
        server.kill()
    tracebacks = [s.log.name for s in servers if "Traceback" in s.stderr()]
    assert not tracebacks, next(s.stderr() for s in servers if s.log.name in tracebacks)
    assert crashes == 0, "a server exited by itself"
    assert len(acked) > rounds, "the clients really wrote between the kills"
    return {"inputs": sent[0], "faults": kills + startup_kills + idle_kills,
            "kills_while_writing": kills, "kills_while_starting": startup_kills,
            "kills_while_idle": idle_kills, "acknowledged": len(acked),
            "lost": figures["lost"], "stored": figures["stored"],
            "unacknowledged_applied": figures["stored"] - len(acked), "crashes": crashes,
            "peak_rss_mb": peak, "rounds": rounds}


async def test_sigkill_the_server_short(tmp_path: Path) -> None:
    with trio.fail_after(120):
        report = await crash_rounds(tmp_path, rounds=10, seed=10)
    emit("server SIGKILL while clients write (10 rounds)", **report)


@pytest.mark.slow
async def test_sigkill_the_server_long(tmp_path: Path) -> None:
    with trio.fail_after(1200):
        report = await crash_rounds(tmp_path, rounds=100, seed=100)
    emit("server SIGKILL while clients write (100 rounds)", variant="long", **report)
