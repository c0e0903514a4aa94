"""Message builders shared by the transport tests."""

from __future__ import annotations

import json
from typing import Any

LEGACY = "2025-11-25"
MODERN = "2026-07-28"


def request(request_id: int | str, method: str, params: dict[str, Any] | None = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def notification(method: str, params: dict[str, Any] | None = None) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message)


def initialize_params(version: str = LEGACY) -> dict[str, Any]:
    return {"protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}}


def modern_meta(version: str = MODERN, **extra: Any) -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": version,
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"}, **extra}


def call_params(name: str, arguments: dict[str, Any] | None = None,
                meta: dict[str, Any] | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    if meta is not None:
        params["_meta"] = meta
    return params


def is_well_formed_reply(message: Any) -> bool:
    """A JSON-RPC 2.0 response or notification as MCP allows them."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return False
    if "method" in message:
        return "id" not in message and isinstance(message.get("params", {}), dict)
    request_id = message.get("id", "missing")
    if not (request_id is None or isinstance(request_id, str)
            or (isinstance(request_id, int) and not isinstance(request_id, bool))):
        return False
    if ("result" in message) == ("error" in message):
        return False
    if "result" in message:
        return request_id is not None and isinstance(message["result"], dict)
    error = message["error"]
    return (isinstance(error, dict) and isinstance(error.get("code"), int)
            and isinstance(error.get("message"), str))
