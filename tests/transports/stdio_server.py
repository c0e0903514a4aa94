"""A stdio MCP server for tests: ``python -m tests.transports.stdio_server DB``.

The real engine on the file DB with the deterministic hash embedder; MCP on fds 0 and 1.
Exits 0 at end of input after answering everything.
"""

from __future__ import annotations

import os
import sys

import trio

from tests.fakes import HashEmbedder
from triomem import EngineConfig, open_engine
from triomem.transports import serve_stdio


async def main(path: str) -> None:
    async with open_engine(path, EngineConfig(embedder=HashEmbedder(), executor="thread")
                           ) as engine:
        stdin = trio.lowlevel.FdStream(os.dup(0))
        stdout = trio.lowlevel.FdStream(os.dup(1))
        async with stdin, stdout:
            await serve_stdio(engine, stdin, stdout)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
