"""triomem: a memory engine for AI agents, on trio.

    async with triomem.open_engine("memories.db") as engine:
        await engine.remember("the user prefers dark mode", tags=["ui"])
        result = await engine.recall("which theme does the user like?")
"""

from .engine import *  # noqa: F403
from .engine import __all__ as __all__

__version__ = "0.1.0"
