"""Time arguments of MCP tools: one seam between what a model writes and the engine.

The engine parses time text itself (ISO 8601, naive meaning UTC, and phrases such as
"yesterday" or "3 days ago") and names the field it rejects, so this only checks the type.
Kept as one function so that a transport-side interpretation (a client's time zone, say) has
one place to go.
"""

from __future__ import annotations

from ...engine import InvalidMemory


def parse_time(value: object, field: str) -> str:
    """The time argument to hand to the engine. Raises ``InvalidMemory(field, reason)`` for a
    value that is not text."""
    if not isinstance(value, str):
        raise InvalidMemory(field, "expected an ISO 8601 date or date-time, or a phrase such "
                                   "as \"yesterday\" or \"3 days ago\"")
    return value
