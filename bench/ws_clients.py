"""WebSocket clients: MCP over the real transport against the engine called in-process, one run.

Two figures (see design/performance.md, "WebSocket clients"):

- store throughput: N clients (64, 8, 1), each its own WebSocket connection to
  ``serve_websocket`` on 127.0.0.1 (endpoint ``/mcp``, subprotocol ``mcp``, the 2025-11-25
  handshake), send ``tools/call memory_store`` in a closed loop (one request at a time) over
  their share of unique texts; against N in-process tasks awaiting ``engine.remember`` over the
  same texts. Target: 64 clients reach >= 60% of the in-process writes/s. The server runs in
  this process (a trio nursery); the clients run in a child process, as real MCP clients are
  other processes, and they are a lean load generator (``bench._ws_load``: one selectors
  loop, hand-made RFC 6455 frames), so the 2 cores go to the server, not to client overhead.
  The 64-client case also runs with trio-websocket clients in this process, where their JSON
  and WebSocket work shares the server's trio thread, to show what that costs.
- latency at the same offered load: one engine and server with 1 client, 8 clients and another
  1 client (the control) connected at once, and a seeded open-loop (Poisson) schedule of stores
  and recalls at a fixed total rate well under capacity. The schedule is cut into 0.5-second
  blocks that take turns in a balanced order (``TURNS``), and the four blocks of each row of
  that order carry the same requests (times, kinds, recall queries; new texts to store). In a
  block, each request is sent at its time whether or not earlier ones were answered: through
  the 1 client, through the 8 in turn (request i on client i mod 8), through the control
  client, or to the engine in-process. So the configurations share the database, its growth
  and whatever else the machine does, and the control (1 client against another 1 client)
  shows what the method can resolve. Target: the 8-client per-operation p50 within 5% of the
  1-client p50 (at most 1.05x).

Also measured, for where the time goes: the transport alone, 64 clients sending MCP ``ping``
(answered by the session without touching the engine), and a raw trio TCP request/reply of
the same sizes as a ``memory_store`` round trip.

Every case runs on a fresh file in one temporary directory with ``EngineConfig(embedder=
"wordllama")`` (thread executor, ``synchronous=FULL``); the cases are interleaved ``--repeat``
times; the median closed-loop run is reported (for the paced load, the repetitions' samples
pooled), with the same-repetition ratios beside it. The share of the machine other processes
used during each timed part is measured from /proc/stat; a case they disturbed is run again
(``--retries``) and left out of the median when a clean run exists.

    .venv/bin/python -m bench.ws_clients                  # full run, about 3 minutes
    .venv/bin/python -m bench.ws_clients --wait-quiet 60  # on a shared machine
    .venv/bin/python -m bench.ws_clients --quick          # smoke run, about 15 seconds
    .venv/bin/python -m bench.ws_clients --json           # machine-readable output
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any

import attrs
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from bench import _ws_load as ws_load
from bench._common import (
    MIN_ACCOUNTED_S,
    CpuSample,
    Latency,
    cpu_count,
    emit,
    machine,
    make_tags,
    make_texts,
    median_by,
    percentile,
    progress,
    remember_in_shares,
    run_parser,
    run_settings,
    table,
    wait_for_quiet,
)
from triomem import Engine, EngineConfig, open_engine
from triomem.transports import ServerAddress, WebSocketOptions, serve_websocket

SEED = 20240612
THROUGHPUT_TARGET = 0.60
P50_TARGET = 1.05  # the 8-client p50 at most 5% above the 1-client p50
QUIET_SHARE = 0.05
QUIET_WINDOW_S = 0.5
BUSY_SHARE = 0.05  # a run during which other processes used more of the machine is disturbed
CONNECT_TIMEOUT_S = 10.0
RECALL_LIMIT = 10
BLOCK_S = 0.5  # the paced load's turns
# The paced load's blocks take turns in rows of a Williams square over the four configurations:
# each comes once in every row and once in each position, right after each of the others once
# within the rows, and never right after itself (row boundaries included). All the blocks of a row carry the same requests
# (arrival times, kinds, recall queries; each store a new text), so the configurations are
# compared on the same work.
TURNS = (("few", "many", "local", "control"), ("many", "control", "few", "local"),
         ("control", "local", "many", "few"), ("local", "few", "control", "many"))
PROTOCOL_VERSION = "2025-11-25"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@attrs.frozen
class Plan:
    repeat: int
    clients: tuple[int, ...]  # closed-loop client counts, the first is the target's
    per_client: int  # writes per client at clients[0]
    scale_writes: int  # total writes at the smaller counts (shared evenly)
    rate: float  # paced load: requests per second over all clients
    paced_s: float  # paced load: length of the whole schedule (all four configurations)
    paced_clients: tuple[int, int]  # the two client counts compared at the same load
    recall_share: float  # paced load: share of the requests that are recalls
    preload: int  # memories in the database before the paced load starts
    floor_requests: int  # ping and raw TCP round trips (64 clients)
    quiet_timeout: float = 0.0  # before each case, wait up to this long for a quiet machine
    retries: int = 0  # re-runs of a case that other processes disturbed

    @classmethod
    def full(cls, repeat: int) -> Plan:
        return cls(repeat, (64, 8, 1), 100, 1600, 100.0, 32.0, (1, 8), 0.5, 2000, 6400)

    @classmethod
    def quick(cls, repeat: int) -> Plan:
        return cls(repeat, (64, 8, 1), 5, 160, 100.0, 8.0, (1, 8), 0.5, 200, 640)


@attrs.frozen
class Run:
    """One measured case. Latency is per request, from just before the client sends it (or
    calls the engine) to when it has the decoded answer."""

    key: str
    case: str
    clients: int
    items: int
    wall_s: float
    latency: Latency
    store: Latency | None = None  # paced: per kind of request
    recall: Latency | None = None
    commits: int | None = None
    embed_calls: int | None = None
    own_cpu_s: float | None = None  # this process, every thread, during the timed part
    loop_cpu_s: float | None = None  # its trio thread: the server, and the clients if here
    client_cpu_s: float | None = None  # the clients' child process, when there is one
    late_p99_ms: float | None = None  # paced: how late requests left against the schedule
    partial: int = 0  # recalls answered partial (a leg missed the deadline)
    other_cpu: float | None = None  # share of the machine other processes used meanwhile
    rep: int = 0
    # paced: the raw seconds ("store", "recall", "late"), pooled over the repetitions
    samples: dict[str, list[float]] = attrs.field(factory=dict, repr=False, eq=False)

    @property
    def per_s(self) -> float:
        return self.items / self.wall_s

    def to_json(self) -> dict[str, Any]:
        fields = attrs.asdict(self, filter=lambda a, _: a.name != "samples")
        return {**fields, "per_s": self.per_s}


# -- measuring -------------------------------------------------------------------------------


@attrs.frozen
class Span:
    """What a timed part cost: wall clock, CPU of this process (every thread), CPU of its trio
    thread, and CPU seconds other processes used meanwhile."""

    wall: float
    own: float
    loop: float
    other: float

    def __add__(self, more: Span) -> Span:
        return Span(self.wall + more.wall, self.own + more.own, self.loop + more.loop,
                    self.other + more.other)

    @property
    def other_share(self) -> float | None:
        """The share of the machine's cores other processes used; None when the span is too
        short for the kernel's 10 ms accounting ticks to say anything."""
        if self.wall < MIN_ACCOUNTED_S:
            return None
        return max(0.0, self.other / (self.wall * cpu_count()))


@attrs.frozen
class Meter:
    """The start of a timed part; ``loop`` is this (the trio) thread's CPU time."""

    cpu: CpuSample
    loop: float

    @classmethod
    def start(cls) -> Meter:
        return cls(CpuSample.now(), time.thread_time())

    def stop(self, child_cpu: float = 0.0) -> Span:
        """The span since ``start``; ``child_cpu`` is a child this run started, which does
        not count as another process."""
        loop = time.thread_time() - self.loop
        later = CpuSample.now()
        own = later.own - self.cpu.own
        other = later.machine_busy - self.cpu.machine_busy - own - child_cpu
        return Span(later.wall - self.cpu.wall, own, loop, other)


def _measured(case: str, clients: int, items: int, span: Span, latency: Latency,
              **more: Any) -> Run:
    return Run("", case, clients, items, span.wall, latency, own_cpu_s=span.own,
               loop_cpu_s=span.loop, other_cpu=span.other_share, **more)


def _process_cpu() -> float:
    times = os.times()
    return times.user + times.system


# -- the client ------------------------------------------------------------------------------


class ToolFailed(RuntimeError):
    """A request got a JSON-RPC error or an ``isError`` result: the benchmark is invalid."""


@attrs.define(eq=False)
class Client:
    """One MCP session over one WebSocket, as lean as a real client: encode, send, decode.

    ``request`` waits for its own answer on the connection (one request at a time: the closed
    loop); ``send_call`` may run concurrently on one connection while ``read_loop`` hands the
    answers out by id (the open loop).
    """

    ws: WebSocketConnection
    _last_id: int = 0
    _waiting: dict[int, trio.Event] = attrs.field(factory=dict)
    _answers: dict[int, dict[str, Any]] = attrs.field(factory=dict)

    def _encode(self, method: str, params: dict[str, Any]) -> tuple[int, str]:
        self._last_id += 1
        return self._last_id, json.dumps({"jsonrpc": "2.0", "id": self._last_id,
                                          "method": method, "params": params})

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        request_id, text = self._encode(method, params)
        await self.ws.send_message(text)
        while True:
            reply: dict[str, Any] = json.loads(await self.ws.get_message())
            if reply.get("id") == request_id and "method" not in reply:
                return _result(reply)

    async def handshake(self) -> None:
        await self.request("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "bench.ws_clients", "version": "1"}})
        await self.ws.send_message('{"jsonrpc": "2.0", "method": "notifications/initialized"}')

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        return await self.request("tools/call", {"name": tool, "arguments": arguments})

    async def read_loop(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                reply: dict[str, Any] = json.loads(await self.ws.get_message())
                request_id = reply.get("id")
                if "method" in reply or not isinstance(request_id, int):
                    continue
                event = self._waiting.pop(request_id, None)
                if event is not None:
                    self._answers[request_id] = reply
                    event.set()

    async def send_call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        request_id, text = self._encode("tools/call", {"name": tool, "arguments": arguments})
        answered = self._waiting[request_id] = trio.Event()
        await self.ws.send_message(text)
        await answered.wait()
        return _result(self._answers.pop(request_id))


def _result(reply: dict[str, Any]) -> dict[str, Any]:
    if "error" in reply:
        raise ToolFailed(f"JSON-RPC error: {reply['error']}")
    result: dict[str, Any] = reply["result"]
    if result.get("isError"):
        raise ToolFailed(f"tool error: {result.get('content')}")
    return result


@contextlib.asynccontextmanager
async def connected(url: str, count: int) -> AsyncIterator[list[Client]]:
    """``count`` clients, connected and past the MCP handshake."""
    async with contextlib.AsyncExitStack() as stack:
        clients: list[Client] = []
        for _ in range(count):
            # No deadline around the loop: its scope would close inside the connections'.
            ws = await stack.enter_async_context(open_websocket_url(
                url, subprotocols=["mcp"], connect_timeout=CONNECT_TIMEOUT_S))
            client = Client(ws)
            with trio.fail_after(CONNECT_TIMEOUT_S):
                await client.handshake()
            clients.append(client)
        yield clients


def _store_arguments(text: str, tags: Sequence[str]) -> dict[str, Any]:
    return {"content": text, "tags": list(tags)}


async def closed_loop_clients(clients: Sequence[Client], texts: Sequence[str],
                              tags: Sequence[tuple[str, ...]]) -> tuple[list[float], int]:
    """Each client stores its share of ``texts`` one request at a time; latencies, created."""
    per_client = len(texts) // len(clients)
    latencies: list[float] = []
    created = 0

    async def writer(client: Client, index: int) -> None:
        nonlocal created
        lo = index * per_client
        for text, tg in zip(texts[lo:lo + per_client], tags[lo:lo + per_client], strict=True):
            t0 = time.perf_counter()
            result = await client.call("memory_store", _store_arguments(text, tg))
            latencies.append(time.perf_counter() - t0)
            created += bool(result["structuredContent"]["created"])

    async with trio.open_nursery() as nursery:
        for i, client in enumerate(clients):
            nursery.start_soon(writer, client, i)
    return latencies, created


# -- the server ------------------------------------------------------------------------------


@contextlib.contextmanager
def _fresh(directory: str, name: str) -> Iterator[str]:
    path = os.path.join(directory, name)
    try:
        yield path
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)


@contextlib.asynccontextmanager
async def engine_on(directory: str, name: str, *, serve: bool
                    ) -> AsyncIterator[tuple[Engine, ServerAddress | None]]:
    """A fresh engine (one warm-up write done) and, with ``serve``, its WebSocket server in
    this trio loop on 127.0.0.1, an OS-chosen port."""
    with _fresh(directory, name) as path:
        async with open_engine(path, EngineConfig(embedder="wordllama")) as engine:
            await engine.remember(f"warm-up memory for {name}, not part of the measured load.")
            if not serve:
                yield engine, None
                return
            shutdown = trio.Event()
            async with trio.open_nursery() as nursery:
                address: ServerAddress = await nursery.start(functools.partial(
                    serve_websocket, engine, "127.0.0.1", 0, options=WebSocketOptions(),
                    shutdown=shutdown))
                try:
                    yield engine, address
                finally:
                    shutdown.set()


# -- store throughput (closed loop) ----------------------------------------------------------


async def store_in_process(directory: str, texts: Sequence[str],
                           tags: Sequence[tuple[str, ...]], clients: int) -> Run:
    """``clients`` tasks, each awaiting ``engine.remember`` over its share of ``texts``."""
    per_client = len(texts) // clients
    async with engine_on(directory, f"local-{clients}.db", serve=False) as (engine, _):
        before = await engine.statistics()
        meter = Meter.start()
        latencies, created = await remember_in_shares(engine, texts, tags, clients)
        span = meter.stop()
        after = await engine.statistics()
    _check(created, per_client * clients, f"in-process, {clients} tasks")
    return _measured("in-process remember()", clients, per_client * clients, span,
                     Latency.of(latencies), commits=after.store.batches - before.store.batches,
                     embed_calls=after.embed.batches - before.embed.batches)


async def store_over_websocket(directory: str, texts: Sequence[str],
                               tags: Sequence[tuple[str, ...]], clients: int) -> Run:
    """``clients`` WebSocket clients in this process, each storing its share of ``texts``."""
    per_client = len(texts) // clients
    texts, tags = texts[:per_client * clients], tags[:per_client * clients]
    async with engine_on(directory, f"ws-{clients}.db", serve=True) as (engine, address):
        assert address is not None
        async with connected(address.url, clients) as conns:
            before = await engine.statistics()
            meter = Meter.start()
            latencies, created = await closed_loop_clients(conns, texts, tags)
            span = meter.stop()
            after = await engine.statistics()
    _check(created, len(texts), f"WebSocket, {clients} clients")
    return _measured("WebSocket memory_store, clients in the server's process", clients,
                     len(texts), span, Latency.of(latencies),
                     commits=after.store.batches - before.store.batches,
                     embed_calls=after.embed.batches - before.embed.batches)


async def store_from_child(directory: str, total: int, clients: int) -> Run:
    """``store_over_websocket`` with the clients in a child process (over the first ``total``
    texts of the seed, the same as the in-process case's, which the child makes itself)."""
    per_client = total // clients
    async with engine_on(directory, f"child-{clients}.db", serve=True) as (engine, address):
        assert address is not None
        command = [sys.executable, "-m", "bench.ws_clients", "--worker", address.url,
                   str(clients), str(per_client)]
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(functools.partial(
                trio.run_process, command, cwd=ROOT, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, check=True))
            assert process.stdin is not None and process.stdout is not None
            lines = _Lines(process.stdout)
            with trio.fail_after(60):
                if await lines.next() != "ready":
                    raise RuntimeError("the client child did not get ready")
            before = await engine.statistics()
            meter = Meter.start()
            await process.stdin.send_all(b"go\n")
            report = json.loads(await lines.next())
            span = meter.stop(child_cpu=report["cpu_s"])
            after = await engine.statistics()
            await process.stdin.aclose()
    _check(report["created"], per_client * clients, f"child, {clients} clients")
    # Throughput from the child's own clock: from "go" to its last answer.
    return attrs.evolve(
        _measured("WebSocket memory_store", clients,
                  per_client * clients, span, Latency.of(report["latencies"]),
                  commits=after.store.batches - before.store.batches,
                  embed_calls=after.embed.batches - before.embed.batches,
                  client_cpu_s=report["cpu_s"]),
        wall_s=report["wall_s"])


@attrs.define(eq=False)
class _Lines:
    stream: trio.abc.ReceiveStream
    buffer: bytes = b""

    async def next(self) -> str:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some()
            if not data:
                raise RuntimeError("the client child exited early")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def child_worker(url: str, clients: int, per_client: int) -> None:
    """The child's side of ``store_from_child``: connect, say ready, wait for go, store, report
    (one JSON line: wall time, latencies, created, this process's CPU seconds). The clients
    are ``bench._ws_load``'s lean ones: a load generator's CPU is CPU the server cannot use."""
    texts = make_texts(clients * per_client, SEED)
    tags = make_tags(len(texts), SEED)
    connections = ws_load.connect(url, clients, PROTOCOL_VERSION)
    calls = [[("memory_store", _store_arguments(texts[i], tags[i]))
              for i in range(c * per_client, (c + 1) * per_client)] for c in range(clients)]
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = _process_cpu()
    result = ws_load.closed_loop(connections, calls)
    cpu = _process_cpu() - cpu
    for connection in connections:
        connection.sock.close()
    created = sum(bool(answer["structuredContent"]["created"]) for answer in result.answers)
    print(json.dumps({"wall_s": result.wall_s, "cpu_s": cpu, "created": created,
                      "latencies": result.latencies}), flush=True)


def _check(created: int, expected: int, what: str) -> None:
    if created != expected:
        raise RuntimeError(f"{what}: {created} of {expected} writes created a memory")


# -- the transport alone ---------------------------------------------------------------------


async def ping_over_websocket(directory: str, requests: int, clients: int) -> Run:
    """MCP ``ping`` in a closed loop: the WebSocket and session cost without a tool or the
    engine (the session answers a ping itself)."""
    per_client = requests // clients
    latencies: list[float] = []

    async def pinger(client: Client) -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            await client.request("ping", {})
            latencies.append(time.perf_counter() - t0)

    async with engine_on(directory, "ping.db", serve=True) as (_, address):
        assert address is not None
        async with connected(address.url, clients) as conns:
            meter = Meter.start()
            async with trio.open_nursery() as nursery:
                for client in conns:
                    nursery.start_soon(pinger, client)
            span = meter.stop()
    return _measured("WebSocket MCP ping (no engine)", clients, per_client * clients, span,
                     Latency.of(latencies))


async def tcp_round_trips(requests: int, clients: int, ask: int, answer: int) -> Run:
    """Raw trio TCP on 127.0.0.1: each client sends ``ask`` bytes, the server answers
    ``answer`` bytes (the sizes of a memory_store round trip): sockets and trio, nothing else."""
    per_client = requests // clients
    latencies: list[float] = []

    async def serve(stream: trio.SocketStream) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            pending = 0
            while data := await stream.receive_some():
                pending += len(data)
                while pending >= ask:
                    pending -= ask
                    await stream.send_all(b"a" * answer)

    async def client(stream: trio.SocketStream) -> None:
        for _ in range(per_client):
            t0 = time.perf_counter()
            await stream.send_all(b"q" * ask)
            got = 0
            while got < answer:
                got += len(await stream.receive_some())
            latencies.append(time.perf_counter() - t0)

    async with trio.open_nursery() as server:
        listeners = await server.start(functools.partial(trio.serve_tcp, serve, 0,
                                                         host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(clients)]
        meter = Meter.start()
        async with trio.open_nursery() as nursery:
            for stream in streams:
                nursery.start_soon(client, stream)
        span = meter.stop()
        for stream in streams:
            await stream.aclose()
        server.cancel_scope.cancel()
    return _measured(f"raw trio TCP, {ask} B asked, {answer} B answered", clients,
                     per_client * clients, span, Latency.of(latencies))


# -- the same offered load (open loop) -------------------------------------------------------


@attrs.frozen
class Request:
    at: float  # seconds after its block starts
    kind: str  # "store" or "recall"
    text: str
    tags: tuple[str, ...] = ()


@attrs.frozen
class Block:
    turn: str  # which configuration sends it: "few", "many", "control" or "local"
    requests: tuple[Request, ...]


@attrs.frozen
class Load:
    preload: list[str]
    preload_tags: list[tuple[str, ...]]
    blocks: list[Block]
    warm_up: list[str]  # one store per client before the schedule (not measured)

    @property
    def requests(self) -> int:
        return sum(len(block.requests) for block in self.blocks)


def make_load(plan: Plan) -> Load:
    """Blocks of ``BLOCK_S`` over ``plan.paced_s``, in the rows of ``TURNS``. Each row gets
    Poisson arrivals at ``plan.rate``, each a recall (probability ``plan.recall_share``) or a
    store; its blocks repeat them, each store with a new text. Deterministic."""
    rng = random.Random(SEED + 7)
    rows = []
    for _ in range(max(1, round(plan.paced_s / BLOCK_S / len(TURNS[0])))):
        at, row = 0.0, []
        while (at := at + rng.expovariate(plan.rate)) < BLOCK_S:
            row.append((at, "recall" if rng.random() < plan.recall_share else "store"))
        rows.append(row)
    blocks_per_row = len(TURNS[0])
    stores = blocks_per_row * sum(kind == "store" for row in rows for _, kind in row)
    warm = 2 * plan.paced_clients[0] + plan.paced_clients[1] + 1
    texts = make_texts(plan.preload + stores + warm, SEED + 1)
    tags = make_tags(len(texts), SEED + 1)
    queries = iter(make_texts(sum(kind == "recall" for row in rows for _, kind in row), SEED + 2))
    new = iter(range(plan.preload, len(texts)))
    blocks = []
    for index, row in enumerate(rows):
        asked = {at: next(queries) for at, kind in row if kind == "recall"}
        for turn in TURNS[index % len(TURNS)]:
            requests = []
            for at, kind in row:
                if kind == "store":
                    i = next(new)
                    requests.append(Request(at, kind, texts[i], tags[i]))
                else:
                    requests.append(Request(at, kind, asked[at]))
            blocks.append(Block(turn, tuple(requests)))
    return Load(texts[:plan.preload], tags[:plan.preload], blocks, texts[-warm:])


async def _preload(engine: Engine, load: Load) -> None:
    """The load's starting memories, 64 writers at a time, then one recall to load the index."""
    async def writer(index: int) -> None:
        for i in range(index, len(load.preload), 64):
            await engine.remember(load.preload[i], tags=load.preload_tags[i])

    async with trio.open_nursery() as nursery:
        for index in range(64):
            nursery.start_soon(writer, index)
    await engine.recall("warm up the vector index and the text index")


@attrs.define
class _Turn:
    """What one configuration of the paced load measured over its blocks."""

    times: dict[str, list[float]] = attrs.field(factory=lambda: {"store": [], "recall": []})
    late: list[float] = attrs.field(factory=list)
    partial: int = 0
    sent: int = 0
    span: Span = Span(0.0, 0.0, 0.0, 0.0)


# The paced load's configurations: how many clients each uses (0: in-process), and its key.
PACED = {"few": "paced_{few}", "many": "paced_{many}", "control": "paced_control",
         "local": "paced_local"}


async def paced(directory: str, load: Load, few: int, many: int) -> dict[str, Run]:
    """The paced load in blocks that take turns (``TURNS``): through ``few`` clients, through
    ``many`` clients, through another ``few`` clients (the control: what two equal
    configurations differ by), or to the engine in-process; one engine, one server, every
    client connected throughout. Runs keyed as in ``PACED``."""
    turns = {turn: _Turn() for turn in PACED}
    async with engine_on(directory, "paced.db", serve=True) as (engine, address):
        assert address is not None
        await _preload(engine, load)
        async with connected(address.url, few) as few_clients, \
                connected(address.url, many) as many_clients, \
                connected(address.url, few) as control_clients, \
                trio.open_nursery() as readers:
            clients = {"few": few_clients, "many": many_clients, "control": control_clients}
            everyone = few_clients + many_clients + control_clients
            for client in everyone:
                readers.start_soon(client.read_loop)
            warm = iter(load.warm_up)
            for client in everyone:  # every session's first calls, not measured
                await client.send_call("memory_store", _store_arguments(next(warm), ()))
                await client.send_call("memory_recall", {"query": "warm up", "limit": 1})
            await engine.remember(next(warm))

            async def call(turn: str, request: Request) -> bool:
                """One request; True if it was a recall answered partial."""
                if turn == "local":
                    if request.kind == "store":
                        await engine.remember(request.text, tags=request.tags)
                        return False
                    return (await engine.recall(request.text, limit=RECALL_LIMIT)).partial
                group = clients[turn]
                client = group[turns[turn].sent % len(group)]
                if request.kind == "store":
                    await client.send_call("memory_store",
                                           _store_arguments(request.text, request.tags))
                    return False
                result = await client.send_call("memory_recall", {
                    "query": request.text, "limit": RECALL_LIMIT})
                return bool(result["structuredContent"]["partial"])

            async def one(turn: str, request: Request) -> None:
                t0 = time.perf_counter()
                partial = await call(turn, request)
                turns[turn].times[request.kind].append(time.perf_counter() - t0)
                turns[turn].partial += partial

            before = await engine.statistics()
            start = trio.current_time() + 0.01
            async with trio.open_nursery() as nursery:
                for index, block in enumerate(load.blocks):
                    began = start + index * BLOCK_S
                    await trio.sleep_until(began)
                    meter = Meter.start()
                    counted = turns[block.turn]
                    for request in block.requests:
                        await trio.sleep_until(began + request.at)
                        counted.late.append(trio.current_time() - began - request.at)
                        nursery.start_soon(one, block.turn, request)
                        # Counted when sent, so that the next request goes to the next client.
                        counted.sent += 1
                    await trio.sleep_until(began + BLOCK_S)
                    counted.span += meter.stop()
            after = await engine.statistics()
            readers.cancel_scope.cancel()
    if after.store.writes_committed - before.store.writes_committed != sum(
            len(t.times["store"]) for t in turns.values()):
        raise RuntimeError("paced load: a store did not commit a new memory")
    runs = {}
    for turn, counted in turns.items():
        n = {"few": few, "many": many, "control": few, "local": 0}[turn]
        case = {"local": "in-process (reference)",
                "control": "WebSocket, control (other connection)"}.get(turn, "WebSocket")
        runs[PACED[turn].format(few=few, many=many)] = _measured(
            case, n, counted.sent, counted.span,
            Latency.of(counted.times["store"] + counted.times["recall"]),
            store=Latency.of(counted.times["store"]), recall=Latency.of(counted.times["recall"]),
            late_p99_ms=percentile(sorted(counted.late), 99) * 1000.0,
            partial=counted.partial, samples={**counted.times, "late": counted.late})
    return runs


# -- the run ---------------------------------------------------------------------------------


@attrs.define
class Results:
    runs: dict[str, list[Run]] = attrs.field(factory=dict)

    def add(self, key: str, rep: int, run: Run) -> Run:
        run = attrs.evolve(run, key=key, rep=rep)
        self.runs.setdefault(key, []).append(run)
        extra = ""
        if run.store is not None and run.recall is not None:
            extra = (f"  store p50 {run.store.p50:6.2f} ms  recall p50 {run.recall.p50:6.2f} ms"
                     f"  late p99 {run.late_p99_ms or 0.0:5.2f} ms")
        progress(f"  {key:<14} {run.items:>5} in {run.wall_s:6.2f} s = {run.per_s:7.0f}/s  "
                 f"p50 {run.latency.p50:7.2f} ms  p99 {run.latency.p99:7.2f} ms{extra}  "
                 f"other processes {_share(run.other_cpu)}")
        return run

    def last(self, key: str) -> dict[int, Run]:
        """Each repetition's last attempt of ``key``."""
        return {r.rep: r for r in self.runs.get(key, [])}

    def median(self, key: str, by: Callable[[Run], float]) -> Run:
        """The median run by ``by``, among the runs no other process disturbed if any."""
        runs = [r for r in self.runs[key] if not _disturbed(r)] or self.runs[key]
        return runs[median_by([by(r) for r in runs])]


def _disturbed(run: Run) -> bool:
    return run.other_cpu is not None and run.other_cpu > BUSY_SHARE


# Sizes of a memory_store round trip over the wire, for the raw TCP case: a request of about
# 270 bytes (JSON-RPC, 60-200 characters of content, tags) and an answer of about 1150 bytes
# (the memory as structuredContent and again as a JSON text copy).
STORE_ASK_BYTES = 270
STORE_ANSWER_BYTES = 1150


def measure(plan: Plan, directory: str) -> Results:
    results = Results()
    top = plan.clients[0]
    texts = make_texts(max(top * plan.per_client, plan.scale_writes), SEED)
    tags = make_tags(len(texts), SEED)
    load = make_load(plan)

    def settle() -> None:
        gc.collect()
        if plan.quiet_timeout > 0:
            share = wait_for_quiet(QUIET_SHARE, QUIET_WINDOW_S, plan.quiet_timeout)
            if share is not None and share > QUIET_SHARE:
                progress(f"  (machine still busy: other processes at {share:.0%})")

    def case(rep: int, fn: Callable[[], Awaitable[dict[str, Run]]]) -> None:
        """Run one case (one or more keyed runs); re-run it (up to plan.retries times) while
        other processes disturb it. Every attempt is kept; the median prefers undisturbed
        ones."""
        for attempt in range(plan.retries + 1):
            settle()
            runs = [results.add(key, rep, run) for key, run in trio.run(fn).items()]
            disturbed = [run.key for run in runs if _disturbed(run)]
            if not disturbed:
                break
            if attempt < plan.retries:
                progress(f"  ({', '.join(disturbed)} disturbed by other processes; "
                         "running it again)")

    def single(key: str, fn: Callable[[], Awaitable[Run]]) -> Callable[[], Awaitable[dict[str, Run]]]:
        async def keyed() -> dict[str, Run]:
            return {key: await fn()}
        return keyed

    for rep in range(plan.repeat):
        progress(f"repetition {rep + 1}/{plan.repeat}: store throughput, closed loop")
        for clients in plan.clients:
            n = top * plan.per_client if clients == top else plan.scale_writes
            n -= n % clients
            case(rep, single(f"local_{clients}", functools.partial(
                store_in_process, directory, texts[:n], tags[:n], clients)))
            case(rep, single(f"ws_{clients}", functools.partial(
                store_from_child, directory, n, clients)))
        case(rep, single(f"here_{top}", functools.partial(
            store_over_websocket, directory, texts[:top * plan.per_client],
            tags[:top * plan.per_client], top)))
        progress(f"repetition {rep + 1}/{plan.repeat}: the transport alone")
        case(rep, single(f"ping_{top}", functools.partial(
            ping_over_websocket, directory, plan.floor_requests, top)))
        case(rep, single(f"tcp_{top}", functools.partial(
            tcp_round_trips, plan.floor_requests, top, STORE_ASK_BYTES, STORE_ANSWER_BYTES)))
        progress(f"repetition {rep + 1}/{plan.repeat}: the same offered load, "
                 f"{plan.rate:g} requests/s")
        case(rep, functools.partial(paced, directory, load, *plan.paced_clients))
    return results


def _keys(plan: Plan) -> tuple[list[str], list[str]]:
    """The closed-loop keys in table order, and the paced keys."""
    top = plan.clients[0]
    few, many = plan.paced_clients
    closed = [f"{side}_{n}" for n in plan.clients for side in ("local", "ws")]
    closed.insert(2, f"here_{top}")
    closed += [f"ping_{top}", f"tcp_{top}"]
    return closed, [f"paced_{few}", f"paced_{many}", "paced_control", "paced_local"]


def summary(results: Results, plan: Plan) -> dict[str, Any]:
    top = plan.clients[0]
    few, many = plan.paced_clients
    closed_keys, paced_keys = _keys(plan)
    med = {key: results.median(key, lambda r: r.per_s) for key in closed_keys}
    # The paced runs of one repetition come from one interleaved case (its last attempt, the
    # undisturbed one if there was one): their samples are pooled over the repetitions that
    # other processes did not disturb (over all of them if every one was disturbed).
    paced_last = {key: results.last(key) for key in paced_keys}
    reps = sorted(paced_last[paced_keys[0]])
    disturbed = [i for i in reps if any(_disturbed(paced_last[key][i]) for key in paced_keys)]
    pooled = [i for i in reps if i not in disturbed] or reps
    med.update({key: _pool([paced_last[key][i] for i in pooled]) for key in paced_keys})

    def same_rep(a: str, b: str, value: Callable[[Run, Run], float]) -> list[float]:
        last_a, last_b = results.last(a), results.last(b)
        return [value(last_a[i], last_b[i]) for i in sorted(last_a) if i in last_b]

    def throughput(a: Run, b: Run) -> float:
        return a.per_s / b.per_s

    def p50(kind: str) -> Callable[[Run, Run], float]:
        def ratio(a: Run, b: Run) -> float:
            return float(getattr(a, kind).p50 / getattr(b, kind).p50)
        return ratio

    kinds = ("store", "recall", "latency")
    ratios: dict[str, Any] = {
        "paced_repetitions_pooled": [i + 1 for i in pooled],
        "paced_repetitions_disturbed": [i + 1 for i in disturbed],
        "throughput_target": THROUGHPUT_TARGET,
        "p50_target": P50_TARGET,
        "ws_vs_local": {n: throughput(med[f"ws_{n}"], med[f"local_{n}"]) for n in plan.clients},
        "ws_vs_local_per_repetition": {
            n: same_rep(f"ws_{n}", f"local_{n}", throughput) for n in plan.clients},
        "p50_many_vs_few_per_repetition": {
            kind: same_rep(f"paced_{many}", f"paced_{few}", p50(kind)) for kind in kinds},
        "p50_control_vs_few_per_repetition": {
            kind: same_rep("paced_control", f"paced_{few}", p50(kind)) for kind in kinds},
        "p50_few_vs_local_per_repetition": {
            kind: same_rep(f"paced_{few}", "paced_local", p50(kind)) for kind in kinds},
    }
    for name, a, b in (("p50_many_vs_few", f"paced_{many}", f"paced_{few}"),
                       ("p50_control_vs_few", "paced_control", f"paced_{few}"),
                       ("p50_few_vs_local", f"paced_{few}", "paced_local")):
        ratios[name] = {kind: p50(kind)(med[a], med[b]) for kind in kinds}  # pooled
    ratios["here_vs_local"] = throughput(med[f"here_{top}"], med[f"local_{top}"])
    ratios["here_vs_local_per_repetition"] = same_rep(f"here_{top}", f"local_{top}", throughput)
    return {
        "plan": attrs.asdict(plan),
        "median": {key: run.to_json() for key, run in med.items()},
        "runs": {key: [{**r.to_json(), "disturbed": _disturbed(r)} for r in runs]
                 for key, runs in results.runs.items()},
        "ratios": ratios,
    }


def _pool(runs: Sequence[Run]) -> Run:
    """One paced configuration over several repetitions: samples pooled, costs summed."""
    store = [x for r in runs for x in r.samples["store"]]
    recall = [x for r in runs for x in r.samples["recall"]]
    late = sorted(x for r in runs for x in r.samples["late"])
    wall = sum(r.wall_s for r in runs)
    shares = [r.other_cpu for r in runs]
    other = (None if any(v is None for v in shares)
             else sum((v or 0.0) * r.wall_s for v, r in zip(shares, runs, strict=True)) / wall)
    return attrs.evolve(
        runs[0], items=sum(r.items for r in runs), wall_s=wall,
        latency=Latency.of(store + recall), store=Latency.of(store), recall=Latency.of(recall),
        own_cpu_s=sum(r.own_cpu_s or 0.0 for r in runs),
        loop_cpu_s=sum(r.loop_cpu_s or 0.0 for r in runs),
        late_p99_ms=percentile(late, 99) * 1000.0, partial=sum(r.partial for r in runs),
        other_cpu=other, rep=-1, samples={})


def _us_per(value: float | None, items: int) -> str:
    return "-" if value is None else f"{value / items * 1e6:.0f}"


def render(report: dict[str, Any], *, plan: Plan) -> str:
    env, med, ratios = report["machine"], report["median"], report["ratios"]
    top = plan.clients[0]
    few, many = plan.paced_clients
    closed_keys, paced_keys = _keys(plan)
    closed = []
    for key in closed_keys:
        r = med[key]
        closed.append([
            r["case"], str(r["clients"]), str(r["items"]), f"{r['per_s']:,.0f}",
            f"{r['latency']['p50']:.2f}", f"{r['latency']['p99']:.2f}",
            f"{r['items'] / r['commits']:.1f}" if r["commits"] else "-",
            _us_per(r["loop_cpu_s"], r["items"]), _us_per(r["own_cpu_s"], r["items"]),
            _us_per(r["client_cpu_s"], r["items"]), _share(r["other_cpu"]),
        ])
    open_rows = []
    for key in paced_keys:
        r = med[key]
        open_rows.append([
            r["case"], str(r["clients"]) if r["clients"] else "-", str(r["items"]),
            f"{r['store']['p50']:.2f}", f"{r['store']['p99']:.2f}",
            f"{r['recall']['p50']:.2f}", f"{r['recall']['p99']:.2f}",
            f"{r['latency']['p50']:.2f}", f"{r['late_p99_ms']:.2f}", str(r["partial"]),
            _us_per(r["loop_cpu_s"], r["items"]), _share(r["other_cpu"]),
        ])
    out = [
        f"WebSocket clients: {env['date']}, code {env['code']}, {env['cpus']} cores "
        f"({env['cpu_model']}), {env['platform']}, Python {env['python']}, SQLite "
        f"{env['sqlite']}, wordllama, synchronous=FULL, "
        f"{plan.repeat} repetition(s)",
        "",
        "store throughput, closed loop (each client or task: one request at a time); the median "
        "run",
        table(["case", "clients", "requests", "per s", "p50 ms", "p99 ms", "writes/commit",
               "loop us/op", "cpu us/op", "client us/op", "other cpu"], closed),
        "",
        f"the same offered load: {plan.rate:g} requests/s (Poisson), {plan.recall_share:.0%} "
        f"recalls (limit {RECALL_LIMIT}), over {plan.preload} memories; {plan.paced_s:g} s in "
        f"{BLOCK_S:g} s blocks taking turns ({few} client, {many} clients, another {few} "
        "client as the control, in-process); samples pooled over repetitions "
        + ", ".join(str(i) for i in ratios["paced_repetitions_pooled"]),
        table(["case", "clients", "requests", "store p50", "store p99", "recall p50",
               "recall p99", "all p50", "late p99", "partial", "loop us/op", "other cpu"],
              open_rows),
        "",
        "latency in ms, per request; loop us/op: CPU of this process's trio thread (the server, "
        "and the clients when they are in this process) per request; cpu us/op: this process, "
        "every thread; client us/op: the clients' child process; late: how long after its "
        "scheduled time a paced request was sent; other cpu: share of the machine's cores "
        "used by other processes during the timed part",
        "",
    ]

    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    def listed(values: Sequence[float], form: str) -> str:
        return ", ".join(format(v, form) for v in values)

    def paced_listed(values: Sequence[float]) -> str:
        """Per repetition; * marks one disturbed by other processes (not pooled)."""
        dirty = ratios["paced_repetitions_disturbed"]
        return ", ".join(f"{v:.3f}" + ("*" if i + 1 in dirty else "")
                         for i, v in enumerate(values))

    tp = ratios["ws_vs_local"][top]
    out.append(f"store throughput, {top} clients: WebSocket/in-process = {tp:6.1%}  (target >= "
               f"{THROUGHPUT_TARGET:.0%}: {verdict(tp >= THROUGHPUT_TARGET)}); per repetition "
               + listed(ratios["ws_vs_local_per_repetition"][top], ".1%"))
    for n in plan.clients[1:]:
        out.append(f"store throughput, {n} client(s): WebSocket/in-process = "
                   f"{ratios['ws_vs_local'][n]:6.1%}; per repetition "
                   + listed(ratios["ws_vs_local_per_repetition"][n], ".1%"))
    out.append(f"store throughput, {top} clients in the server's process: WebSocket/in-process"
               f" = {ratios['here_vs_local']:6.1%}; per repetition "
               + listed(ratios["here_vs_local_per_repetition"], ".1%"))
    for kind, label in (("store", "memory_store"), ("recall", "memory_recall"),
                        ("latency", "all requests")):
        value = ratios["p50_many_vs_few"][kind]
        mark = (f"  (target <= {P50_TARGET:.2f}x: {verdict(value <= P50_TARGET)})"
                if kind != "latency" else "")
        out.append(f"p50 at the same load, {label:<13} {many} vs {few} client(s) = "
                   f"{value:.3f}x{mark}; per repetition "
                   + paced_listed(ratios["p50_many_vs_few_per_repetition"][kind]))
    control = ratios["p50_control_vs_few"]
    out.append(f"p50 at the same load, control: {few} client vs another {few} client = store "
               f"{control['store']:.3f}x, recall {control['recall']:.3f}x (what the method "
               "resolves); per repetition store "
               + paced_listed(ratios["p50_control_vs_few_per_repetition"]["store"])
               + "; recall " + paced_listed(ratios["p50_control_vs_few_per_repetition"]["recall"]))
    wire = ratios["p50_few_vs_local"]
    out.append(f"p50 at the same load, {few} client vs in-process: store {wire['store']:.2f}x, "
               f"recall {wire['recall']:.2f}x")
    busy = [k for k in med if (med[k]["other_cpu"] or 0.0) > BUSY_SHARE]
    if busy:
        out += ["", f"WARNING: other processes used more than {BUSY_SHARE:.0%} of the machine "
                f"during: {', '.join(busy)}; these figures are not from a quiet machine."]
    if plan.repeat > 1 or plan.retries > 0:
        out += ["", "every run (requests/s, or p50 ms for the paced load; * = disturbed by "
                "other processes, not used for the median unless all were):"]
        for key, runs in report["runs"].items():
            values = [f"{r['latency']['p50']:.2f}" if key.startswith("paced")
                      else f"{r['per_s']:.0f}" for r in runs]
            out.append(f"  {key:<14} " + " ".join(
                v + ("*" if r["disturbed"] else "") for v, r in zip(values, runs, strict=True)))
    return "\n".join(out)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--worker"]:  # the client child of store_from_child
        child_worker(argv[1], int(argv[2]), int(argv[3]))
        return 0
    parser = run_parser(__doc__, quick="small smoke run", repeat="interleaved repetitions",
                        retries=1, quiet_share=QUIET_SHARE, busy_share=BUSY_SHARE)
    run = run_settings(parser, parser.parse_args(argv))
    plan = attrs.evolve(Plan.quick(run.repeat) if run.quick else Plan.full(run.repeat),
                        quiet_timeout=run.quiet_timeout, retries=run.retries)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="triomem-bench-", dir=run.directory) as directory:
        results = measure(plan, directory)
    report = {"machine": machine(), **summary(results, plan),
              "elapsed_s": time.perf_counter() - started}
    emit(report, run.as_json, functools.partial(render, plan=plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
