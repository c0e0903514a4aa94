"""JSON-RPC framing: parse_message and dumps. Pure."""

from __future__ import annotations

import json

import pytest

from triomem.transports.mcp import dumps, parse_message
from triomem.transports.mcp._jsonrpc import (
    Ignored,
    Malformed,
    Notification,
    PeerResponse,
    Request,
    dumps_result,
    result_message,
)


def test_request_with_id_zero_is_a_request() -> None:
    # The Python 1.x and TS clients number requests from 0: a truthiness test breaks them.
    message = parse_message('{"jsonrpc":"2.0","id":0,"method":"initialize","params":{}}')
    assert message == Request(0, "initialize", {})


def test_string_ids_and_missing_params() -> None:
    assert parse_message('{"jsonrpc":"2.0","id":"a-1","method":"tools/list"}') == Request(
        "a-1", "tools/list", {})


def test_notification_has_no_id() -> None:
    message = parse_message('{"jsonrpc":"2.0","method":"notifications/initialized"}')
    assert message == Notification("notifications/initialized", {})


@pytest.mark.parametrize("text", ["not json", "{", '{"a": NaN}', '{"a": Infinity}',
                                  "[" * 100_000, '{"x": ' + "9" * 5000 + "}"])
def test_unreadable_text_is_a_parse_error_with_null_id(text: str) -> None:
    message = parse_message(text)
    assert isinstance(message, Malformed)
    assert message.id is None
    assert message.error.code == -32700


def test_invalid_utf8_bytes_are_a_parse_error() -> None:
    message = parse_message(b'{"jsonrpc":"2.0","id":1,"method":"\xff"}')
    assert isinstance(message, Malformed) and message.error.code == -32700


def test_a_batch_is_an_invalid_request() -> None:
    message = parse_message('[{"jsonrpc":"2.0","id":1,"method":"ping"}]')
    assert isinstance(message, Malformed)
    assert (message.id, message.error.code) == (None, -32600)
    assert "Batching" in message.error.message


@pytest.mark.parametrize("text", ['"hello"', "3", "null", "true"])
def test_a_non_object_is_an_invalid_request(text: str) -> None:
    message = parse_message(text)
    assert isinstance(message, Malformed) and message.error.code == -32600


def test_missing_jsonrpc_keeps_the_readable_id() -> None:
    message = parse_message('{"id":7,"method":"ping"}')
    assert isinstance(message, Malformed)
    assert (message.id, message.error.code) == (7, -32600)


@pytest.mark.parametrize("raw_id", ["null", "1.5", "true", "[1]", "{}"])
def test_an_unusable_id_is_an_invalid_request_answered_with_null(raw_id: str) -> None:
    message = parse_message(f'{{"jsonrpc":"2.0","id":{raw_id},"method":"ping"}}')
    assert isinstance(message, Malformed)
    assert (message.id, message.error.code) == (None, -32600)


def test_method_must_be_a_string() -> None:
    message = parse_message('{"jsonrpc":"2.0","id":1,"method":5}')
    assert isinstance(message, Malformed) and (message.id, message.error.code) == (1, -32600)


def test_array_params_on_a_request_are_invalid_params() -> None:
    message = parse_message('{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}')
    assert isinstance(message, Malformed) and (message.id, message.error.code) == (1, -32602)


def test_a_notification_with_bad_params_is_ignored_not_answered() -> None:
    assert isinstance(parse_message('{"jsonrpc":"2.0","method":"x","params":3}'), Ignored)


def test_peer_responses_are_recognised() -> None:
    assert parse_message('{"jsonrpc":"2.0","id":3,"result":{}}') == PeerResponse(3)
    assert parse_message('{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":"x"}}') == (
        PeerResponse(None))


def test_dumps_is_one_compact_line() -> None:
    text = dumps({"jsonrpc": "2.0", "id": 1, "result": {"text": "a\nb", "ü": 1}})
    assert "\n" not in text
    assert json.loads(text)["result"] == {"text": "a\nb", "ü": 1}
    assert "ü" in text  # readable, not escaped


def test_dumps_escapes_lone_surrogates_so_the_text_is_valid_utf8() -> None:
    text = dumps({"jsonrpc": "2.0", "id": "\ud800", "result": {}})
    text.encode("utf-8")
    assert json.loads(text)["id"] == "\ud800"


def test_dumps_refuses_nan() -> None:
    with pytest.raises(ValueError, match="JSON"):
        dumps({"x": float("nan")})


@pytest.mark.parametrize("value", [
    {"memory": {"content": 'quotes " and \\ and \u2028 and é', "tags": []}},
    {"hits": [], "partial": False, "note": "\ud800 lone surrogate"},
])
@pytest.mark.parametrize("request_id", [7, "req-\ud800"])
def test_dumps_result_splices_the_encoded_member_as_if_encoded_whole(
        value: dict[str, object], request_id: str | int) -> None:
    result = {"content": [{"type": "text", "text": "copy"}], "isError": False}
    text = dumps_result(request_id, result, name="structuredContent", encoded=dumps(value))
    text.encode("utf-8")  # valid for a text frame, whichever part escaped a surrogate
    assert json.loads(text) == json.loads(dumps(result_message(
        request_id, {**result, "structuredContent": value})))
