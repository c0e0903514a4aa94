"""``python -m tests.cli._writer DB``: 8 concurrent writers on DB (wordllama, like the CLI
tests) until killed, printing each acknowledged id on stdout as soon as it returns."""

from __future__ import annotations

import sys

import trio

from triomem import EngineConfig, open_engine


async def main(path: str) -> None:
    async with open_engine(path, EngineConfig(embedder="wordllama")) as engine:

        async def writer(n: int) -> None:
            i = 0
            while True:
                result = await engine.remember(f"writer {n} memory {i} " + "padding " * 20)
                print(result.memory.id, flush=True)
                i += 1

        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(writer, n)


if __name__ == "__main__":
    trio.run(main, sys.argv[1])
