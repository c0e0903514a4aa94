"""MCP's two eras, and what each request method does in each phase of a connection.

Legacy (2024-11-05 .. 2025-11-25) is a handshake: ``initialize``, then
``notifications/initialized``, then operations on a stateful connection. Modern (2026-07-28)
is stateless: no handshake, and every request carries its protocol version and client
capabilities in ``params._meta``. A dual-era server picks the era from the first message that
decides it, and keeps it for the connection (spec ``basic/versioning.mdx``):

- ``initialize`` selects legacy;
- any other request whose ``_meta`` names a protocol version selects modern, if that version
  is one we speak (otherwise it gets -32022 and the connection stays undecided, so a client
  that probed ``server/discover`` can still fall back to ``initialize``);
- ``ping`` is answered in any era without deciding anything.

The whole state machine is the two tables below; ``McpConnection`` only looks rows up.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

import attrs

LEGACY_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")  # newest 1st
LATEST_LEGACY_VERSION: Final = LEGACY_VERSIONS[0]
MODERN_VERSIONS: Final = ("2026-07-28",)
SUPPORTED_VERSIONS: Final = (*MODERN_VERSIONS, *LEGACY_VERSIONS)

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"

LOG_LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert",
                     "emergency")


class Phase(enum.Enum):
    UNDECIDED = "undecided"
    # initialize has been answered; notifications/initialized not seen yet. Operations are
    # served here too: the spec only says clients SHOULD wait, and we handle messages in
    # order, so a client that pipelines the notification and its first call is harmless.
    LEGACY_HANDSHAKE = "legacy-handshake"
    LEGACY_READY = "legacy-ready"
    MODERN = "modern"


class Route(enum.Enum):
    """What the connection does with a request."""

    INITIALIZE = "initialize"
    PING = "ping"
    DISCOVER = "discover"
    TOOLS_LIST = "tools/list"
    TOOLS_CALL = "tools/call"
    SET_LOG_LEVEL = "logging/setLevel"
    NOT_INITIALIZED = "error: not initialized (-32600)"
    ALREADY_INITIALIZED = "error: already initialized (-32600)"
    ERA_IS_MODERN = "error: connection is modern, initialize refused (-32022)"
    NEEDS_MODERN_META = "error: a modern method without _meta protocol version (-32602)"


@attrs.frozen
class Step:
    route: Route
    next_phase: Phase | None = None  # the phase after a successful answer; None: unchanged


_LEGACY_OPERATIONS: Final = {
    "initialize": Step(Route.ALREADY_INITIALIZED),
    "ping": Step(Route.PING),
    "tools/list": Step(Route.TOOLS_LIST),
    "tools/call": Step(Route.TOOLS_CALL),
    "logging/setLevel": Step(Route.SET_LOG_LEVEL),
}

# Request method -> Step, per phase. A method missing from a row is -32601 Method not found.
# In UNDECIDED, a request (other than initialize) that carries a modern _meta protocol version
# is looked up in the MODERN row instead, and moves the connection to MODERN if its envelope
# is valid.
REQUESTS: Final[Mapping[Phase, Mapping[str, Step]]] = {
    Phase.UNDECIDED: {
        "initialize": Step(Route.INITIALIZE, Phase.LEGACY_HANDSHAKE),
        "ping": Step(Route.PING),
        "server/discover": Step(Route.NEEDS_MODERN_META),
        "tools/list": Step(Route.NOT_INITIALIZED),
        "tools/call": Step(Route.NOT_INITIALIZED),
        "logging/setLevel": Step(Route.NOT_INITIALIZED),
    },
    Phase.LEGACY_HANDSHAKE: _LEGACY_OPERATIONS,
    Phase.LEGACY_READY: _LEGACY_OPERATIONS,
    Phase.MODERN: {
        # A modern connection refuses the handshake with -32022 naming its versions: the
        # 2.x SDK's auto mode re-probes server/discover on exactly that answer.
        "initialize": Step(Route.ERA_IS_MODERN),
        "server/discover": Step(Route.DISCOVER, Phase.MODERN),
        "tools/list": Step(Route.TOOLS_LIST, Phase.MODERN),
        "tools/call": Step(Route.TOOLS_CALL, Phase.MODERN),
    },
}

# Notification method -> the phase it moves to. Everything else (including
# notifications/cancelled, handled in every phase) leaves the phase alone; unknown
# notifications are ignored, never answered.
NOTIFICATIONS: Final[Mapping[Phase, Mapping[str, Phase]]] = {
    Phase.UNDECIDED: {},
    Phase.LEGACY_HANDSHAKE: {"notifications/initialized": Phase.LEGACY_READY},
    Phase.LEGACY_READY: {},
    Phase.MODERN: {},
}


def request_step(phase: Phase, method: str, *, modern_meta: bool) -> tuple[Phase, Step | None]:
    """The row that handles ``method`` now: (the phase whose row applies, the step or None)."""
    row = phase
    if phase is Phase.UNDECIDED and modern_meta and method != "initialize":
        row = Phase.MODERN
    return row, REQUESTS[row].get(method)


def negotiate_legacy(requested: str) -> str:
    """The version to answer ``initialize`` with: the client's if we speak it, else our latest
    (the spec's rule; the client disconnects if it cannot speak ours)."""
    return requested if requested in LEGACY_VERSIONS else LATEST_LEGACY_VERSION
