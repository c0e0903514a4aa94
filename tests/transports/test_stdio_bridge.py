"""``triomem stdio`` as real processes through the real console script: any number of stdio
clients share the one server that owns a database, starting it when none runs.

Every server a test starts is stopped when it ends, by the pid in the lock file.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio

from tests.fakes import HashEmbedder
from tests.transports._bridges import (
    TRIOMEM,
    daemon_info,
    daemon_pids,
    open_bridge,
    pid_alive,
    poll_until,
    read_log,
    stop_daemon,
    structured,
    wait_until_free,
)
from triomem import EngineConfig, open_engine
from triomem.transports import ServerAddress, WebSocketOptions, serve_websocket
from triomem.transports.lockfile import DaemonInfo, DaemonPaths, OwnerLock, probe


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Path]:
    """A database path; whatever server serves it is stopped at the end of the test."""
    path = tmp_path / "shared.db"
    try:
        yield path
    finally:
        with trio.CancelScope(shield=True), trio.fail_after(30):
            await stop_daemon(path)


def announcements(db: Path) -> int:
    """How many servers have ever started listening on ``db`` (their log lines)."""
    return read_log(db).count("(database ")


WORDS = ("amber", "basalt", "cobalt", "dolomite", "emerald")


def fact(index: int) -> str:
    return f"the {WORDS[index]} window remembers its own fact"


@pytest.mark.parametrize("clients", [2, 5])
async def test_clients_started_at_once_share_one_server(db: Path, clients: int) -> None:
    ids: dict[int, str] = {}
    servers: list[list[int]] = []
    everyone_stored = trio.Event()

    async def client(index: int) -> None:
        async with open_bridge(db) as bridge:
            await bridge.handshake()
            stored = structured(await bridge.call("memory_store", {"content": fact(index)}))
            ids[index] = stored["memory"]["id"]
            if len(ids) == clients:
                everyone_stored.set()
            await everyone_stored.wait()
            # Each sees every other client's memory, through its own stdio.
            for other, memory_id in ids.items():
                got = structured(await bridge.call("memory_get", {"id": memory_id}))
                assert got["memory"]["content"] == fact(other)
            neighbour = (index + 1) % clients
            recalled = structured(await bridge.call("memory_recall", {"query": fact(neighbour)}))
            assert ids[neighbour] in [hit["memory"]["id"] for hit in recalled["hits"]]
            servers.append(daemon_pids(db))
            await bridge.close_stdin()
            assert await bridge.receive_all() == []
            assert await bridge.process.wait() == 0

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            # Started at the same moment: no client waits for another before racing to the lock.
            for index in range(clients):
                nursery.start_soon(client, index)
    owner = daemon_info(db).pid
    assert servers == [[owner]] * clients  # one server process, the same for every client
    assert announcements(db) == 1  # and only one was ever started


async def test_a_killed_server_is_replaced_and_the_memory_is_kept(db: Path) -> None:
    with trio.fail_after(60):
        async with open_bridge(db) as first:
            await first.handshake()
            stored = structured(await first.call("memory_store", {"content": "before the kill"}))
            killed = daemon_info(db).pid
            os.kill(killed, signal.SIGKILL)
            # The bridge loses its server: a clear message and a non-zero exit.
            assert await first.receive_all() == []
            assert await first.process.wait() == 1
            assert "the server closed the connection" in await first.stderr()
        # The lock file still names the dead server, but its flock is free: stale.
        assert probe(DaemonPaths.for_database(db)).held is False
        async with open_bridge(db) as second:
            await second.handshake()
            got = structured(await second.call("memory_get", {"id": stored["memory"]["id"]}))
            assert got["memory"]["content"] == "before the kill"
            replacement = daemon_info(db).pid
            assert replacement != killed
            assert daemon_pids(db) == [replacement]
            await second.close_stdin()
            assert await second.process.wait() == 0


async def test_end_of_input_answers_in_flight_then_the_server_idles_out(db: Path) -> None:
    idle = 2.0
    with trio.fail_after(60):
        async with open_bridge(db, "--idle-exit", f"{idle:g}") as bridge:
            await bridge.handshake()
            # Sent and stdin closed at once: both calls are in flight when the input ends.
            store = await bridge.send_request("tools/call", {
                "name": "memory_store", "arguments": {"content": "written as stdin closes"}})
            recall = await bridge.send_request("tools/call", {
                "name": "memory_recall", "arguments": {"query": "stdin closes"}})
            await bridge.send({"jsonrpc": "2.0", "method": "notifications/progress",
                               "params": {"progressToken": 1, "progress": 1}})  # no answer
            # The bridge disconnects after it reads the end of input: not before this instant.
            connected_until_at_least = trio.current_time()
            await bridge.close_stdin()
            replies = await bridge.receive_all()
            assert await bridge.process.wait() == 0
        assert {reply["id"] for reply in replies} == {store, recall}
        assert all(reply["result"]["isError"] is False for reply in replies)
        # The server outlives its last client for the idle period, then stops by itself.
        server = daemon_info(db).pid
        assert pid_alive(server)
        assert await wait_until_free(db, 20)
        assert trio.current_time() - connected_until_at_least >= idle
        assert await poll_until(lambda: not pid_alive(server), 10)
        log = read_log(db)
        assert "no connection for 2 s: stopping" in log
        assert "database closed" in log


async def test_an_address_that_does_not_answer_is_looked_up_again(tmp_path: Path) -> None:
    """What a client sees when it reads the lock file of a server that is stopping, or the
    instant a dead server's successor took the lock: an address nobody answers on."""
    db = tmp_path / "retry.db"
    paths = DaemonPaths.for_database(db)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]  # closed again: connections are refused
    info = DaemonInfo(pid=os.getpid(), host="127.0.0.1", port=dead_port, path="/mcp",
                      token="retry-token", database=paths.database, embedder="hash")
    env = {**os.environ, "TRIOMEM_LOG_LEVEL": "info"}
    with trio.fail_after(60), await OwnerLock.acquire(paths) as owner:
        owner.publish(info)  # this test owns the database, as a server would
        async with (open_engine(db, EngineConfig(embedder=HashEmbedder(), executor="thread"))
                    as engine, trio.open_nursery() as nursery,
                    open_bridge(db, env=env) as bridge):
            # The bridge knocks on the dead port (and keeps knocking) before the server exists.
            assert bridge.process.stderr is not None
            stderr = ""
            while f"could not connect to ws://127.0.0.1:{dead_port}/mcp" not in stderr:
                chunk = await bridge.process.stderr.receive_some(65536)
                assert chunk, stderr
                stderr += chunk.decode()
            shutdown = trio.Event()
            address: ServerAddress = await nursery.start(functools.partial(
                serve_websocket, engine, "127.0.0.1", 0, shutdown=shutdown,
                options=WebSocketOptions(token="retry-token")))
            owner.publish(attrs.evolve(info, port=address.port))
            await bridge.handshake()
            assert structured(await bridge.call("memory_store", {"content": "found it"}))
            await bridge.close_stdin()
            assert await bridge.process.wait() == 0
            stderr += await bridge.stderr()
            shutdown.set()
    assert f"connected to ws://127.0.0.1:{address.port}/mcp" in stderr


async def test_a_server_that_shuts_down_ends_its_bridges(db: Path) -> None:
    with trio.fail_after(60):
        async with open_bridge(db) as bridge:
            await bridge.handshake()
            os.kill(daemon_info(db).pid, signal.SIGTERM)
            assert await bridge.receive_all() == []
            assert await bridge.process.wait() == 1
            stderr = await bridge.stderr()
            assert "the server closed the connection (code 1001: server shutting down)" in stderr
        assert await wait_until_free(db, 20)


async def test_a_server_that_cannot_start_is_reported(db: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIOMEM_EMBED")}
    command = [str(TRIOMEM), "stdio", "--db", str(db), "--embedder", "http"]
    with trio.fail_after(60):
        result = await trio.run_process(command, stdin=b"", capture_stdout=True,
                                        capture_stderr=True, check=False, env=env)
    assert result.returncode == 1
    assert result.stdout == b""
    stderr = result.stderr.decode()
    assert "exited with code 1 before listening" in stderr
    assert "embedder_unavailable" in stderr  # the tail of the server's log
    assert probe(DaemonPaths.for_database(db)).held is False


async def test_serve_refuses_a_database_another_server_holds(db: Path) -> None:
    with trio.fail_after(60):
        async with open_bridge(db) as bridge:
            await bridge.handshake()
            owner = daemon_info(db)
            result = await trio.run_process(
                [str(TRIOMEM), "serve", "--db", str(db), "--embedder", "wordllama", "--port",
                 "0"], capture_stderr=True, check=False, stdin=subprocess.DEVNULL)
            assert result.returncode == 3
            assert f"already served by pid {owner.pid} on {owner.url}" in result.stderr.decode()
            # The server and its client never noticed.
            assert structured(await bridge.call("memory_store", {"content": "still here"}))
            await bridge.close_stdin()
            assert await bridge.process.wait() == 0


async def test_lock_and_log_files_are_private(db: Path) -> None:
    with trio.fail_after(60):
        async with open_bridge(db) as bridge:
            await bridge.handshake()
            paths = DaemonPaths.for_database(db)
            for name in (paths.lock, paths.log, paths.spawn):
                assert os.stat(name).st_mode & 0o777 == 0o600, name
            assert daemon_info(db).token  # the server started for stdio requires a token
            await bridge.close_stdin()
            assert await bridge.process.wait() == 0
