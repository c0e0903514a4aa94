"""Transports over the engine's public API: MCP over WebSocket, stdio and memory.

- ``mcp``: the sans-IO core (JSON-RPC, both protocol eras, tools, the error table);
- ``serve_session``: the one async driver, for any ``MessageTransport``;
- shells: ``serve_websocket``, ``serve_stdio``, ``open_memory_session``;
- ``serve.serve_main``: the ``triomem serve`` command (one server per database file);
- ``stdio_command.stdio_main``: ``triomem stdio``, a stdio bridge to that server, built from
  ``lockfile`` (who owns a database, and where it listens), ``daemon`` (find it or start it)
  and ``bridge`` (relay messages both ways);
- ``client_config``: ``triomem config``, the entry for Claude Code, Claude Desktop, Cursor.
"""

from ._driver import MessageTooLarge, MessageTransport, SessionOptions, serve_session
from .mcp import ServerOptions
from .memory import ChannelTransport, InMemoryClient, open_memory_session
from .stdio import LineTransport, StdioOptions, serve_stdio
from .websocket import (
    InsecureBind,
    ServerAddress,
    WebSocketOptions,
    check_bind,
    serve_websocket,
)

__all__ = [
    "ChannelTransport",
    "InMemoryClient",
    "InsecureBind",
    "LineTransport",
    "MessageTooLarge",
    "MessageTransport",
    "ServerAddress",
    "ServerOptions",
    "SessionOptions",
    "StdioOptions",
    "WebSocketOptions",
    "check_bind",
    "open_memory_session",
    "serve_session",
    "serve_stdio",
    "serve_websocket",
]
