"""64 WebSocket clients, one server (seed 002's shape): each stores a fixed count of memories
and recalls as it goes. Every acknowledged write is in the file afterwards, exactly once, and
the store is consistent. The short variant runs in CI; the long one with --runslow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.fakes import HashEmbedder
from tests.reliability._figures import emit, measured
from tests.reliability._wire import Mcp, running_server, tool_result
from tests.reliability.test_cancel_storm import check_consistency
from triomem import EngineConfig, open_engine


async def many_clients(tmp_path: Path, clients: int, writes: int,
                       recall_every: int) -> dict[str, Any]:
    """Run the clients; check the file; return the figures."""
    path = tmp_path / "many.db"
    acked: dict[str, str] = {}  # id -> content
    recalls = found_own = 0
    latencies: list[float] = []

    async def client(url: str, n: int) -> None:
        nonlocal recalls, found_own
        async with open_websocket_url(url, subprotocols=["mcp"]) as ws:
            mcp = Mcp(ws)
            await mcp.handshake()
            for i in range(writes):
                content = f"client {n} writes note {i}, marker c{n}x{i}"
                started = time.perf_counter()
                stored = tool_result(await mcp.call("memory_store", {
                    "content": content, "tags": [f"c{n}"], "metadata": {"i": i}}))
                latencies.append(time.perf_counter() - started)
                assert stored["isError"] is False, stored
                memory = stored["structuredContent"]["memory"]
                assert memory["content"] == content
                acked[memory["id"]] = content
                if i % recall_every == 0:
                    recall = tool_result(await mcp.call("memory_recall", {
                        "query": f"c{n}x{i}", "limit": 5}))
                    assert recall["isError"] is False, recall
                    recalls += 1
                    hits = [h["memory"]["id"] for h in recall["structuredContent"]["hits"]]
                    found_own += memory["id"] in hits

    with measured() as figures:
        config = EngineConfig(embedder=HashEmbedder(), executor="thread")
        async with open_engine(path, config) as engine, running_server(engine) as address:
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for n in range(clients):
                    nursery.start_soon(client, address.url, n)
            wall = time.perf_counter() - started
            stats = (await engine.statistics()).store
    conn = apsw.Connection(str(path))
    try:
        stored = {row[0]: row[1] for row in conn.execute("SELECT id, content FROM memories")}
        duplicates = conn.execute("SELECT count(*) - count(DISTINCT content) FROM memories"
                                  ).fetchall()[0][0]
    finally:
        conn.close()
    consistency = check_consistency(path)
    latencies.sort()
    report = {
        "inputs": clients * writes + recalls, "faults": 0, "acknowledged": len(acked),
        "lost": sum(1 for i, c in acked.items() if stored.get(i) != c),
        "duplicates": duplicates, "unacknowledged_applied": len(set(stored) - set(acked)),
        "crashes": 0, "clients": clients, "recalls": recalls,
        "recall_found_own_write": found_own, "live": consistency["live"],
        "batches": stats.batches, "largest_batch": stats.largest_batch,
        "writes_per_s": round(len(acked) / wall, 1),
        "store_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        **figures,
    }
    assert len(acked) == clients * writes, report
    assert report["lost"] == 0, report
    assert report["duplicates"] == 0, report
    assert report["unacknowledged_applied"] == 0, report
    # Read your writes: a recall right after an acknowledged store finds it.
    assert found_own == recalls, report
    return report


async def test_64_clients_one_server_short(tmp_path: Path) -> None:
    with trio.fail_after(90):
        report = await many_clients(tmp_path, clients=64, writes=40, recall_every=4)
    emit("many clients, one server (64 x 40)", **report)
    assert report["largest_batch"] > 1  # the clients really wrote at once (group commit)
    assert report["peak_rss_mb"] is None or report["rss_growth_mb"] < 1024, report


@pytest.mark.slow
async def test_64_clients_one_server_long(tmp_path: Path) -> None:
    with trio.fail_after(900):
        report = await many_clients(tmp_path, clients=64, writes=500, recall_every=5)
    emit("many clients, one server (64 x 500)", variant="long", **report)
    assert report["peak_rss_mb"] is None or report["rss_growth_mb"] < 2048, report
