"""remember, recall, list, get, forget, stats: one MCP tool call each.

When a server owns the database (its lock is held and it published an address), the call
goes to that server over its WebSocket, with the token from the lock file, and this process
never opens the file. Otherwise an engine opens the file here and the same tool runs over an
in-memory session. Both paths return the same ``CallToolResult``, so ``--json`` prints the
tool's ``structuredContent`` either way and a tool error (``isError``) exits 1 with its text.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import apsw
import trio

from ..settings import Settings
from ..transports.client import (
    McpClient,
    ProtocolError,
    ServerUnreachable,
    connect_daemon,
    open_local,
)
from ..transports.lockfile import DaemonPaths, probe
from ._common import CommandFailed, database_path, emit, local_engine, note

logger = logging.getLogger("triomem.cli")

STARTING_PATIENCE = 5.0  # seconds to wait for a server that holds the lock but is not listening
POLL = 0.05


@contextlib.asynccontextmanager
async def open_client(settings: Settings) -> AsyncIterator[McpClient]:
    """A client of the server that owns the database, or of a local engine when none does.

    A server that is starting (lock held, no address yet) is waited for up to
    ``STARTING_PATIENCE`` seconds; a published address that does not answer (the server is
    stopping) is looked up again. Raises CommandFailed or the engine's typed errors.
    """
    path = database_path(settings)
    paths = DaemonPaths.for_database(path)
    deadline = trio.current_time() + STARTING_PATIENCE
    async with contextlib.AsyncExitStack() as stack:
        client: McpClient | None = None
        while client is None:
            state = probe(paths)
            if not state.held:
                break
            if state.info is not None:
                try:
                    client = await stack.enter_async_context(connect_daemon(state.info))
                    logger.info("through the server", extra={"url": state.info.url,
                                                              "pid": state.info.pid})
                    if settings.given("embedder") and \
                            settings.get("embedder") != state.info.embedder:
                        logger.warning("the server runs another embedder than configured",
                                       extra={"server": state.info.embedder})
                    break
                except ServerUnreachable as exc:
                    if trio.current_time() > deadline:
                        raise CommandFailed(str(exc)) from None
                    logger.info("server not answering; looking again", extra={"error": str(exc)})
            elif trio.current_time() > deadline:
                logger.warning("the server holding the database is not listening; opening the "
                               "file directly")
                break
            await trio.sleep(POLL)
        if client is None:
            engine = await stack.enter_async_context(local_engine(settings))
            client = await stack.enter_async_context(open_local(engine))
        yield client


async def call(settings: Settings, tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """Run ``tool`` and return its ``structuredContent``. Raises CommandFailed with the
    tool's error text (exit 1)."""
    try:
        async with open_client(settings) as client:
            result = await client.call_tool(tool, arguments)
    except (ProtocolError, ServerUnreachable) as exc:
        raise CommandFailed(str(exc)) from None
    if result.get("isError"):
        content = result.get("content") or [{}]
        raise CommandFailed(str(content[0].get("text", "the tool failed")))
    structured: dict[str, Any] = result.get("structuredContent") or {}
    return structured


def _given(args: argparse.Namespace, **names: str) -> dict[str, Any]:
    """``{argument: value}`` for the flags the user gave (``names``: argument -> dest)."""
    out: dict[str, Any] = {}
    for argument, dest in names.items():
        value = getattr(args, dest, None)
        if value is not None and value != []:
            out[argument] = value
    return out


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _memory_line(memory: Mapping[str, Any]) -> str:
    tags = ",".join(memory.get("tags", []))
    return f"{memory['id']}  {memory['created_at'][:10]}  {tags or '-':20}  " \
           f"{_one_line(memory['content'])}"


async def remember(settings: Settings, args: argparse.Namespace) -> None:
    data = await call(settings, "memory_store", {
        "content": args.text, **_given(args, tags="tags", type="type", space="space",
                                       metadata="metadata")})
    verb = "stored" if data["created"] else "already known"
    emit(args.json, data, f"{verb}: {data['memory']['id']}")


async def recall(settings: Settings, args: argparse.Namespace) -> None:
    data = await call(settings, "memory_recall", {
        "query": args.query, **_given(args, limit="limit", space="space", type="type",
                                      tags_all="tags_all", tags_any="tags_any", after="after",
                                      before="before", min_score="min_score")})
    lines = [f"{h['score']:.4f}  {h['memory']['id']}  {_one_line(h['memory']['content'])}"
             for h in data["hits"]]
    emit(args.json, data, "\n".join(lines) or "(no memories)")
    if data.get("partial") and not args.json:
        note(f"partial result: {', '.join(data.get('legs_pending', []))} did not finish in "
             "time; run again for a complete answer")


async def list_memories(settings: Settings, args: argparse.Namespace) -> None:
    data = await call(settings, "memory_list", _given(
        args, limit="limit", space="space", type="type", tags_all="tags_all",
        tags_any="tags_any", created_after="after", created_before="before", cursor="cursor"))
    lines = [_memory_line(m) for m in data["memories"]]
    emit(args.json, data, "\n".join(lines) or "(no memories)")
    if data.get("next_cursor") and not args.json:
        note(f"more: --cursor {data['next_cursor']}")


async def get(settings: Settings, args: argparse.Namespace) -> None:
    data = await call(settings, "memory_get", {"id": args.id})
    memory = data["memory"]
    fields = ["id", "space", "type", "tags", "created_at", "updated_at", "version", "origin",
              "metadata"]
    lines = [f"{name:11} {', '.join(memory[name]) if name == 'tags' else memory.get(name)}"
             for name in fields]
    emit(args.json, data, "\n".join([*lines, "", memory["content"]]))


async def forget(settings: Settings, args: argparse.Namespace) -> None:
    data = await call(settings, "memory_forget", {"id": args.id})
    emit(args.json, data, "forgotten" if data["erased"] else "was already forgotten")


def read_sync_facts(path: str) -> dict[str, int] | None:
    """Outbox depth, dead letters and kept conflicts, read from the file without locking it
    (WAL readers never block writers); None when the file has no sync tables yet."""
    try:
        conn = apsw.Connection(f"file:{path}?mode=ro",
                               flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    except apsw.Error:
        return None
    try:
        facts = {}
        for name, table in (("outbox", "sync_outbox"), ("dead_letters", "sync_dead"),
                            ("conflicts", "sync_conflict")):
            row: Any = conn.execute(f"SELECT count(*) FROM {table}").fetchall()[0]
            facts[name] = int(row[0])
        return facts
    except apsw.Error:
        return None
    finally:
        conn.close()


async def stats(settings: Settings, args: argparse.Namespace) -> None:
    data = await call(settings, "memory_stats", {})
    if settings.get("remote.url"):
        sync = read_sync_facts(data.get("path") or settings.get("db"))
        if sync is not None:
            data["sync"] = sync
    emit(args.json, data, render_stats(data))


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # pragma: no cover


def render_stats(data: Mapping[str, Any]) -> str:
    """The statistics of ``memory_stats`` (plus ``sync``) as a few aligned lines."""
    db = data.get("database", {})
    store = data.get("store", {})
    embed = data.get("embed", {})
    recall_ = data.get("recall", {})
    rows = [
        ("database", str(data.get("path"))),
        ("embedder", str(data.get("embedder"))),
        ("memories", f"{db.get('live_memories')} live, {db.get('forgotten_memories')} "
                     "forgotten"),
        ("size", f"{_size(db.get('db_bytes', 0))}, WAL {_size(db.get('wal_bytes', 0))}, "
                 f"schema {db.get('schema_version')}"),
        ("writes", f"{store.get('writes_committed')} committed, {store.get('writes_failed')} "
                   f"failed, {store.get('batches')} batches (largest "
                   f"{store.get('largest_batch')}), {store.get('queued')} queued"),
        ("reads", f"{store.get('reads')} ({store.get('reads_interrupted')} interrupted)"),
        ("retries", f"{store.get('busy_retries')} busy retries, {store.get('busy_give_ups')} "
                    f"give-ups, {store.get('checkpoints')} checkpoints"),
        ("recall", f"{recall_.get('served')} served, {recall_.get('partial')} partial, "
                   f"{recall_.get('timeouts')} timeouts, {recall_.get('cache_hits')} cache "
                   f"hits, {recall_.get('index_size')} vectors indexed"),
        ("embed", f"{embed.get('texts')} texts in {embed.get('batches')} batches, "
                  f"{embed.get('failures')} failures"),
    ]
    if "sync" in data:
        sync = data["sync"]
        rows.append(("outbox", f"{sync['outbox']} waiting, {sync['dead_letters']} dead "
                               f"letters, {sync['conflicts']} conflicts kept"))
    if store.get("last_error"):
        rows.append(("last error", str(store["last_error"])))
    return "\n".join(f"{name:10} {value}" for name, value in rows)
