"""Transports over the engine's public API (MCP over WebSocket and stdio)."""
