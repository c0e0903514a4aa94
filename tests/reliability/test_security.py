"""Security over the wire: no serving beyond loopback without a token; a missing or wrong
token refused (401) before any engine work; a browser Origin outside the allow-list refused
(403); SQL and FTS5 injection through every tool parameter inert (typed errors or ordinary
results, every table still there, ``integrity_check`` ok, other memories untouched).

``ONCE_FATAL`` lists inputs that used to take the whole engine down with one request (fixed
in d1c23e5); they stay here as regressions."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import apsw
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.fakes import HashEmbedder
from tests.reliability._figures import emit
from tests.reliability._wire import (
    ROOT,
    Mcp,
    RawWs,
    clean_environment,
    running_server,
    text_frame,
    tool_result,
)
from tests.reliability.test_cancel_storm import check_consistency
from triomem import Engine, EngineConfig, InvalidMemory, open_engine
from triomem.transports import InsecureBind, WebSocketOptions, serve_websocket
from triomem.transports.mcp import McpConnection, Reply

TOKEN = "s3cret-token-0123456789"


def _config() -> EngineConfig:
    return EngineConfig(embedder=HashEmbedder(), executor="thread")


# -- binding ------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
async def test_serve_beyond_loopback_without_a_token_exits_2(tmp_path: Path, host: str) -> None:
    env = clean_environment(tmp_path)
    env["TRIOMEM_TOKEN"] = ""  # set but empty is no token
    with trio.fail_after(60):
        result = await trio.run_process(
            [sys.executable, "-m", "triomem", "serve", "--db", str(tmp_path / "never.db"),
             "--host", host, "--port", "0", "--embedder", "wordllama"],
            cwd=ROOT, env=env, capture_stdout=True, capture_stderr=True, check=False)
    assert result.returncode == 2, result.stderr.decode()
    assert b"token" in result.stderr
    assert not (tmp_path / "never.db").exists()  # refused before opening anything


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "10.0.0.1", "example.com",
                                  "127.0.0.1.nip.io", "localhost.example"])
async def test_serve_websocket_refuses_non_loopback_hosts_without_a_token(
        tmp_path: Path, host: str) -> None:
    async with open_engine(tmp_path / "b.db", _config()) as engine:
        for token in (None, ""):
            with trio.fail_after(10), pytest.raises(InsecureBind):
                await serve_websocket(engine, host, 0, options=WebSocketOptions(token=token))


# -- the token ----------------------------------------------------------------------------

def _work(stats: Any) -> dict[str, int]:
    """Counters that move when the engine does anything for a client."""
    return {"writes": stats.store.writes_committed + stats.store.writes_failed,
            "batches": stats.store.batches, "texts_embedded": stats.embed.texts,
            "recalls": stats.recall.served, "reads": stats.store.reads}


STORE = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
    "name": "memory_store", "arguments": {"content": "written by an intruder"}}})
INITIALIZE = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "x", "version": "1"}}})

BAD_CREDENTIALS: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("/mcp", ()),
    ("/mcp", (("Authorization", "Bearer wrong"),)),
    ("/mcp", (("Authorization", "Bearer "),)),
    ("/mcp", (("Authorization", "Bearer " + TOKEN[:-1]),)),
    ("/mcp", (("Authorization", "Bearer " + TOKEN + "x"),)),
    ("/mcp", (("Authorization", "Bearer " + TOKEN.upper()),)),
    ("/mcp", (("Authorization", "Basic czNjcmV0LXRva2Vu"),)),
    ("/mcp", (("Authorization", TOKEN),)),
    ("/mcp", (("X-Token", TOKEN),)),
    ("/mcp?token=wrong", ()),
    ("/mcp?token=", ()),
    ("/mcp?token=" + TOKEN[:-1], ()),
    ("/mcp?TOKEN=" + TOKEN, ()),
    ("/mcp?token=%00" + TOKEN, ()),
    ("/hub", ()),
]


async def test_a_missing_or_wrong_token_is_refused_before_any_engine_work(
        tmp_path: Path) -> None:
    path = tmp_path / "guarded.db"
    async with open_engine(path, _config()) as engine:
        await engine.remember("already here")
        options = WebSocketOptions(token=TOKEN, hub=True)
        async with running_server(engine, options) as address:
            before = _work(await engine.statistics())
            with trio.fail_after(30):
                for target, headers in BAD_CREDENTIALS:
                    ws = await RawWs.connect(address.host, address.port, path=target,
                                             headers=headers)
                    # A client that does not wait for the answer: its message right behind
                    # the upgrade request must never reach the engine.
                    await ws.send(text_frame(INITIALIZE) + text_frame(STORE))
                    assert ws.status == 401, (target, headers, ws.status)
                    assert ws.headers.get("www-authenticate") == "Bearer"
                    with trio.fail_after(2):  # the server hangs up (no WebSocket was opened)
                        assert (await ws.closed()).code is None
                    await ws.aclose()
            after = _work(await engine.statistics())
            assert after == {**before, "reads": before["reads"] + 1}  # the statistics read
            # The right token, in each way a client can give it, is let in (and the counters
            # do move when a client is served).
            for target, headers in (("/mcp", (("Authorization", "Bearer " + TOKEN),)),
                                    ("/mcp", (("authorization", "bearer " + TOKEN),)),
                                    ("/mcp?token=" + TOKEN, ())):
                ws = await RawWs.connect(address.host, address.port, path=target,
                                         headers=headers)
                assert ws.status == 101
                await ws.aclose()
            async with open_websocket_url(address.url, extra_headers=[
                    (b"Authorization", f"Bearer {TOKEN}".encode())]) as conn:
                mcp = Mcp(conn)
                await mcp.handshake()
                assert tool_result(await mcp.call("memory_list"))["isError"] is False
            assert _work(await engine.statistics())["reads"] > after["reads"] + 1
    db = apsw.Connection(str(path))
    contents = [r[0] for r in db.execute("SELECT content FROM memories")]
    db.close()
    assert contents == ["already here"]


# -- Origin -------------------------------------------------------------------------------

FOREIGN = ["https://evil.example", "null", "http://localhost.evil.example",
           "http://127.0.0.1.evil.example", "http://localhost@evil.example",
           "http://evil.example#@localhost", "file://", "chrome-extension://abcdef",
           "http://0x7f000001", "http://127.1", "https://app.example.evil",
           "http://app.example", "https://app.example:8443", ""]


@pytest.mark.parametrize(("allowed", "refused", "accepted"), [
    (None, FOREIGN[:-4], ["http://localhost:5173", "http://127.0.0.1:8000", "http://[::1]",
                          "https://LOCALHOST"]),
    (("https://app.example",), [o for o in FOREIGN if "localhost" not in o] +
     ["http://localhost:5173", "http://127.0.0.1"], ["https://app.example",
                                                     "https://APP.example/"]),
])
async def test_a_browser_origin_outside_the_allow_list_is_refused(
        tmp_path: Path, allowed: tuple[str, ...] | None, refused: list[str],
        accepted: list[str]) -> None:
    async with open_engine(tmp_path / "origin.db", _config()) as engine:
        options = WebSocketOptions(token=TOKEN, allowed_origins=allowed)
        auth = ("Authorization", "Bearer " + TOKEN)
        async with running_server(engine, options) as address:
            before = _work(await engine.statistics())
            with trio.fail_after(30):
                for origin in refused:
                    # Refused with the right token too: a page must not ride on a token the
                    # browser happens to hold.
                    ws = await RawWs.connect(address.host, address.port,
                                             headers=(("Origin", origin), auth))
                    await ws.send(text_frame(INITIALIZE) + text_frame(STORE))
                    assert ws.status == 403, (origin, ws.status)
                    with trio.fail_after(2):
                        assert (await ws.closed()).code is None
                    await ws.aclose()
                after = _work(await engine.statistics())
                assert after == {**before, "reads": before["reads"] + 1}
                for origin in accepted:
                    ws = await RawWs.connect(address.host, address.port,
                                             headers=(("Origin", origin), auth))
                    assert ws.status == 101, (origin, ws.status)
                    await ws.aclose()


# -- injection ----------------------------------------------------------------------------

INJECTIONS = [
    "'); DROP TABLE memories; --", "\"); DROP TABLE memory_fts; --", '"', "'", "*", "NEAR(",
    "NEAR(a b, 2)", "content:", "content: x", "{content tags}: x", "tags:secret", "^x", "-x",
    "a AND b OR NOT c", "x' UNION SELECT key, value FROM meta --", "' OR '1'='1",
    "1; ATTACH DATABASE '/tmp/pwn.db' AS pwn; --", "memory_fts MATCH '*'", "%", "_", "\\",
    "\x00", "a\x00b", "\u202e", "\ufeff", " ", "", "x" * 70_000, "0x10", "-1",
    "1e999", "7fffffffffffffff", "../../../etc/passwd", "$(rm -rf /)",
    "2025-01-01'; DROP TABLE memories; --", "yesterday; DROP TABLE memories",
    "\ud800", "a\udfffb", "f" * 20, "99999999999 days ago",
]


def _nested(depth: int) -> list[Any]:
    value: list[Any] = ["deep"]
    for _ in range(depth - 1):
        value = [value]
    return value


# One request each used to close the engine (an untyped error inside the store actor) or to
# answer internal_error; now typed errors.
ONCE_FATAL: list[tuple[str, dict[str, Any]]] = [
    ("memory_list", {"cursor": "f" * 20}), ("memory_list", {"cursor": "ffffffffffffffff"}),
    ("memory_list", {"cursor": "-8000000000000001"}),
    ("memory_recall", {"query": "x", "tags_all": ["\ud800"]}),
    ("memory_recall", {"query": "x", "tags_any": ["\udfff"]}),
    ("memory_list", {"tags_all": ["\ud800"]}), ("memory_list", {"tags_any": ["\ud800"]}),
    ("memory_get", {"id": "\ud800"}), ("memory_forget", {"id": "\ud800"}),
    ("memory_update", {"id": "\ud800", "content": "x"}),
    ("memory_update", {"id": "VICTIM", "tags": ["\ud800"]}),
    ("memory_store", {"content": "surrogate key", "idempotency_key": "\ud800"}),
    ("memory_store", {"content": "surrogate meta", "metadata": {"\ud800": 1}}),
    ("memory_recall", {"query": "x", "after": "99999999999 days ago"}),
    ("memory_recall", {"query": "x", "before": "99999999 years ago"}),
    ("memory_list", {"created_after": "last 99999999999 days"}),
    ("memory_list", {"updated_before": "99999999 years ago"}),
    ("memory_store", {"content": "deep", "metadata": {"a": _nested(40)}}),
]
TIME_FIELDS = {"memory_recall": ("after", "before"),
               "memory_list": ("created_after", "created_before", "updated_after",
                               "updated_before")}


def injection_cases(victim: str) -> list[tuple[str, dict[str, Any]]]:
    """Every tool parameter that reaches SQL, FTS5 or the time parser, with ``value``."""
    cases: list[tuple[str, dict[str, Any]]] = []
    for n, v in enumerate(INJECTIONS):
        cases += [
            ("memory_store", {"content": v}),
            ("memory_store", {"content": f"tagged {n}", "tags": [v]}),
            ("memory_store", {"content": f"typed {n}", "type": v}),
            ("memory_store", {"content": f"spaced {n}", "space": v}),
            ("memory_store", {"content": f"meta {n}", "metadata": {v: v, "k": [v, {v: v}]}}),
            ("memory_store", {"content": f"keyed {n}", "idempotency_key": v}),
            ("memory_recall", {"query": v}),
            ("memory_recall", {"query": "seed", "space": v, "type": v}),
            ("memory_recall", {"query": "seed", "tags_all": [v], "tags_any": [v, "t"]}),
            ("memory_get", {"id": v}), ("memory_forget", {"id": v}),
            ("memory_update", {"id": v, "content": "never stored"}),
            ("memory_update", {"id": victim, "content": f"victim {n} {v}"}),
            ("memory_update", {"id": victim, "tags": [v], "type": v,
                               "metadata": {v: [v]}}),
            ("memory_list", {"space": v, "type": v}),
            ("memory_list", {"tags_all": [v], "tags_any": [v]}),
            ("memory_list", {"cursor": v}),
        ]
        for tool, fields in TIME_FIELDS.items():
            base = {"query": "seed"} if tool == "memory_recall" else {}
            cases += [(tool, {**base, field: v}) for field in fields]
    once_fatal = [(tool, {k: victim if v == "VICTIM" else v for k, v in arguments.items()})
                  for tool, arguments in ONCE_FATAL]
    return cases + once_fatal


def _kind(reply: dict[str, Any]) -> str:
    if "error" in reply:
        return f"error {reply['error']['data']['kind']}"
    result = reply["result"]
    return f"tool error {result['structuredContent']['error']['kind']}" \
        if result["isError"] else "ok"


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = apsw.Connection(str(path))
    try:
        return sorted((str(kind), str(name)) for kind, name in
                      conn.execute("SELECT type, name FROM sqlite_master"))
    finally:
        conn.close()


async def _seed(engine: Engine) -> tuple[dict[str, str], str]:
    kept = {}
    for i in range(10):
        memory = (await engine.remember(f"seed memory {i}", tags=["t", f"s{i}"])).memory
        kept[memory.id] = memory.content
    victim = (await engine.remember("the victim of updates")).memory.id
    return kept, victim


async def test_sql_and_fts5_injection_through_every_parameter_is_inert(tmp_path: Path) -> None:
    path = tmp_path / "inject.db"
    outcomes: dict[str, int] = {}
    async with open_engine(path, _config()) as engine:
        kept, victim = await _seed(engine)
        schema = _schema(path)
        cases = injection_cases(victim)
        async with running_server(engine) as address, \
                open_websocket_url(address.url, subprotocols=["mcp"]) as ws:
            mcp = Mcp(ws)
            await mcp.handshake()
            with trio.fail_after(120):
                for tool, arguments in cases:
                    reply = await mcp.call(tool, arguments)  # well-formed, or BadReply
                    kind = _kind(reply)
                    outcomes[kind] = outcomes.get(kind, 0) + 1
                    assert kind in ("ok", "tool error invalid_input", "tool error not_found",
                                    "tool error duplicate_content"), (tool, arguments, reply)
                    if tool == "memory_store" and kind == "ok":
                        # Stored as given, and read back as given.
                        memory = reply["result"]["structuredContent"]["memory"]
                        got = tool_result(await mcp.call("memory_get", {"id": memory["id"]}))
                        assert got["structuredContent"]["memory"] == memory
                        assert memory["content"] == arguments["content"]
                # The engine is alive and well.
                assert tool_result(await mcp.call("memory_recall", {"query": "seed memory"})
                                   )["structuredContent"]["hits"]
    assert _schema(path) == schema, "a table, index or trigger changed"
    check_consistency(path)  # integrity_check ok; the indexes match the table
    conn = apsw.Connection(str(path))
    try:
        for memory_id, content in kept.items():
            assert conn.execute("SELECT content FROM memories WHERE id = ?",
                                (memory_id,)).fetchall() == [(content,)]
    finally:
        conn.close()
    emit("SQL/FTS5 injection through every tool parameter", inputs=len(cases), faults=0,
         acknowledged=outcomes.get("ok", 0), lost=0, crashes=0, outcomes=outcomes)


async def test_deep_metadata_through_the_engine_api_is_a_typed_error(tmp_path: Path) -> None:
    async with open_engine(tmp_path / "deep.db", _config()) as engine:
        with trio.fail_after(60):
            # Past Python's stack it once raised RecursionError from validation, or passed and
            # then closed the engine from inside its store actor.
            for depth in (33, 500, 900, 960, 980, 990, 1000, 5000):
                deep: dict[str, Any] = {}
                node = deep
                for _ in range(depth):
                    node["a"] = {}
                    node = node["a"]
                with pytest.raises(InvalidMemory, match="nested deeper"):
                    await engine.remember(f"deep metadata {depth}", metadata=deep)
            await engine.statistics()  # still open


def test_the_transport_caps_nesting() -> None:
    conn = McpConnection()
    for depth, refused in ((120, False), (129, True), (100_000, True)):
        message = ('{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":' + "[" * depth +
                   "]" * depth + "}}")
        event = conn.receive(message)
        assert isinstance(event, Reply)
        reply = json.loads(event.text)
        if refused:
            assert reply["error"]["code"] == -32700, reply
            assert reply["error"]["data"]["reason"] == "nested too deeply"
        else:
            assert reply["result"] == {}
