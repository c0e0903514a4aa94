"""The sans-IO MCP core: JSON-RPC framing, the two protocol eras, the tools, the error table.

No trio and no sockets here: ``McpConnection`` turns incoming text into events and engine
outcomes into outgoing text. ``triomem.transports`` drives it over real transports.
"""

from ._connection import McpConnection
from ._eras import (
    LATEST_LEGACY_VERSION,
    LEGACY_VERSIONS,
    MODERN_VERSIONS,
    REQUESTS,
    SUPPORTED_VERSIONS,
    Phase,
    Route,
)
from ._errors import ERRORS, ErrorCode, RpcError, rpc_error, tool_error
from ._events import CancelCall, Event, Reply, ServerOptions, StartCall
from ._jsonrpc import RequestId, dumps, parse_message
from ._times import parse_time
from ._tools import TOOLS, TOOLS_BY_NAME, EngineCall, ToolSpec

__all__ = [
    "ERRORS",
    "LATEST_LEGACY_VERSION",
    "LEGACY_VERSIONS",
    "MODERN_VERSIONS",
    "REQUESTS",
    "SUPPORTED_VERSIONS",
    "TOOLS",
    "TOOLS_BY_NAME",
    "CancelCall",
    "EngineCall",
    "ErrorCode",
    "Event",
    "McpConnection",
    "Phase",
    "Reply",
    "RequestId",
    "Route",
    "RpcError",
    "ServerOptions",
    "StartCall",
    "ToolSpec",
    "dumps",
    "parse_message",
    "parse_time",
    "rpc_error",
    "tool_error",
]
