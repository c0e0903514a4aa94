"""Property: nothing a peer sends makes the core raise, and every reply is well-formed
JSON-RPC answering the right id. Pure (Hypothesis)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.transports._messages import (
    initialize_params,
    is_well_formed_reply,
    modern_meta,
    request,
)
from triomem.engine import NotFound
from triomem.transports.mcp import McpConnection, Reply, StartCall

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(
    allow_nan=False, allow_infinity=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=10), children, max_size=4),
    max_leaves=20)

METHODS = ["initialize", "ping", "tools/list", "tools/call", "server/discover",
           "logging/setLevel", "notifications/initialized", "notifications/cancelled",
           "resources/list"]
TOOL_NAMES = ["memory_store", "memory_recall", "memory_get", "memory_update", "memory_forget",
              "memory_list", "memory_stats", "nope"]

ids = st.none() | st.integers(-3, 3) | st.sampled_from(["a", "", "0"]) | json_values
params = st.one_of(
    json_values,
    st.fixed_dictionaries({"protocolVersion": st.sampled_from(
        ["2025-11-25", "2024-11-05", "2026-07-28", "bogus"]) | json_values},
        optional={"capabilities": json_values, "clientInfo": json_values}),
    st.fixed_dictionaries({"name": st.sampled_from(TOOL_NAMES) | json_values},
                          optional={"arguments": st.dictionaries(st.sampled_from(
                              ["content", "query", "id", "tags", "limit", "after", "x"]),
                              json_values, max_size=3) | json_values,
                              "_meta": st.just(modern_meta()) | st.fixed_dictionaries(
                                  {"progressToken": json_values})}),
    st.fixed_dictionaries({"requestId": ids}),
    st.fixed_dictionaries({"_meta": st.just(modern_meta()) | json_values}),
)
messages = st.one_of(
    st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0") | json_values},
        optional={"id": ids, "method": st.sampled_from(METHODS) | json_values,
                  "params": params, "result": json_values}),
    json_values,
)
wire = st.one_of(
    messages.map(json.dumps),
    st.text(max_size=40),
    st.binary(max_size=40),
)


def check_reply(text: str, sent: Any) -> None:
    decoded = json.loads(text)
    assert is_well_formed_reply(decoded), decoded
    assert "method" not in decoded  # the core replies; notifications come from progress()
    if isinstance(sent, dict) and "id" in sent and "error" not in decoded:
        assert decoded["id"] == sent["id"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["none", "legacy", "modern"]), st.lists(wire, min_size=1, max_size=12),
       st.data())
def test_arbitrary_input_never_raises_and_replies_are_well_formed(
        opening: str, inputs: list[str | bytes], data: st.DataObject) -> None:
    conn = McpConnection()
    # Start some runs past the handshake so the fuzzing reaches the tool calls too.
    if opening == "legacy":
        conn.receive(request(0, "initialize", initialize_params()))
    elif opening == "modern":
        conn.receive(request(0, "server/discover", {"_meta": modern_meta()}))
    for item in inputs:
        try:
            sent = json.loads(item)
        except ValueError:
            sent = None
        event = conn.receive(item)
        if isinstance(sent, dict) and sent.get("jsonrpc") == "2.0" and "id" not in sent and \
                isinstance(sent.get("method"), str):
            assert not isinstance(event, Reply), "a notification was answered"
        if isinstance(event, Reply):
            check_reply(event.text, sent)
        elif isinstance(event, StartCall):
            outcome = data.draw(st.sampled_from(["fail", "crash", "cancel"]))
            if outcome == "fail":
                text = conn.call_failed(event.key, NotFound("x"))
            elif outcome == "crash":
                text = conn.call_failed(event.key, RuntimeError("bug"))
            else:
                conn.call_cancelled(event.key)
                text = None
            if text is not None:
                check_reply(text, sent)
    assert conn.in_flight >= 0
