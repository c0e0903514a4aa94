"""The era state table of McpConnection: legacy handshake, modern stateless, undecided. Pure."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.transports._messages import (
    LEGACY,
    MODERN,
    call_params,
    initialize_params,
    modern_meta,
    notification,
    request,
)
from triomem.transports.mcp import (
    LEGACY_VERSIONS,
    REQUESTS,
    TOOLS,
    CancelCall,
    McpConnection,
    Phase,
    Reply,
    Route,
    ServerOptions,
    StartCall,
)


def reply(conn: McpConnection, text: str) -> dict[str, Any]:
    event = conn.receive(text)
    assert isinstance(event, Reply), event
    decoded: dict[str, Any] = json.loads(event.text)
    return decoded


def phase(conn: McpConnection) -> Phase:
    # A call, not the attribute: mypy would narrow conn.phase across receive() calls.
    return conn.phase


def legacy_ready(conn: McpConnection | None = None) -> McpConnection:
    conn = conn or McpConnection()
    reply(conn, request(0, "initialize", initialize_params()))
    assert conn.receive(notification("notifications/initialized")) is None
    return conn


def test_every_phase_has_a_row_and_unknown_methods_have_none() -> None:
    assert set(REQUESTS) == set(Phase)
    for row in REQUESTS.values():
        assert "resources/list" not in row


def test_initialize_selects_legacy_and_echoes_a_supported_version() -> None:
    for version in LEGACY_VERSIONS:
        conn = McpConnection()
        answer = reply(conn, request(0, "initialize", initialize_params(version)))
        assert answer["id"] == 0
        result = answer["result"]
        assert result["protocolVersion"] == version
        assert result["serverInfo"]["name"] == "triomem"
        assert "tools" in result["capabilities"]
        assert "resultType" not in result
        assert phase(conn) is Phase.LEGACY_HANDSHAKE
        conn.receive(notification("notifications/initialized"))
        assert phase(conn) is Phase.LEGACY_READY


@pytest.mark.parametrize("asked", ["1.0.0", "2099-01-01", MODERN, ""])
def test_initialize_with_an_unsupported_version_gets_our_latest(asked: str) -> None:
    # Spec: the server MUST answer with another version it supports; the client decides.
    conn = McpConnection()
    assert reply(conn, request(1, "initialize", initialize_params(asked)))["result"][
        "protocolVersion"] == LEGACY
    assert phase(conn) is Phase.LEGACY_HANDSHAKE


def test_initialize_without_a_version_is_invalid_params_and_decides_nothing() -> None:
    conn = McpConnection()
    answer = reply(conn, request(1, "initialize", {"capabilities": {}}))
    assert answer["error"]["code"] == -32602
    assert phase(conn) is Phase.UNDECIDED


@pytest.mark.parametrize("method", ["tools/list", "tools/call", "logging/setLevel"])
def test_operations_before_initialize_are_refused_in_the_legacy_era(method: str) -> None:
    conn = McpConnection()
    answer = reply(conn, request(5, method, call_params("memory_stats")))
    assert answer["id"] == 5
    assert answer["error"]["code"] == -32600
    assert answer["error"]["data"]["kind"] == "not_initialized"
    assert phase(conn) is Phase.UNDECIDED


def test_ping_is_answered_in_every_phase_without_deciding_the_era() -> None:
    conn = McpConnection()
    assert reply(conn, request("p", "ping")) == {"jsonrpc": "2.0", "id": "p", "result": {}}
    assert phase(conn) is Phase.UNDECIDED
    legacy_ready(conn)
    assert reply(conn, request("q", "ping"))["result"] == {}


def test_second_initialize_is_refused() -> None:
    conn = legacy_ready()
    answer = reply(conn, request(9, "initialize", initialize_params()))
    assert answer["error"]["data"]["kind"] == "already_initialized"
    assert phase(conn) is Phase.LEGACY_READY


def test_operations_are_served_between_initialize_and_initialized() -> None:
    conn = McpConnection()
    reply(conn, request(0, "initialize", initialize_params()))
    assert "tools" in reply(conn, request(1, "tools/list"))["result"]


def test_legacy_era_has_no_server_discover() -> None:
    conn = legacy_ready()
    assert reply(conn, request(3, "server/discover", {"_meta": modern_meta()}))["error"][
        "code"] == -32601


def test_logging_set_level() -> None:
    conn = legacy_ready()
    assert reply(conn, request(1, "logging/setLevel", {"level": "info"}))["result"] == {}
    assert conn.log_level == "info"
    assert reply(conn, request(2, "logging/setLevel", {"level": "loud"}))["error"][
        "code"] == -32602


def test_server_discover_selects_modern() -> None:
    conn = McpConnection()
    answer = reply(conn, request("d", "server/discover", {"_meta": modern_meta()}))
    result = answer["result"]
    assert result["resultType"] == "complete"
    assert MODERN in result["supportedVersions"]
    assert result["cacheScope"] == "public" and result["ttlMs"] >= 0
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "triomem"
    assert phase(conn) is Phase.MODERN and conn.protocol_version == MODERN


def test_any_request_with_modern_meta_selects_modern() -> None:
    conn = McpConnection()
    result = reply(conn, request(1, "tools/list", {"_meta": modern_meta()}))["result"]
    assert result["resultType"] == "complete"
    assert {"ttlMs", "cacheScope"} <= set(result)
    assert phase(conn) is Phase.MODERN


def test_modern_requests_must_carry_the_envelope() -> None:
    conn = McpConnection()
    reply(conn, request(1, "server/discover", {"_meta": modern_meta()}))
    missing = reply(conn, request(2, "tools/list"))
    assert missing["error"]["code"] == -32602
    no_caps = reply(conn, request(3, "tools/list", {"_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN}}))
    assert no_caps["error"]["code"] == -32602


def test_unsupported_modern_version_is_32022_and_leaves_the_era_open() -> None:
    conn = McpConnection()
    answer = reply(conn, request(1, "server/discover", {"_meta": modern_meta("2099-01-01")}))
    error = answer["error"]
    assert error["code"] == -32022
    assert error["data"]["requested"] == "2099-01-01"
    assert MODERN in error["data"]["supported"] and LEGACY in error["data"]["supported"]
    assert phase(conn) is Phase.UNDECIDED
    # ...so the client can still fall back to the handshake.
    assert reply(conn, request(2, "initialize", initialize_params()))["result"]
    assert phase(conn) is Phase.LEGACY_HANDSHAKE


def test_discover_without_meta_is_invalid_params() -> None:
    conn = McpConnection()
    assert reply(conn, request(1, "server/discover"))["error"]["code"] == -32602
    assert phase(conn) is Phase.UNDECIDED


def test_a_modern_connection_refuses_initialize_with_32022_naming_modern_versions() -> None:
    # The 2.x SDK's auto mode re-probes server/discover on exactly this answer.
    conn = McpConnection()
    reply(conn, request(1, "server/discover", {"_meta": modern_meta()}))
    error = reply(conn, request(2, "initialize", initialize_params()))["error"]
    assert error["code"] == -32022
    assert error["data"] == {"kind": "unsupported_protocol_version", "supported": [MODERN],
                             "requested": LEGACY}
    assert phase(conn) is Phase.MODERN


def test_modern_era_has_no_ping_or_set_level() -> None:
    conn = McpConnection()
    reply(conn, request(1, "server/discover", {"_meta": modern_meta()}))
    assert reply(conn, request(2, "ping", {"_meta": modern_meta()}))["error"]["code"] == -32601
    assert reply(conn, request(3, "logging/setLevel", {"level": "info", "_meta": modern_meta()}
                       ))["error"]["code"] == -32601


def test_modern_tool_results_carry_result_type() -> None:
    conn = McpConnection()
    reply(conn, request(1, "server/discover", {"_meta": modern_meta()}))
    bad = reply(conn, request(2, "tools/call", {**call_params("memory_get", {}),
                                                "_meta": modern_meta()}))
    assert bad["result"]["isError"] is True
    assert bad["result"]["resultType"] == "complete"


def test_unknown_methods_are_32601_in_every_phase() -> None:
    for conn in (McpConnection(), legacy_ready()):
        answer = reply(conn, request(1, "resources/list"))
        assert answer["error"]["code"] == -32601
        assert answer["error"]["data"]["kind"] == "method_not_found"


def test_unknown_notifications_are_ignored() -> None:
    conn = legacy_ready()
    assert conn.receive(notification("notifications/roots/list_changed")) is None
    assert conn.receive(notification("ping")) is None


def test_tools_list_pages_with_an_opaque_cursor() -> None:
    conn = legacy_ready(McpConnection(ServerOptions(tools_page_size=3)))
    names: list[str] = []
    params: dict[str, Any] | None = None
    for page in range(10):
        result = reply(conn, request(page, "tools/list", params))["result"]
        names += [tool["name"] for tool in result["tools"]]
        if "nextCursor" not in result:
            break
        params = {"cursor": result["nextCursor"]}
    assert names == [tool.name for tool in TOOLS]
    assert reply(conn, request(99, "tools/list", {"cursor": "garbage"}))["error"]["code"] == (
        -32602)


def test_calls_are_tracked_and_a_cancelled_call_is_never_answered() -> None:
    conn = legacy_ready()
    start = conn.receive(request(7, "tools/call", call_params("memory_get", {"id": "x"})))
    assert isinstance(start, StartCall)
    assert conn.in_flight == 1
    cancel = conn.receive(notification("notifications/cancelled", {"requestId": 7}))
    assert cancel == CancelCall(start.key)
    assert conn.in_flight == 0
    assert conn.call_succeeded(start.key, None) is None
    assert conn.call_failed(start.key, RuntimeError("late")) is None


def test_a_cancel_for_an_unknown_id_is_ignored() -> None:
    conn = legacy_ready()
    assert conn.receive(notification("notifications/cancelled", {"requestId": 12345})) is None
    assert conn.receive(notification("notifications/cancelled", {"requestId": None})) is None
    assert conn.receive(notification("notifications/cancelled")) is None


def test_a_reused_in_flight_id_is_refused() -> None:
    conn = legacy_ready()
    assert isinstance(conn.receive(request(1, "tools/call", call_params("memory_stats"))),
                      StartCall)
    answer = reply(conn, request(1, "tools/call", call_params("memory_stats")))
    assert answer["error"]["data"]["kind"] == "duplicate_id"


def test_an_id_reused_after_cancel_never_gets_the_old_answer() -> None:
    conn = legacy_ready()
    first = conn.receive(request(1, "tools/call", call_params("memory_stats")))
    assert isinstance(first, StartCall)
    conn.receive(notification("notifications/cancelled", {"requestId": 1}))
    second = conn.receive(request(1, "tools/call", call_params("memory_stats")))
    assert isinstance(second, StartCall) and second.key != first.key
    assert conn.call_failed(first.key, RuntimeError("old")) is None
    assert conn.in_flight == 1


def test_max_in_flight_refuses_with_overloaded() -> None:
    conn = legacy_ready(McpConnection(ServerOptions(max_in_flight=2)))
    for i in range(2):
        assert isinstance(conn.receive(request(i, "tools/call", call_params("memory_stats"))),
                          StartCall)
    answer = reply(conn, request(2, "tools/call", call_params("memory_stats")))
    assert answer["error"]["code"] == -32004
    assert answer["error"]["data"]["kind"] == "overloaded"


def test_draining_refuses_new_calls() -> None:
    conn = legacy_ready()
    conn.start_draining()
    answer = reply(conn, request(1, "tools/call", call_params("memory_stats")))
    assert answer["error"]["code"] == -32003
    assert answer["error"]["data"]["kind"] == "shutting_down"
    assert "tools" in reply(conn, request(2, "tools/list"))["result"]


def test_progress_only_with_a_token_and_only_increasing() -> None:
    conn = legacy_ready()
    plain = conn.receive(request(1, "tools/call", call_params("memory_recall", {"query": "q"})))
    assert isinstance(plain, StartCall) and not plain.wants_progress
    assert conn.progress(plain.key, 0.5) is None
    tracked = conn.receive(request(2, "tools/call", {
        **call_params("memory_recall", {"query": "q"}), "_meta": {"progressToken": "tok"}}))
    assert isinstance(tracked, StartCall) and tracked.wants_progress
    first = conn.progress(tracked.key, 0, 1, "start")
    assert first is not None
    assert json.loads(first) == {"jsonrpc": "2.0", "method": "notifications/progress",
                                 "params": {"progressToken": "tok", "progress": 0, "total": 1,
                                            "message": "start"}}
    assert conn.progress(tracked.key, 0) is None  # must increase
    assert conn.progress(tracked.key, 1) is not None
    conn.call_cancelled(tracked.key)
    assert conn.progress(tracked.key, 2) is None  # not after the call is over


def test_route_table_covers_the_handshake_and_modern_methods() -> None:
    assert REQUESTS[Phase.UNDECIDED]["initialize"].route is Route.INITIALIZE
    assert REQUESTS[Phase.UNDECIDED]["initialize"].next_phase is Phase.LEGACY_HANDSHAKE
    assert REQUESTS[Phase.MODERN]["server/discover"].route is Route.DISCOVER
    assert "ping" not in REQUESTS[Phase.MODERN]
    assert "server/discover" not in REQUESTS[Phase.LEGACY_READY]
