"""An opt-in Prometheus endpoint: ``GET /metrics`` answers the engine's statistics as text.

Started by ``triomem serve`` when the ``metrics.enabled`` setting is on, on
``metrics.host:metrics.port`` (127.0.0.1:9464 by default: loopback unless configured
otherwise). A deliberately tiny HTTP/1.1 responder on h11 (which trio-websocket already
depends on): one request per connection, ``GET`` or ``HEAD`` of ``/metrics`` (anything else
404 or 405), a few seconds to send it, no keep-alive. Every scrape reads fresh statistics:
counts and sizes of the database, the store's commits, failures and busy retries, recall and
embedding counters, and, with a remote, the sync outbox.

Metric names follow Prometheus conventions: ``triomem_`` prefix, ``_total`` for counters,
``_bytes`` for sizes. The exposition format is text 0.0.4.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from typing import Any

import attrs
import h11
import trio

from ..engine import Engine, EngineStatistics, InvalidMemory, SyncStatus, TriomemError

logger = logging.getLogger("triomem.transports.metrics")

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
REQUEST_TIMEOUT = 5.0
MAX_REQUEST_BYTES = 16 * 1024


class MetricsUnavailable(Exception):
    """The metrics endpoint could not listen (the message names the address and why)."""


@attrs.frozen
class Metric:
    name: str
    kind: str  # "gauge" | "counter"
    help: str
    samples: tuple[tuple[str, float], ...]  # (label text such as '{state="live"}', value)


def _one(name: str, kind: str, help_text: str, value: float) -> Metric:
    return Metric(name, kind, help_text, (("", value),))


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def collect(stats: EngineStatistics, sync: SyncStatus | None) -> list[Metric]:
    """The metrics for one scrape, from ``engine.statistics()`` and (with a remote)
    ``engine.sync_status()``."""
    db, store, embed, recall = stats.database, stats.store, stats.embed, stats.recall
    metrics = [
        Metric("triomem_info", "gauge", "The engine's database and embedding model.",
               ((f'{{path="{_label(stats.path)}",embedder="{_label(stats.embedder)}"}}', 1),)),
        Metric("triomem_memories", "gauge", "Memories in the database, by state.",
               (('{state="live"}', db.live_memories),
                ('{state="forgotten"}', db.forgotten_memories))),
        _one("triomem_database_bytes", "gauge", "Size of the database file.", db.db_bytes),
        _one("triomem_wal_bytes", "gauge", "Size of the write-ahead log.", db.wal_bytes),
        _one("triomem_schema_version", "gauge", "Schema version of the database.",
             db.schema_version),
        _one("triomem_store_queued", "gauge", "Requests waiting for the store actor.",
             store.queued),
        _one("triomem_write_batches_total", "counter", "Group commits.", store.batches),
        _one("triomem_writes_committed_total", "counter", "Writes committed.",
             store.writes_committed),
        _one("triomem_writes_failed_total", "counter", "Writes that failed.",
             store.writes_failed),
        _one("triomem_reads_total", "counter", "Reads served by the store.", store.reads),
        _one("triomem_reads_interrupted_total", "counter", "Reads cut short by cancellation.",
             store.reads_interrupted),
        _one("triomem_busy_retries_total", "counter",
             "Retries after another process held the database lock.", store.busy_retries),
        _one("triomem_busy_give_ups_total", "counter",
             "Operations that gave up on a locked database (StoreBusy).", store.busy_give_ups),
        _one("triomem_checkpoints_total", "counter", "WAL checkpoints run.", store.checkpoints),
        _one("triomem_recalls_served_total", "counter", "Recalls answered.", recall.served),
        _one("triomem_recalls_partial_total", "counter",
             "Recalls answered partially at their deadline.", recall.partial),
        _one("triomem_recall_timeouts_total", "counter",
             "Recalls with nothing ready by their deadline.", recall.timeouts),
        _one("triomem_recall_cache_hits_total", "counter", "Recalls served from the cache.",
             recall.cache_hits),
        _one("triomem_recalls_running", "gauge", "Recalls in progress.", recall.running),
        _one("triomem_index_vectors", "gauge", "Vectors in the in-memory index.",
             recall.index_size),
        _one("triomem_embed_queued", "gauge", "Texts waiting to be embedded.", embed.queued),
        _one("triomem_embed_batches_total", "counter", "Embedding batches run.", embed.batches),
        _one("triomem_embed_texts_total", "counter", "Texts embedded.", embed.texts),
        _one("triomem_embed_failures_total", "counter", "Embedding batches that failed.",
             embed.failures),
    ]
    if sync is not None:
        metrics += [
            _one("triomem_sync_outbox", "gauge", "Local changes waiting to be pushed.",
                 sync.outbox),
            _one("triomem_sync_dead_letters", "gauge", "Changes the remote refused for good.",
                 sync.dead_letters),
            _one("triomem_sync_conflicts", "gauge", "Versions kept after losing a conflict.",
                 sync.conflicts),
            _one("triomem_sync_pushed_total", "counter", "Versions pushed.", sync.pushed),
            _one("triomem_sync_pulled_total", "counter", "Versions pulled.", sync.pulled),
            _one("triomem_sync_failures_total", "counter", "Failed sync cycles.",
                 sync.failures),
        ]
    return metrics


def render(metrics: Iterable[Metric]) -> str:
    """The Prometheus text exposition of ``metrics``."""
    lines = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in metric.samples:
            number = int(value) if float(value).is_integer() else value
            lines.append(f"{metric.name}{labels} {number}")
    return "\n".join(lines) + "\n"


async def scrape(engine: Engine) -> str:
    """One scrape's text. Raises TriomemError when the engine cannot answer."""
    stats = await engine.statistics()
    sync: SyncStatus | None = None
    try:
        sync = await engine.sync_status()
    except InvalidMemory:  # no remote configured
        sync = None
    return render(collect(stats, sync))


async def serve_metrics(engine: Engine, host: str, port: int, *,
                        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve ``GET /metrics`` on ``host:port`` until cancelled; ``task_status.started`` gets
    the port (the OS picks one for port 0). Raises MetricsUnavailable when it cannot listen."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        raise MetricsUnavailable(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    bound: Any = listeners[0].socket.getsockname()
    logger.info("metrics on http://%s:%d/metrics", host, bound[1])
    handler = functools.partial(_handle, functools.partial(scrape, engine))
    task_status.started(bound[1])
    await trio.serve_listeners(handler, listeners)


async def _handle(body: Callable[[], Awaitable[str]], stream: trio.SocketStream) -> None:
    """Answer one request on ``stream``, then close it. Never raises: a client's mistakes
    and a closing engine only end this connection."""
    try:
        with trio.move_on_after(REQUEST_TIMEOUT):
            await _respond(body, stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
        logger.debug("metrics connection ended: %r", exc)
    finally:
        await trio.aclose_forcefully(stream)


async def _respond(body: Callable[[], Awaitable[str]], stream: trio.SocketStream) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
    event = conn.next_event()
    while event is h11.NEED_DATA:
        conn.receive_data(await stream.receive_some(4096))  # b"": the peer is done
        event = conn.next_event()
    if not isinstance(event, h11.Request):
        return  # closed before sending a request
    status, text = 200, ""
    if event.method not in (b"GET", b"HEAD"):
        status, text = 405, "only GET /metrics\n"
    elif event.target.split(b"?")[0] != b"/metrics":
        status, text = 404, "see /metrics\n"
    else:
        try:
            text = await body()
        except TriomemError as exc:
            status, text = 503, f"{exc.kind}: {exc}\n"
    payload = text.encode()
    headers = [(b"content-type", CONTENT_TYPE if status == 200 else b"text/plain"),
               (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    out = conn.send(h11.Response(status_code=status, headers=headers,
                                 reason=HTTPStatus(status).phrase.encode())) or b""
    if event.method != b"HEAD":
        out += conn.send(h11.Data(data=payload)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(out)
