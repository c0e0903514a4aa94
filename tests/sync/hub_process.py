"""A hub in its own OS process, for the kill-and-restart test:
``python -m tests.sync.hub_process DB PORT`` serves ``ws://127.0.0.1:PORT/hub`` until killed."""

from __future__ import annotations

import functools
import sys

import trio

from tests.fakes import HashEmbedder
from triomem import EngineConfig, open_engine
from triomem.transports.websocket import WebSocketOptions, serve_websocket


async def main(path: str, port: int) -> None:
    async with open_engine(path, EngineConfig(embedder=HashEmbedder())) as hub, \
            trio.open_nursery() as nursery:
        await nursery.start(functools.partial(serve_websocket, hub, "127.0.0.1", port,
                                              options=WebSocketOptions(hub=True)))
        print("listening", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
