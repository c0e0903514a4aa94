"""A cancel storm over the wire: 1000 ``tools/call`` requests on live WebSockets, cancelled
at random points by ``notifications/cancelled`` (at once, after a random delay, or when a
client-side deadline passes) or by the client dropping its connection with calls in flight.

Afterwards: no task left behind (the trio task tree is back to what it was before the
storm; the engine's recall ``running`` and store ``pending_writes`` are 0), no request
answered twice or answered after its cancel was handled, every request that was not
cancelled answered once, no half-applied write (``check_consistency``), every acknowledged
store that was never the target of a forget still there, and the server still serves."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import apsw
import attrs
import pytest
import trio
import trio.testing
from trio_websocket import open_websocket_url

from tests.fakes import HashEmbedder
from tests.reliability._figures import emit, measured
from tests.reliability._wire import (
    Closed,
    Mcp,
    RawWs,
    count_tasks,
    running_server,
    tool_result,
    wait_until,
)
from tests.reliability.test_cancel_storm import check_consistency
from tests.transports._messages import initialize_params
from triomem import Engine, EngineConfig, open_engine
from triomem.transports import ServerAddress

KINDS = ("store", "store", "update", "forget", "recall", "list", "get")


@attrs.define
class Storm:
    rng: random.Random
    ids: list[str]  # memories that exist (seeded or acknowledged): targets for edits
    acked: dict[str, str] = attrs.field(factory=dict)  # stored and acknowledged: id -> content
    forgotten: set[str] = attrs.field(factory=set)  # ever the target of a forget request
    outcomes: Counter[str] = attrs.field(factory=Counter)
    next_id: int = 0

    def arguments(self, kind: str, n: int) -> tuple[str, dict[str, Any]]:
        rng = self.rng
        if kind == "store":
            return "memory_store", {"content": f"storm memory {n}", "tags": [f"t{n % 5}"]}
        target = rng.choice(self.ids)
        if kind == "update":
            return "memory_update", {"id": target, "content": f"storm edit {n}",
                                     "tags": [f"e{n % 3}"]}
        if kind == "forget":
            self.forgotten.add(target)
            return "memory_forget", {"id": target}
        if kind == "recall":
            return "memory_recall", {"query": f"storm memory {rng.randrange(n + 1)}"}
        if kind == "list":
            return "memory_list", {"tags_any": [f"t{n % 5}"], "limit": 20}
        return "memory_get", {"id": target}


async def _connection(address: ServerAddress, storm: Storm, numbers: list[int]) -> None:
    """Send the requests numbered ``numbers`` on one connection (reconnecting after each
    deliberate drop), cancelling some, and check what comes back."""
    rng = storm.rng
    pending = list(numbers)
    while pending:
        ws = await RawWs.connect(address.host, address.port)
        assert ws.status == 101
        replies: dict[int, list[dict[str, Any]]] = {}
        sent: dict[int, tuple[str, dict[str, Any]]] = {}
        cancelled: set[int] = set()
        answered = {n: trio.Event() for n in pending}
        ws_done = trio.Event()

        async def read(ws: RawWs = ws, replies: dict[int, list[dict[str, Any]]] = replies,
                       answered: dict[int, trio.Event] = answered,
                       ws_done: trio.Event = ws_done) -> None:
            while True:
                message = await ws.receive()
                if isinstance(message, Closed):
                    ws_done.set()
                    return
                request_id = message.get("id")
                assert isinstance(request_id, int), message  # never an answer to nothing
                replies.setdefault(request_id, []).append(message)
                if request_id in answered:
                    answered[request_id].set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await ws.send_text(json.dumps({"jsonrpc": "2.0", "id": -1, "method": "initialize",
                                           "params": initialize_params()}))
            await ws.send_text('{"jsonrpc":"2.0","method":"notifications/initialized"}')
            drop_after = rng.randrange(len(pending) + 1) if rng.random() < 0.3 else None
            for position, n in enumerate(list(pending)):
                if drop_after is not None and position >= drop_after + rng.randrange(1, 5):
                    break
                kind = rng.choice(KINDS)
                tool, arguments = storm.arguments(kind, n)
                sent[n] = (tool, arguments)
                pending.remove(n)
                await ws.send_text(json.dumps({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                                               "params": {"name": tool,
                                                          "arguments": arguments}}))
                if drop_after is not None and position >= drop_after:
                    continue  # a burst of calls, then the drop below
                mode = rng.choice(["answer", "cancel_now", "cancel_soon", "deadline",
                                   "cancel_soon"])
                if mode == "answer":
                    with trio.fail_after(30):
                        await answered[n].wait()
                    continue
                if mode == "cancel_soon":
                    await trio.sleep(rng.uniform(0, 0.01))
                elif mode == "deadline":
                    with trio.move_on_after(rng.uniform(0, 0.005)):
                        await answered[n].wait()
                        continue
                cancelled.add(n)
                await ws.send_text(json.dumps({
                    "jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": n, "reason": mode}}))
            if drop_after is not None:
                await trio.sleep(rng.uniform(0, 0.005))
                # Gone with calls in flight: the server cancels them; writes the engine
                # accepted still commit, their answers are dropped.
                storm.outcomes["disconnects"] += 1
                storm.outcomes["dropped_in_flight"] += sum(
                    1 for n in sent if n not in replies and n not in cancelled)
                await ws.aclose()
                nursery.cancel_scope.cancel()
            else:
                # A ping behind everything: its answer comes after every answer that can
                # still come (answers leave in the order the core hands them out).
                await ws.send_text('{"jsonrpc":"2.0","id":-2,"method":"ping"}')
                with trio.fail_after(30):
                    await wait_until(lambda r=replies: -2 in r)  # type: ignore[misc]
                await ws.aclose()
                nursery.cancel_scope.cancel()
                for n in sent:
                    got = replies.get(n, [])
                    assert len(got) <= 1, got
                    if n not in cancelled:
                        assert len(got) == 1, f"request {n} ({sent[n][0]}) never answered"
        for n, (tool, _) in sent.items():
            got = replies.get(n, [])
            assert len(got) <= 1, got  # answered at most once, even after a drop
            if not got:
                storm.outcomes["unanswered"] += 1
                continue
            reply = got[0]
            if n in cancelled:
                storm.outcomes["answered_before_cancel_arrived"] += 1
            if "error" in reply:
                storm.outcomes[f"error {reply['error']['data']['kind']}"] += 1
                continue
            result = reply["result"]
            if result["isError"]:
                storm.outcomes[f"tool error {result['structuredContent']['error']['kind']}"] += 1
                continue
            storm.outcomes["answered"] += 1
            if tool == "memory_store":
                memory = result["structuredContent"]["memory"]
                storm.acked[memory["id"]] = memory["content"]
                storm.ids.append(memory["id"])
        storm.outcomes["cancelled"] += len(cancelled)


async def _wait_quiet(engine: Engine, baseline: int) -> dict[str, int]:
    """Wait until every session is gone and the engine is idle; the leftovers."""
    with trio.move_on_after(20):
        while True:
            stats = await engine.statistics()
            # The statistics read's own helper task ends just after it answers.
            await trio.testing.wait_all_tasks_blocked()
            leftovers = {"leaked_tasks": count_tasks() - baseline,
                         "recall_running": stats.recall.running,
                         "recall_queued": stats.recall.queued,
                         "pending_writes": stats.store.pending_writes,
                         "store_queued": stats.store.queued, "embed_queued": stats.embed.queued}
            if not any(leftovers.values()):
                break
            await trio.sleep(0.05)
    return leftovers


async def wire_storm(tmp_path: Path, calls: int, connections: int, seed: int
                     ) -> dict[str, Any]:
    path = tmp_path / "wire-storm.db"
    config = EngineConfig(embedder=HashEmbedder(), executor="thread", seed=seed)
    with measured() as figures:
        async with open_engine(path, config) as engine:
            ids = [(await engine.remember(f"seed memory {i}")).memory.id for i in range(20)]
            storm = Storm(random.Random(seed), list(ids))
            async with running_server(engine) as address:
                await trio.testing.wait_all_tasks_blocked()
                baseline = count_tasks()

                async with trio.open_nursery() as nursery:
                    for c in range(connections):
                        nursery.start_soon(_connection, address, storm,
                                           list(range(c, calls, connections)))
                leftovers = await _wait_quiet(engine, baseline)
                async with open_websocket_url(address.url, subprotocols=["mcp"]) as ws:
                    mcp = Mcp(ws)  # the server still serves
                    await mcp.handshake()
                    after = tool_result(await mcp.call("memory_store",
                                                       {"content": "after the storm"}))
                    assert after["isError"] is False
                    recall = tool_result(await mcp.call("memory_recall",
                                                        {"query": "after the storm"}))
                    assert recall["structuredContent"]["hits"]
    consistency = check_consistency(path)
    conn = apsw.Connection(str(path))
    try:
        live = {row[0]: row[1] for row in conn.execute(
            "SELECT id, content FROM memories WHERE deleted_at IS NULL")}
        stored = {r[0] for r in conn.execute(
            "SELECT id FROM memories WHERE content LIKE 'storm memory %' OR deleted_at IS NOT NULL")}
    finally:
        conn.close()
    lost = [i for i in storm.acked if i not in storm.forgotten and i not in live]
    outcomes = dict(storm.outcomes)
    report = {"inputs": calls, "faults": outcomes.get("cancelled", 0) +
              outcomes.get("disconnects", 0), "acknowledged": len(storm.acked),
              "lost": len(lost), "crashes": 0, **leftovers, "live": consistency["live"],
              "unacknowledged_applied": len(stored - set(storm.acked) - set(ids)),
              "outcomes": outcomes, **figures}
    assert not lost, report
    assert not any(leftovers.values()), report
    assert outcomes.get("error internal_error", 0) == 0, report
    assert outcomes["cancelled"] > calls // 4 and outcomes["answered"] > calls // 10, report
    assert outcomes["disconnects"] > 0, report
    return report


async def test_cancel_storm_over_the_wire_short(tmp_path: Path) -> None:
    with trio.fail_after(90):
        report = await wire_storm(tmp_path, calls=1000, connections=16, seed=7)
    emit("cancel storm over WebSocket (1000 calls)", **report)


@pytest.mark.slow
async def test_cancel_storm_over_the_wire_long(tmp_path: Path) -> None:
    with trio.fail_after(900):
        report = await wire_storm(tmp_path, calls=50_000, connections=32, seed=8)
    emit("cancel storm over WebSocket (50k calls)", variant="long", **report)
