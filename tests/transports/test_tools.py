"""Tool definitions, argument validation and binding, time parsing, the error table. Pure."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema_rs
import pytest

from triomem.engine import (
    EmbedderUnavailable,
    InvalidMemory,
    NotFound,
    StoreBusy,
    TriomemError,
)
from triomem.transports.mcp import ERRORS, TOOLS, TOOLS_BY_NAME, EngineCall, parse_time, rpc_error
from triomem.transports.mcp._errors import rpc_error_for_exception, tool_error_for_exception
from triomem.transports.mcp._tools import bind

EXPECTED_ORDER = ["memory_store", "memory_recall", "memory_get", "memory_update",
                  "memory_forget", "memory_list", "memory_stats", "memory_sync_status",
                  "memory_conflicts"]


def test_tools_come_in_a_fixed_order_with_valid_names() -> None:
    assert [tool.name for tool in TOOLS] == EXPECTED_ORDER
    for tool in TOOLS:
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", tool.name)  # SEP-986


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t.name)
def test_schemas_are_valid_2020_12_objects(tool: Any) -> None:
    for schema in (tool.input_schema, tool.output_schema):
        jsonschema_rs.meta.validate(dict(schema))
        assert schema["type"] == "object"
    assert tool.input_schema.get("additionalProperties") is False
    described = tool.describe()
    assert set(described) >= {"name", "title", "description", "inputSchema", "outputSchema",
                              "annotations"}
    json.dumps(described)


def test_annotations() -> None:
    hints = {tool.name: tool.annotations for tool in TOOLS}
    for name in ("memory_recall", "memory_get", "memory_list", "memory_stats"):
        assert hints[name]["readOnlyHint"] is True
        assert hints[name]["idempotentHint"] is True
    for name in ("memory_store", "memory_update", "memory_forget"):
        assert hints[name]["readOnlyHint"] is False
    assert hints["memory_forget"]["destructiveHint"] is True
    assert hints["memory_store"]["destructiveHint"] is False
    assert all(h["openWorldHint"] is False for h in hints.values())


def invalid(tool: str, arguments: dict[str, Any]) -> InvalidMemory:
    with pytest.raises(InvalidMemory) as info:
        bind(TOOLS_BY_NAME[tool], arguments)
    return info.value


def test_validation_names_the_field() -> None:
    assert invalid("memory_store", {}).field == "content"
    assert invalid("memory_store", {"content": 5}).field == "content"
    assert invalid("memory_store", {"content": "x", "tags": ["a", 3]}).field == "tags[1]"
    assert invalid("memory_store", {"content": "x", "colour": "red"}).field == "colour"
    assert invalid("memory_recall", {"query": "x", "limit": 0}).field == "limit"
    assert invalid("memory_recall", {"query": "x", "limit": True}).field == "limit"
    assert invalid("memory_get", {"id": ""}).field == "id"
    assert invalid("memory_stats", {"x": 1}).field == "x"


def test_lone_surrogates_are_validated_like_any_text() -> None:
    """JSON escapes can carry a lone surrogate in; the compiled validator cannot take one in a
    key or an error message, and validation must still name the field, never raise."""
    assert invalid("memory_store", {"content": "\udfff", "tags": ["\ud800", 3]}).field \
        == "tags[1]"
    assert invalid("memory_recall", {"query": "x", "k\udfff": 1}).field == "k\ufffd"
    assert invalid("memory_get", {"id": "\udfff" * 65}).field == "id"  # maxLength counts it once
    cases: list[tuple[str, dict[str, Any]]] = [
        ("memory_recall", {"query": "a\udfff"}),
        ("memory_store", {"content": "ok", "metadata": {"k\ud800": "v"}})]
    for tool, arguments in cases:
        bind(TOOLS_BY_NAME[tool], arguments)  # the engine decides about such text


def test_times_must_be_text() -> None:
    assert invalid("memory_recall", {"query": "x", "after": 1700000000}).field == "after"
    assert invalid("memory_list", {"updated_before": None}).field == "updated_before"


def test_binding_passes_only_given_arguments() -> None:
    call = bind(TOOLS_BY_NAME["memory_store"], {"content": "hello", "tags": ["a"]})
    assert call == EngineCall("remember", ("hello",), {"tags": ["a"]})
    assert bind(TOOLS_BY_NAME["memory_stats"], {}) == EngineCall("statistics")
    assert bind(TOOLS_BY_NAME["memory_forget"], {"id": "m1"}) == EngineCall("forget", ("m1",))


def test_recall_binds_every_filter_and_parses_times() -> None:
    call = bind(TOOLS_BY_NAME["memory_recall"], {
        "query": "q", "limit": 5, "space": "s", "type": "t", "tags_all": ["a"],
        "tags_any": ["b"], "after": "2025-01-01", "before": "yesterday", "min_score": 0.25,
        "include_partial": False})
    assert call.method == "recall" and call.args == ("q",)
    # Time text goes to the engine as it is: the engine parses ISO 8601 and phrases.
    assert call.kwargs == {
        "limit": 5, "space": "s", "type": "t", "tags_all": ["a"], "tags_any": ["b"],
        "after": "2025-01-01", "before": "yesterday", "min_score": 0.25,
        "include_partial": False}


def test_list_binds_its_time_filters() -> None:
    call = bind(TOOLS_BY_NAME["memory_list"], {"created_after": "2025-03-04T05:06:07Z",
                                               "cursor": "c", "limit": 2})
    assert call.kwargs["created_after"] == "2025-03-04T05:06:07Z"
    assert call.kwargs["cursor"] == "c" and call.kwargs["limit"] == 2


def test_parse_time_is_the_one_seam_and_checks_only_the_type() -> None:
    assert parse_time("3 days ago", "t") == "3 days ago"
    with pytest.raises(InvalidMemory, match="t:"):
        parse_time(1700000000, "t")


def test_error_codes_follow_the_rules() -> None:
    for kind, row in ERRORS.items():
        assert row.code != -32002, kind  # retired by the spec
        if row.code > -32100 and row.code not in (-32021, -32022):
            assert -32019 <= row.code <= -32003, kind  # our engine band
    assert ERRORS["parse_error"].code == -32700
    assert ERRORS["invalid_request"].code == -32600
    assert ERRORS["method_not_found"].code == -32601
    assert ERRORS["invalid_params"].code == -32602
    assert ERRORS["unknown_tool"].code == -32602
    assert ERRORS["internal_error"].code == -32603


def test_every_engine_error_kind_has_a_row() -> None:
    def kinds(cls: type[TriomemError]) -> set[str]:
        out = {cls.kind}
        for sub in cls.__subclasses__():
            out |= kinds(sub)
        return out

    missing = kinds(TriomemError) - {"error"} - set(ERRORS)
    assert not missing


def test_rpc_errors_carry_their_kind_and_hide_internals() -> None:
    error = rpc_error("overloaded", data={"max_in_flight": 3})
    assert (error.code, error.kind) == (-32004, "overloaded")
    assert error.data == {"kind": "overloaded", "max_in_flight": 3}
    hidden = rpc_error_for_exception(KeyError("/secret/path.db"))
    assert (hidden.code, hidden.message, hidden.data) == (-32603, "Internal error",
                                                          {"kind": "internal_error"})
    busy = rpc_error_for_exception(StoreBusy(3, 0.5))
    assert busy.code == -32006 and busy.kind == "store_busy"
    assert rpc_error("some_future_kind").code == -32019


def test_tool_errors_are_results_naming_the_field() -> None:
    result = tool_error_for_exception(InvalidMemory("tags[2]", "must not be empty"))
    assert result["isError"] is True
    assert result["structuredContent"]["error"] == {
        "kind": "invalid_input", "message": "must not be empty", "field": "tags[2]"}
    assert result["content"][0]["text"] == "invalid_input: tags[2]: must not be empty"
    missing = tool_error_for_exception(NotFound("abc"))
    assert missing["structuredContent"]["error"]["details"] == {"id": "abc"}
    down = tool_error_for_exception(EmbedderUnavailable("model missing"))
    assert down["content"][0]["text"].startswith("embedder_unavailable:")


async def test_sync_tools_report_replication_or_say_there_is_no_remote(tmp_path: Any) -> None:
    from tests.fake_remote import FakeRemote, FakeServer
    from tests.fakes import HashEmbedder
    from triomem import EngineConfig, InvalidMemory, open_engine
    from triomem.transports._driver import perform

    for remote in (None, FakeRemote(FakeServer())):
        config = EngineConfig(embedder=HashEmbedder(), executor="inline", remote=remote)
        async with open_engine(tmp_path / f"{remote is None}.db", config) as engine:
            status_tool = TOOLS_BY_NAME["memory_sync_status"]
            conflicts_tool = TOOLS_BY_NAME["memory_conflicts"]
            if remote is None:
                with pytest.raises(InvalidMemory) as info:
                    await perform(engine, bind(status_tool, {}))
                assert info.value.field == "remote"
                continue
            await engine.remember("queued")
            await engine.sync_now()
            call = bind(status_tool, {})
            structured = status_tool.result(call, await perform(engine, call)).to_json()
            assert structured["structuredContent"]["outbox"] == 0
            assert structured["structuredContent"]["state"] == "idle"
            jsonschema_rs.validate(dict(status_tool.output_schema),
                                   structured["structuredContent"])
            call = bind(conflicts_tool, {"limit": 5})
            result = conflicts_tool.result(call, await perform(engine, call)).to_json()
            assert result["structuredContent"] == {"conflicts": []}
