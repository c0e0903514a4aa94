"""serve_session over the in-memory transport, with a real engine on a real SQLite file."""

from __future__ import annotations

import itertools
import json
from typing import Any

import attrs
import pytest
import trio

from tests.fakes import GateEmbedder
from tests.transports._messages import (
    LEGACY,
    call_params,
    initialize_params,
    is_well_formed_reply,
    modern_meta,
)
from triomem import Engine
from triomem.transports import InMemoryClient, SessionOptions, open_memory_session, serve_session
from triomem.transports.mcp import TOOLS, ServerOptions


async def handshake(client: InMemoryClient) -> dict[str, Any]:
    answer = await client.request("initialize", initialize_params(), request_id=0)
    await client.notify("notifications/initialized")
    return answer


async def call(client: InMemoryClient, name: str, arguments: dict[str, Any] | None = None,
               **extra: Any) -> dict[str, Any]:
    reply = await client.request("tools/call", {**call_params(name, arguments), **extra})
    assert is_well_formed_reply(reply), reply
    result: dict[str, Any] = reply["result"]
    return result


def ok(result: dict[str, Any]) -> dict[str, Any]:
    assert result["isError"] is False, result
    # The text block is a JSON copy of the structured content.
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    structured: dict[str, Any] = result["structuredContent"]
    return structured


async def test_legacy_session_runs_every_tool(engine: Engine) -> None:
    with trio.fail_after(10):
        async with open_memory_session(engine) as client:
            assert (await handshake(client))["result"]["protocolVersion"] == LEGACY
            listed = (await client.request("tools/list"))["result"]["tools"]
            assert [t["name"] for t in listed] == [t.name for t in TOOLS]

            stored = ok(await call(client, "memory_store", {
                "content": "the user prefers dark mode", "tags": ["ui"], "type": "preference",
                "metadata": {"source": "chat"}}))
            assert stored["created"] is True
            memory_id = stored["memory"]["id"]
            again = ok(await call(client, "memory_store", {"content": "the user prefers dark "
                                                                      "mode"}))
            assert again == {**again, "created": False}
            assert again["memory"]["id"] == memory_id

            hits = ok(await call(client, "memory_recall", {"query": "dark mode",
                                                           "tags_any": ["ui"]}))
            assert hits["partial"] is False
            assert hits["hits"][0]["memory"]["id"] == memory_id

            got = ok(await call(client, "memory_get", {"id": memory_id}))
            assert got["memory"]["metadata"] == {"source": "chat"}
            updated = ok(await call(client, "memory_update", {"id": memory_id,
                                                              "tags": ["ui", "theme"]}))
            assert updated["memory"]["tags"] == ["ui", "theme"]
            listing = ok(await call(client, "memory_list", {"tags_all": ["theme"]}))
            assert [m["id"] for m in listing["memories"]] == [memory_id]
            stats = ok(await call(client, "memory_stats"))
            assert stats["embedder"] == engine.embedder_id

            assert ok(await call(client, "memory_forget", {"id": memory_id})) == {
                "id": memory_id, "erased": True}
            gone = await call(client, "memory_get", {"id": memory_id})
            assert gone["isError"] is True
            assert gone["structuredContent"]["error"]["kind"] == "not_found"
    with pytest.raises(Exception, match="no memory"):
        await engine.get(memory_id)


async def test_modern_session_needs_no_handshake(engine: Engine) -> None:
    with trio.fail_after(10):
        async with open_memory_session(engine) as client:
            discover = await client.request("server/discover", {"_meta": modern_meta()})
            assert discover["result"]["resultType"] == "complete"
            result = await call(client, "memory_store", {"content": "modern"},
                                _meta=modern_meta())
            assert result["resultType"] == "complete"
            assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "triomem"
            assert ok(result)["created"] is True
    assert (await engine.list()).memories[0].content == "modern"


async def test_tool_errors_name_the_field(engine: Engine) -> None:
    with trio.fail_after(10):
        async with open_memory_session(engine) as client:
            await handshake(client)
            bad = await call(client, "memory_store", {"content": "x", "tags": [""]})
            assert bad["isError"] is True
            assert bad["structuredContent"]["error"]["field"] == "tags[0]"  # from the engine
            bad = await call(client, "memory_recall", {"query": "x", "before": "soon"})
            assert bad["structuredContent"]["error"]["field"] == "before"
            unknown = await client.request("tools/call", call_params("memory_nope", {}))
            assert unknown["error"]["code"] == -32602
            assert "memory_nope" in unknown["error"]["message"]
    assert (await engine.list()).memories == ()


async def test_time_filters_take_iso_dates_and_phrases(engine: Engine) -> None:
    with trio.fail_after(10):
        async with open_memory_session(engine) as client:
            await handshake(client)
            ok(await call(client, "memory_store", {"content": "a dated memory"}))
            found = ok(await call(client, "memory_recall", {"query": "dated",
                                                            "after": "yesterday"}))
            assert [h["memory"]["content"] for h in found["hits"]] == ["a dated memory"]
            none = ok(await call(client, "memory_list", {"created_before": "2001-01-01"}))
            assert none["memories"] == []
            bad = await call(client, "memory_list", {"created_after": "in a jiffy"})
            assert bad["structuredContent"]["error"]["field"] == "created_after"


async def test_embedder_failure_is_a_tool_error(engine: Engine) -> None:
    embedder = engine.config.embedder
    assert not isinstance(embedder, str)
    embedder.fail_next = 1  # type: ignore[attr-defined]
    with trio.fail_after(10):
        async with open_memory_session(engine) as client:
            await handshake(client)
            failed = await call(client, "memory_store", {"content": "never stored"})
            assert failed["isError"] is True
            assert failed["structuredContent"]["error"]["kind"] == "embedder_unavailable"
            assert ok(await call(client, "memory_store", {"content": "stored"}))["created"]


async def test_bad_input_is_answered_and_the_session_goes_on(engine: Engine) -> None:
    with trio.fail_after(10):
        async with open_memory_session(engine) as client:
            await client.send("{not json")
            assert (await client.receive())["error"]["code"] == -32700
            await client.send("[]")
            assert (await client.receive())["error"]["code"] == -32600
            await client.send('{"id": 1, "method": "ping"}')
            assert (await client.receive()) == {
                "jsonrpc": "2.0", "id": 1, "error": {
                    "code": -32600, "message": 'Missing "jsonrpc": "2.0"',
                    "data": {"kind": "invalid_request"}}}
            await client.send('{"jsonrpc": "2.0", "id": null, "method": "ping"}')
            assert (await client.receive())["error"]["code"] == -32600
            await client.send(b"\xff\xfe")
            assert (await client.receive())["error"]["code"] == -32700
            tools = await client.request("tools/list")
            assert tools["error"]["data"]["kind"] == "not_initialized"
            await handshake(client)
            wrong_params: list[dict[str, Any]] = [
                {"name": 5}, {"name": "memory_stats", "arguments": "all"}, {"arguments": {}}]
            for params in wrong_params:
                wrong = await client.request("tools/call", params)
                assert wrong["error"]["code"] == -32602
            assert (await client.request("tools/list", {"cursor": 3}))["error"]["code"] == (
                -32602)
            await client.notify("notifications/cancelled", {"requestId": "nobody"})
            assert (await client.request("ping", request_id=0))["result"] == {}


async def test_notifications_are_never_answered(engine: Engine) -> None:
    with trio.fail_after(10):
        async with open_memory_session(engine) as client:
            await handshake(client)
            await client.notify("notifications/whatever", {"x": 1})
            await client.send({"jsonrpc": "2.0", "method": "notifications/initialized",
                               "params": 5})
            await client.send({"jsonrpc": "2.0", "id": 99, "result": {}})  # a peer response
            reply = await client.request("ping", request_id="after")
            assert reply["id"] == "after"
            assert client.notifications == []


async def test_recall_reports_progress_before_its_answer(engine: Engine) -> None:
    with trio.fail_after(10):
        async with open_memory_session(engine) as client:
            await handshake(client)
            await call(client, "memory_store", {"content": "progress is reported"})
            result = await call(client, "memory_recall", {"query": "progress"},
                                _meta={"progressToken": "p1"})
            ok(result)
            progress = [n["params"] for n in client.notifications
                        if n["method"] == "notifications/progress"]
            assert len(progress) >= 2  # our "started", then the engine's steps
            assert {p["progressToken"] for p in progress} == {"p1"}
            values = [p["progress"] for p in progress]
            assert values[0] == 0
            assert all(a < b for a, b in itertools.pairwise(values))
            client.notifications.clear()
            await call(client, "memory_recall", {"query": "progress"})
            assert client.notifications == []


async def test_cancelled_request_is_never_answered(gated_engine: Engine,
                                                   gate: GateEmbedder) -> None:
    with trio.fail_after(10):
        async with open_memory_session(gated_engine) as client:
            await handshake(client)
            await client.send({"jsonrpc": "2.0", "id": "slow", "method": "tools/call",
                               "params": call_params("memory_recall", {"query": "HOLD"})})
            await gate.wait_entered()
            await client.notify("notifications/cancelled", {"requestId": "slow",
                                                            "reason": "user"})
            # Calls that need no embedding are still served while the embedder is held.
            stats = await call(client, "memory_stats")
            assert stats["isError"] is False
            gate.release()
            stored = ok(await call(client, "memory_store", {"content": "after cancel"}))
            assert stored["created"]
            assert all(n.get("id") != "slow" for n in client.notifications)


async def test_in_flight_limit_answers_overloaded(gated_engine: Engine,
                                                  gate: GateEmbedder) -> None:
    options = SessionOptions(server=ServerOptions(max_in_flight=2), max_concurrent=1)
    with trio.fail_after(10):
        async with open_memory_session(gated_engine, options=options) as client:
            await handshake(client)
            for n in (1, 2):
                await client.send({"jsonrpc": "2.0", "id": n, "method": "tools/call",
                                   "params": call_params("memory_store",
                                                         {"content": f"HOLD {n}"})})
            await gate.wait_entered()
            refused = await client.request("tools/call", call_params("memory_stats"),
                                           request_id=3)
            assert refused["error"]["code"] == -32004
            gate.release()
            answers = {(await client.receive())["id"] for _ in range(2)}
            assert answers == {1, 2}
    assert len((await gated_engine.list()).memories) == 2


async def test_closing_the_connection_cancels_its_calls_but_keeps_committed_writes(
        gated_engine: Engine, gate: GateEmbedder) -> None:
    with trio.fail_after(10):
        async with open_memory_session(gated_engine) as client:
            await handshake(client)
            stored = ok(await call(client, "memory_store", {"content": "acknowledged"}))
            await client.send({"jsonrpc": "2.0", "id": "held", "method": "tools/call",
                               "params": call_params("memory_recall", {"query": "HOLD"})})
            await gate.wait_entered()
        # The session is over (its call cancelled) while the embedder still holds the recall.
        gate.release()
        memory = await gated_engine.get(stored["memory"]["id"])
        assert memory.content == "acknowledged"


async def test_eof_can_finish_calls_first_as_stdio_does(engine: Engine) -> None:
    options = SessionOptions(cancel_on_eof=False)
    with trio.fail_after(10):
        async with open_memory_session(engine, options=options) as client:
            await handshake(client)
            await client.send({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                               "params": call_params("memory_store", {"content": "eof"})})
            client.close()
            reply = await client.receive()
            assert reply["id"] == 5 and reply["result"]["isError"] is False
            with pytest.raises(trio.EndOfChannel):
                await client.receive()


async def test_draining_refuses_new_calls_and_finishes_old_ones(
        gated_engine: Engine, gate: GateEmbedder) -> None:
    draining = trio.Event()
    with trio.fail_after(10):
        async with open_memory_session(gated_engine, draining=draining) as client:
            await handshake(client)
            await client.send({"jsonrpc": "2.0", "id": "old", "method": "tools/call",
                               "params": call_params("memory_store", {"content": "HOLD me"})})
            await gate.wait_entered()
            draining.set()
            refused = await client.request("tools/call", call_params("memory_stats"))
            assert refused["error"]["data"]["kind"] == "shutting_down"
            gate.release()
            finished = await client.receive()
            assert finished["id"] == "old" and finished["result"]["isError"] is False
            with pytest.raises(trio.EndOfChannel):
                await client.receive()
    assert (await gated_engine.list()).memories[0].content == "HOLD me"


@attrs.define(eq=False)
class _SlowSends:
    """A transport whose ``send`` takes several scheduling rounds and notices overlap: the
    session's own ordering, not the transport's, must keep the messages in order."""

    incoming: trio.MemoryReceiveChannel[str]
    sent: list[dict[str, Any]] = attrs.field(factory=list)
    overlapped: int = 0
    _sending: bool = False

    async def receive(self) -> str | bytes:
        return await self.incoming.receive()

    async def send(self, text: str) -> None:
        if self._sending:
            self.overlapped += 1
        self._sending = True
        for _ in range(3):
            await trio.lowlevel.checkpoint()
        self.sent.append(json.loads(text))
        self._sending = False


async def test_concurrent_answers_are_sent_one_at_a_time_progress_first(engine: Engine) -> None:
    """Replies take the short path (straight from the call's task) or the writer's queue;
    either way one send at a time, every request answered once, each recall's progress
    before its answer."""
    send, receive = trio.open_memory_channel[str](64)
    transport = _SlowSends(receive)
    requests: list[dict[str, Any]] = [{"jsonrpc": "2.0", "id": 0, "method": "initialize",
                                       "params": initialize_params()},
                                      {"jsonrpc": "2.0", "method": "notifications/initialized"}]
    for i in range(1, 25):
        if i % 3:
            params = call_params("memory_store", {"content": f"memory number {i}"})
        else:
            params = {**call_params("memory_recall", {"query": "memory"}),
                      "_meta": {"progressToken": f"p{i}"}}
        requests.append({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params})
        if i % 4 == 0:
            requests.append({"jsonrpc": "2.0", "id": 100 + i, "method": "ping"})
    for message in requests:
        send.send_nowait(json.dumps(message))
    send.close()
    with trio.fail_after(10):
        await serve_session(engine, transport, options=SessionOptions(cancel_on_eof=False))
    assert transport.overlapped == 0
    answered = [m["id"] for m in transport.sent if "id" in m]
    expected = [m["id"] for m in requests if "id" in m]
    assert sorted(answered) == sorted(expected)
    for i in range(3, 25, 3):
        token = f"p{i}"
        positions = [n for n, m in enumerate(transport.sent)
                     if m.get("params", {}).get("progressToken") == token]
        values = [transport.sent[n]["params"]["progress"] for n in positions]
        assert len(positions) >= 2 and values == sorted(values), token
        assert max(positions) < next(n for n, m in enumerate(transport.sent)
                                     if m.get("id") == i), token
