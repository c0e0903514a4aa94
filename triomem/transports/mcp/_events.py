"""What the sans-IO connection tells its driver, and the settings it runs with."""

from __future__ import annotations

import importlib.metadata
from typing import TypeAlias

import attrs

from ._tools import EngineCall, ToolSpec


def _package_version() -> str:
    try:
        return importlib.metadata.version("triomem")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        return "0"


INSTRUCTIONS = (
    "triomem is a long-term memory. Use memory_recall before answering questions that may "
    "depend on earlier conversations, and memory_store to keep facts, preferences and "
    "decisions worth remembering. Tool errors name the argument to fix."
)


@attrs.frozen
class ServerOptions:
    """Per-server protocol settings, shared by every connection."""

    name: str = "triomem"
    version: str = attrs.field(factory=_package_version)
    instructions: str = INSTRUCTIONS
    max_in_flight: int = attrs.field(default=64, validator=attrs.validators.gt(0))
    tools_page_size: int = attrs.field(default=100, validator=attrs.validators.gt(0))
    cache_ttl_ms: int = attrs.field(default=3_600_000, validator=attrs.validators.ge(0))


@attrs.frozen
class Reply:
    """Send this text now."""

    text: str


@attrs.frozen
class StartCall:
    """Run ``call`` on the engine for the request tracked as ``key``."""

    key: int
    tool: ToolSpec
    call: EngineCall
    wants_progress: bool


@attrs.frozen
class CancelCall:
    """The client cancelled the request tracked as ``key``: stop it, send nothing."""

    key: int


Event: TypeAlias = Reply | StartCall | CancelCall
