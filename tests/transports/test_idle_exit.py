"""``WebSocketOptions.idle_timeout``: a server stops by itself once nobody has been connected
for that long, and never while a client is connected."""

from __future__ import annotations

from pathlib import Path

import trio
from trio_websocket import open_websocket

from tests.fakes import HashEmbedder
from tests.transports._ws import WsClient
from triomem import EngineConfig, open_engine
from triomem.transports import ServerAddress, WebSocketOptions, serve_websocket


async def test_idle_server_stops_only_when_nobody_is_connected(tmp_path: Path) -> None:
    idle = 0.3
    async with open_engine(tmp_path / "idle.db",
                           EngineConfig(embedder=HashEmbedder(), executor="thread")) as engine:
        stopped = trio.Event()
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:

                async def run(task_status: trio.TaskStatus[ServerAddress]) -> None:
                    await serve_websocket(engine, "127.0.0.1", 0,
                                          options=WebSocketOptions(idle_timeout=idle),
                                          task_status=task_status)
                    stopped.set()

                address: ServerAddress = await nursery.start(run)
                async with open_websocket(address.host, address.port, address.path,
                                          use_ssl=False, subprotocols=["mcp"]) as ws:
                    client = WsClient(ws)
                    await client.handshake()
                    await trio.sleep(idle * 3)  # connected, if silent: the server stays
                    assert not stopped.is_set()
                    assert (await client.call("memory_stats"))["isError"] is False
                    left = trio.current_time()
                await stopped.wait()
                assert trio.current_time() - left >= idle * 0.9


async def test_no_idle_timeout_means_until_shutdown(tmp_path: Path) -> None:
    async with open_engine(tmp_path / "forever.db",
                           EngineConfig(embedder=HashEmbedder(), executor="thread")) as engine:
        shutdown = trio.Event()
        stopped = trio.Event()
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:

                async def run(task_status: trio.TaskStatus[ServerAddress]) -> None:
                    await serve_websocket(engine, "127.0.0.1", 0, shutdown=shutdown,
                                          task_status=task_status)
                    stopped.set()

                await nursery.start(run)
                await trio.sleep(0.5)  # nobody connected
                assert not stopped.is_set()
                shutdown.set()
