"""The Engine: the public API over the store and embed actors.

Two ways to run one, both structured:

    async with open_engine("memories.db") as engine:        # owns its nursery
        await engine.remember("the user prefers dark mode", tags=["ui"])

    engine = await nursery.start(run_engine, "memories.db")  # lives in the host's nursery
    ...
    await engine.aclose()

Every method is a checkpoint. Validation happens here, before any work: bad input raises
``InvalidMemory(field, reason)`` and nothing is written. A method that returns has had its write
committed (``synchronous=FULL`` by default: on disk).
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import functools
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
import trio

from ..actors._backup import BackupRequest, BackupResult
from ..actors._embed import EmbedActor, EmbedHandle, EmbedStatistics, vector_bytes
from ..actors._errors import InvalidMemory
from ..actors._executor import Executor, InlineExecutor, ThreadExecutor
from ..actors._recall import (
    IndexActor,
    IndexHandle,
    Progress,
    RecallActor,
    RecallHandle,
    RecallLeg,
    RecallRequest,
    RecallResult,
    RecallStatistics,
    TextLeg,
    VectorLeg,
)
from ..actors._sql_read import DatabaseFacts, GetMemory, ListMemories, MemoryFilter, ReadFacts
from ..actors._sql_sync import ListConflicts
from ..actors._sql_write import ForgetMemory, PutMemory, UpdateMemory
from ..actors._store import StoreActor, StoreHandle, StoreStatistics
from ..actors._sync import RemoteLeg, SyncActor, SyncHandle, SyncStatus
from ..actors._values import (
    DEFAULT_SPACE,
    DEFAULT_TYPE,
    Memory,
    Page,
    Remembered,
    content_hash,
    is_text,
    ms_from_time,
    validate_content,
    validate_idempotency_key,
    validate_metadata,
    validate_name,
    validate_tags,
)
from ..embedders import Embedder, load_embedder
from ._config import EngineConfig
from ._transfer import ImportReport, ParsedRecord, export_records, import_records

TimeArg = dt.datetime | float | int | str | None
MAX_LIMIT = 1000


@attrs.frozen
class EngineStatistics:
    path: str
    embedder: str
    database: DatabaseFacts
    store: StoreStatistics
    embed: EmbedStatistics
    recall: RecallStatistics


def _check_limit(limit: object, field: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidMemory(field, f"expected an integer from 1 to {MAX_LIMIT}")
    return limit


def _optional_ms(value: TimeArg, field: str) -> int | None:
    return None if value is None else ms_from_time(value, field)


@attrs.define(eq=False)
class Engine:
    path: str
    config: EngineConfig
    _store: StoreHandle
    _embed: EmbedHandle
    _recall: RecallHandle
    _index: IndexHandle
    _scope: trio.CancelScope
    _closed: trio.Event = attrs.field(factory=trio.Event)
    _sync: _SyncRunner | None = None

    @property
    def embedder_id(self) -> str:
        return self._embed.model_id

    # -- writes ---------------------------------------------------------------------------

    async def remember(
        self,
        content: str,
        *,
        tags: Iterable[str] = (),
        type: str = DEFAULT_TYPE,
        metadata: Mapping[str, Any] | None = None,
        space: str = DEFAULT_SPACE,
        idempotency_key: str | None = None,
        vector: Sequence[float] | npt.NDArray[np.floating] | None = None,
    ) -> Remembered:
        """Store a memory; return it and whether this call created it.

        Exact duplicate content in the same space, or a repeated ``idempotency_key``, returns the
        existing memory with ``created=False``. ``vector`` skips embedding (import, sync); it must
        match the embedder's dimension and be finite. Raises InvalidMemory, StoreBusy,
        StoreIOError, EmbedderUnavailable, EngineClosed.
        """
        limits = self.config.limits
        content = validate_content(content, limits)
        put = PutMemory(
            space=validate_name(space, "space"),
            content=content,
            content_hash=content_hash(content),
            type=validate_name(type, "type"),
            tags=validate_tags(tags, limits),
            metadata_json=validate_metadata(metadata, limits),
            vector=b"" if vector is None else self._given_vector(vector),
            idempotency_key=validate_idempotency_key(idempotency_key),
        )
        result: Remembered = await (self._embed.embed_and_store(content, put) if vector is None
                                    else self._store.call(put))
        self._wrote()
        return result

    async def update(
        self,
        memory_id: str,
        *,
        content: str | None = None,
        tags: Iterable[str] | None = None,
        type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Memory:
        """Change the given fields of a live memory (others stay); re-embeds new content.

        Raises NotFound, DuplicateContent (new content equals another memory's in the space),
        InvalidMemory, and the store's errors.
        """
        limits = self.config.limits
        memory_id = self._check_id(memory_id)
        if content is None and tags is None and type is None and metadata is None:
            raise InvalidMemory("content", "nothing to update: give content, tags, type or "
                                           "metadata")
        request = UpdateMemory(
            id=memory_id,
            tags=None if tags is None else validate_tags(tags, limits),
            type=None if type is None else validate_name(type, "type"),
            metadata_json=None if metadata is None else validate_metadata(metadata, limits),
        )
        memory: Memory
        if content is None:
            memory = await self._store.call(request)
        else:
            content = validate_content(content, limits)
            request = attrs.evolve(request, content=content, content_hash=content_hash(content))
            memory = await self._embed.embed_and_store(content, request)
        self._wrote()
        return memory

    async def forget(self, memory_id: str) -> bool:
        """Erase a memory's content, tags, metadata and vector, keeping a tombstone (id,
        version) for sync. True if this call erased it, False if it was already forgotten.
        Raises NotFound for an id that never existed."""
        erased: bool = await self._store.call(ForgetMemory(self._check_id(memory_id)))
        self._wrote()
        return erased

    # -- reads ----------------------------------------------------------------------------

    async def get(self, memory_id: str) -> Memory:
        """The live memory with this id. Raises NotFound."""
        memory: Memory = await self._store.call(GetMemory(self._check_id(memory_id)))
        return memory

    async def list(
        self,
        *,
        space: str | None = None,
        type: str | None = None,
        tags_all: Iterable[str] = (),
        tags_any: Iterable[str] = (),
        created_after: TimeArg = None,
        created_before: TimeArg = None,
        updated_after: TimeArg = None,
        updated_before: TimeArg = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Live memories, newest first, matching every given filter.

        ``tags_all`` needs every tag (AND), ``tags_any`` at least one (OR). Times are aware
        datetimes or epoch seconds; ``*_after`` is inclusive, ``*_before`` exclusive.
        """
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidMemory("cursor", "expected a string")
        request = ListMemories(
            self._filter(space, type, tags_all, tags_any, created_after, created_before,
                         updated_after, updated_before),
            _check_limit(limit), cursor,
        )
        page: Page = await self._store.call(request)
        return page

    async def recall(
        self,
        query: str,
        *,
        limit: int = 10,
        space: str | None = None,
        type: str | None = None,
        tags_all: Iterable[str] = (),
        tags_any: Iterable[str] = (),
        after: TimeArg = None,
        before: TimeArg = None,
        min_score: float = 0.0,
        include_partial: bool = True,
        progress: Progress | None = None,
        legs: Iterable[str] | None = None,
    ) -> RecallResult:
        """Hybrid recall: the vector index and FTS5 fused (see ``actors/_fusion.py``).

        Runs under ``min(your effective deadline, EngineConfig.recall.deadline)`` and answers by
        then: a ``partial`` result naming the legs that finished, or RecallTimeout ("retry in N
        ms") when nothing was ready (or ``include_partial`` is false). ``after``/``before``
        accept aware datetimes, epoch seconds, ISO 8601 or phrases such as "yesterday" or
        "3 days ago". ``min_score`` drops hits whose fused score (0 to 1) is lower.
        ``progress(progress, total, message)`` is called with increasing values while a long
        recall works. ``legs`` restricts the search to those legs ("vector", "text", ...), for
        diagnostics and evaluation. Raises InvalidMemory naming the field.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidMemory("query", "must be a non-empty string")
        if len(query.encode("utf-8", "surrogatepass")) > self.config.limits.max_content_bytes:
            raise InvalidMemory("query", "longer than the content limit")
        if isinstance(min_score, bool) or not isinstance(min_score, int | float) or \
                not 0.0 <= min_score <= 1.0:
            raise InvalidMemory("min_score", "expected a number from 0 to 1")
        request = RecallRequest(
            validate_content(query, self.config.limits, "query"), _check_limit(limit),
            attrs.evolve(self._filter(space, type, tags_all, tags_any, None, None, None, None),
                         created_after=_optional_ms(after, "after"),
                         created_before=_optional_ms(before, "before")),
            float(min_score), bool(include_partial), progress,
            None if legs is None else frozenset(validate_tags(legs, self.config.limits, "legs")),
        )
        return await self._recall.recall(request)

    async def export(self, *, include_forgotten: bool = False, with_vectors: bool = False
                     ) -> AsyncIterator[dict[str, Any]]:
        """Every memory as a JSON-ready record with all fields, streamed in storage order.

        Each page is one short read, so writers are never paused for the whole export.
        ``include_forgotten`` adds tombstones; ``with_vectors`` adds ``vector`` and
        ``embedder`` (an import into a database with the same model then skips embedding).
        """
        async for record in export_records(self._store, include_forgotten=include_forgotten,
                                           with_vectors=with_vectors):
            yield record

    async def import_records(
        self,
        records: Iterable[tuple[int, object]],
        *,
        skip_bad: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> ImportReport:
        """Import ``(line number, record)`` pairs (see ``_transfer``). Idempotent: by version
        for exported records, by content hash for new ones. Every record is validated first;
        with any bad record and not ``skip_bad`` nothing is imported and the report lists the
        errors by line."""

        async def vectors_for(batch: list[ParsedRecord]) -> list[bytes]:
            out: list[bytes | None] = [
                self._given_vector(r.vector)
                if r.vector is not None and r.embedder == self.embedder_id else None
                for r in batch
            ]
            missing = [i for i, v in enumerate(out) if v is None]
            if missing:
                fresh = await self._embed.embed([batch[i].content or "" for i in missing])
                for i, vector in zip(missing, fresh, strict=True):
                    out[i] = vector_bytes(vector)
            return [v for v in out if v is not None]

        report = await import_records(self._store, vectors_for, records, self.config.limits,
                                      skip_bad=skip_bad, progress=progress)
        self._wrote()
        return report

    async def backup(self, destination: str | os.PathLike[str], *, overwrite: bool = False,
                     pages_per_step: int = 256) -> BackupResult:
        """Copy the live database to ``destination`` with SQLite's online backup API.

        Runs in steps of ``pages_per_step`` pages between the store's other work: writers are
        never paused for more than one step. The file appears under its name only when
        complete and checked. Raises InvalidMemory (destination exists and not ``overwrite``,
        or its directory is missing) or StoreIOError.
        """
        if isinstance(pages_per_step, bool) or not isinstance(pages_per_step, int) or \
                pages_per_step < 1:
            raise InvalidMemory("pages_per_step", "expected a positive integer")
        result: BackupResult = await self._store.call(
            BackupRequest(os.fspath(destination), pages_per_step, overwrite))
        return result

    async def sync_status(self) -> SyncStatus:
        """Outbox depth, last push and pull, backoff or pause, dead letters, conflicts.
        Raises InvalidMemory("remote") when no remote is configured."""
        return await self._syncing().handle.status()

    async def sync_now(self) -> None:
        """Run a sync cycle now and wait until one completes without error. Callers bound the
        wait with ``trio.fail_after``: against an unreachable remote it never completes."""
        await self._syncing().handle.wait_synced()

    async def conflicts(self, limit: int = 100) -> builtins.list[dict[str, Any]]:
        """Versions that lost a last-writer-wins contest, newest first: kept, never dropped."""
        found: builtins.list[dict[str, Any]] = await self._store.call(
            ListConflicts(_check_limit(limit)))
        return found

    def _syncing(self) -> _SyncRunner:
        if self._sync is None:
            raise InvalidMemory("remote", "no remote is configured for this engine")
        return self._sync

    def _wrote(self) -> None:
        if self._sync is not None:
            self._sync.handle.nudge()

    async def statistics(self) -> EngineStatistics:
        facts: DatabaseFacts = await self._store.call(ReadFacts(self.path))
        return EngineStatistics(self.path, self.embedder_id, facts, self._store.statistics(),
                                self._embed.statistics(), self._recall.statistics())

    async def aclose(self) -> None:
        """Stop accepting calls, let queued writes commit, close the database. Idempotent.

        Sync gets ``EngineConfig.sync_grace`` seconds to finish the batch it is pushing; what
        is still queued stays in the durable outbox for the next start.
        """
        if self._sync is not None:
            await self._sync.stop(self.config.sync_grace)
        await self._recall.aclose()
        await self._index.aclose()
        await self._embed.aclose()  # hands on the writes it has taken before the store closes
        await self._store.aclose()
        await self._closed.wait()

    # -- helpers --------------------------------------------------------------------------

    def _given_vector(self, vector: Any) -> bytes:
        try:
            array = np.asarray(vector, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidMemory("vector", "expected a list of numbers") from None
        if array.shape != (self._embed.dim,):
            raise InvalidMemory("vector", f"expected {self._embed.dim} numbers, got shape "
                                          f"{array.shape}")
        if not np.isfinite(array).all():
            raise InvalidMemory("vector", "contains NaN or infinity")
        norm = float(np.linalg.norm(array))
        if norm == 0.0:
            raise InvalidMemory("vector", "must not be all zeros")
        return vector_bytes((array / norm).astype(np.float32))

    @staticmethod
    def _check_id(memory_id: object) -> str:
        if not isinstance(memory_id, str) or not 1 <= len(memory_id) <= 64 or \
                not is_text(memory_id):
            raise InvalidMemory("id", "expected a memory id string")
        return memory_id

    def _filter(self, space: str | None, type: str | None, tags_all: Iterable[str],
                tags_any: Iterable[str], created_after: TimeArg, created_before: TimeArg,
                updated_after: TimeArg, updated_before: TimeArg) -> MemoryFilter:
        limits = self.config.limits
        return MemoryFilter(
            space=None if space is None else validate_name(space, "space"),
            type=None if type is None else validate_name(type, "type"),
            tags_all=validate_tags(tags_all, limits, "tags_all"),
            tags_any=validate_tags(tags_any, limits, "tags_any"),
            created_after=_optional_ms(created_after, "created_after"),
            created_before=_optional_ms(created_before, "created_before"),
            updated_after=_optional_ms(updated_after, "updated_after"),
            updated_before=_optional_ms(updated_before, "updated_before"),
        )


def _executor(config: EngineConfig, workers: int) -> Executor:
    if config.executor == "inline":
        return InlineExecutor()
    return ThreadExecutor(trio.CapacityLimiter(workers))


async def run_engine(
    path: str | os.PathLike[str],
    config: EngineConfig | None = None,
    *,
    task_status: trio.TaskStatus[Engine] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an engine until ``engine.aclose()`` or cancellation: ``await nursery.start(...)``.

    Opening raises StoreCorrupt, SchemaTooNew, EmbedderMismatch, EmbedderUnavailable,
    StoreIOError or StoreBusy before the engine is handed out.
    """
    config = config or EngineConfig()
    path = os.fspath(path)
    embedder = config.embedder
    if isinstance(embedder, str):
        embedder = await _executor(config, 1).run(functools.partial(load_embedder, embedder))
    assert isinstance(embedder, Embedder)
    store_actor = StoreActor(path, embedder.model_id, embedder.dim, _executor(config, 1),
                             config.store_config())
    closed = trio.Event()
    try:
        with _unwrapped():
            async with trio.open_nursery() as nursery:
                store = await nursery.start(store_actor.run)
                embed = await nursery.start(EmbedActor(
                    embedder, _executor(config, config.embed_workers),
                    workers=config.embed_workers, max_batch=config.embed_max_batch,
                    forward=store.forward).run)
                index_actor = IndexActor(store, _executor(config, 1), embedder.dim)
                index = await nursery.start(index_actor.run)
                legs: list[RecallLeg] = [VectorLeg(index),
                                         TextLeg(store, config.recall.fusion.text_floor),
                                         *config.extra_legs]
                sync = None
                if config.remote is None and config.remote_url:
                    from ..remotes import remote_from_url

                    config = attrs.evolve(config, remote=remote_from_url(
                        config.remote_url, dim=embedder.dim, model=embedder.model_id,
                        token=config.remote_token))
                if config.remote is not None:
                    facts: DatabaseFacts = await store.call(ReadFacts(path))
                    sync = await nursery.start(_SyncRunner.start, SyncActor(
                        store, embed, config.remote, facts.origin, embedder.model_id,
                        config.sync))
                    if config.remote_recall:
                        legs.append(RemoteLeg(config.remote))
                recall_actor = RecallActor(store, embed, legs, config.recall,
                                           index_size=lambda: len(index))
                recall = await nursery.start(recall_actor.run)
                task_status.started(
                    Engine(path, config, store, embed, recall, index, nursery.cancel_scope,
                           closed, sync))
    finally:
        closed.set()


@attrs.define(eq=False)
class _SyncRunner:
    """The sync actor in a cancel scope of its own, so shutdown can give it a grace period
    before the store closes under it."""

    handle: SyncHandle
    scope: trio.CancelScope
    done: trio.Event

    @classmethod
    async def start(cls, actor: SyncActor, *,
                    task_status: trio.TaskStatus[_SyncRunner] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        done = trio.Event()
        try:
            with trio.CancelScope() as scope:
                handle = SyncHandle(actor)
                task_status.started(cls(handle, scope, done))
                await actor.run()
        finally:
            done.set()

    async def stop(self, grace: float) -> None:
        self.scope.deadline = min(self.scope.deadline, trio.current_time() + grace)
        await self.done.wait()


@contextlib.contextmanager
def _unwrapped() -> Iterator[None]:
    """Re-raise a nursery's lone exception bare, so callers can ``except NotFound``.

    Several concurrent failures stay grouped; a single one (the common case, and every
    open-time error) comes out as itself, traceback intact.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        leaves: list[BaseException] = []
        stack: list[BaseException] = [group]
        while stack:
            exc = stack.pop()
            if isinstance(exc, BaseExceptionGroup):
                stack.extend(exc.exceptions)
            else:
                leaves.append(exc)
        if len(leaves) == 1:
            raise leaves[0] from None
        raise


@contextlib.asynccontextmanager
async def open_engine(
    path: str | os.PathLike[str], config: EngineConfig | None = None
) -> AsyncIterator[Engine]:
    """``async with open_engine(path, config) as engine``: the engine lives for the block.

    On exit, queued writes commit and the database closes cleanly.
    """
    with _unwrapped():
        async with trio.open_nursery() as nursery:
            engine: Engine = await nursery.start(run_engine, path, config)
            try:
                yield engine
            finally:
                with trio.CancelScope(shield=True):
                    await engine.aclose()

