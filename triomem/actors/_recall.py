"""The recall actor: hybrid search under a cancel-scope deadline that always answers.

Each recall runs in its own task (at most ``concurrency`` at once; the mailbox is bounded)
under ``CancelScope(deadline=min(caller's deadline, now + recall deadline))``. Its legs run
concurrently: the text leg (FTS5) at once, and the legs that need the query vector (the local
vector index; later the remote) once the query is embedded. When the deadline comes, the answer
is what is ready: fused from the legs that finished and marked ``partial``, or, with nothing
ready, ``RecallTimeout`` ("still working, retry in N ms"). A recall never blocks its caller past
its deadline.

Legs marked ``background`` (a remote backend) are not cancelled at the deadline: they finish in
the actor's own nursery within ``background_budget`` and their result is cached for
``cache_ttl``, so the caller's retry is served at once. Identical in-flight background searches
are shared, never duplicated.

A caller that goes away cancels its recall's scope (``Call.on_abandon``): the store interrupts
the SQL in progress and no task is left behind.
"""

from __future__ import annotations

import collections
import functools
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
import numpy as np
import numpy.typing as npt
import outcome
import trio

from ._call import Call, Mailbox
from ._embed import EmbedHandle
from ._errors import RecallTimeout, TriomemError
from ._executor import Executor
from ._fts import FrequencyCache, query_terms
from ._fusion import FusionParams, fuse
from ._sql_read import AllowedSeqs, MemoriesById, MemoryFilter, TextCandidates, VectorChanges
from ._store import StoreHandle
from ._values import Memory
from ._vector_index import VectorIndex

log = logging.getLogger("triomem.recall")

Progress = Callable[[float, float | None, str], None]
LegHits = list[tuple[str, float]]


@attrs.frozen
class LegResult:
    """Hits plus the memories a leg brought with it (a remote's memories may not be local)."""

    hits: tuple[tuple[str, float], ...]
    memories: Mapping[str, Memory] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class LegQuery:
    text: str
    vector: npt.NDArray[np.float32] | None
    k: int
    filter: MemoryFilter


class RecallLeg(Protocol):
    """One source of candidates. ``search`` returns ``(memory id, score)`` best first."""

    @property
    def name(self) -> str: ...

    @property
    def needs_vector(self) -> bool: ...

    @property
    def background(self) -> bool:
        """True when the search may safely finish after the deadline (its result is cached)."""
        ...

    async def search(self, query: LegQuery) -> LegHits | LegResult: ...


@attrs.frozen
class RecallConfig:
    deadline: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    concurrency: int = attrs.field(default=8, validator=attrs.validators.gt(0))
    mailbox_size: int = attrs.field(default=256, validator=attrs.validators.gt(0))
    candidates: int = attrs.field(default=50, validator=attrs.validators.gt(0))
    cache_ttl: float = attrs.field(default=30.0, validator=attrs.validators.ge(0))
    cache_size: int = attrs.field(default=256, validator=attrs.validators.ge(0))
    background_budget: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    progress_after: float = attrs.field(default=0.5, validator=attrs.validators.ge(0))
    progress_every: float = attrs.field(default=0.25, validator=attrs.validators.gt(0))
    retry_hint: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))
    fusion: FusionParams = FusionParams()


@attrs.frozen
class RecallRequest:
    text: str
    limit: int
    filter: MemoryFilter
    min_score: float = 0.0
    include_partial: bool = True
    progress: Progress | None = attrs.field(default=None, eq=False)
    legs: frozenset[str] | None = None  # consult only these legs (diagnostics, evaluation)
    vector: npt.NDArray[np.float32] | None = attrs.field(default=None, eq=False)  # precomputed


@attrs.frozen
class RecallHit:
    """One recalled memory: the fused score in (0, 1] and what each leg said about it."""

    memory: Memory
    score: float
    vector_similarity: float | None
    text_rank: int | None
    legs: tuple[str, ...]


@attrs.frozen
class RecallResult:
    hits: tuple[RecallHit, ...]
    partial: bool = False
    legs_finished: tuple[str, ...] = ()
    legs_pending: tuple[str, ...] = ()


@attrs.frozen
class RecallStatistics:
    queued: int
    running: int
    served: int
    partial: int
    timeouts: int
    cache_hits: int
    background_running: int
    index_size: int


# -- the two local legs ------------------------------------------------------------------


@attrs.define(eq=False)
class TextLeg:
    store: StoreHandle
    floor: float = 0.0  # the fusion's text floor: weaker memories need not be scored
    frequencies: FrequencyCache = attrs.field(factory=FrequencyCache)
    name: str = "text"
    needs_vector: bool = False
    background: bool = False

    async def search(self, query: LegQuery) -> LegHits:
        terms = query_terms(query.text)
        if not terms:
            return []
        hits: LegHits = await self.store.call(
            TextCandidates(terms, query.k, query.filter, self.floor, self.frequencies))
        return hits


@attrs.define(eq=False)
class VectorLeg:
    index: IndexHandle
    name: str = "vector"
    needs_vector: bool = True
    background: bool = False

    async def search(self, query: LegQuery) -> LegHits:
        assert query.vector is not None
        return await self.index.search(query.vector, query.k, query.filter)


# -- the index actor: owns the matrix ---------------------------------------------------


@attrs.frozen
class IndexSearch:
    vector: npt.NDArray[np.float32] = attrs.field(eq=False)
    k: int
    filter: MemoryFilter


@attrs.define(eq=False)
class IndexHandle:
    _mailbox: Mailbox[IndexSearch]
    _actor: IndexActor

    async def search(self, vector: npt.NDArray[np.float32], k: int, memory_filter: MemoryFilter
                     ) -> LegHits:
        hits: LegHits = await self._mailbox.call(IndexSearch(vector, k, memory_filter))
        return hits

    def __len__(self) -> int:
        return len(self._actor.index)

    async def aclose(self) -> None:
        await self._mailbox.aclose()


@attrs.define(eq=False)
class IndexActor:
    """Owns the ``VectorIndex``. Before each batch of queued searches it pulls what changed in
    the database since its change watermark (own writes and other processes' alike), then scores
    the whole batch in one matrix product on a worker thread. Mutation and search never
    overlap: both happen inside this one task's turn."""

    store: StoreHandle
    executor: Executor
    dim: int
    max_batch: int = 32
    # Writes by this process are seen at once (the store's commit count moves); writes by
    # other processes on the same file within this many seconds.
    external_refresh: float = 0.05
    index: VectorIndex = attrs.field(init=False)
    _seen_batches: int = -1
    _refreshed_at: float = -math.inf

    def __attrs_post_init__(self) -> None:
        self.index = VectorIndex(self.dim)

    async def run(self, *, task_status: trio.TaskStatus[IndexHandle] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        send, receive = trio.open_memory_channel[Call[IndexSearch]](1024)
        task_status.started(IndexHandle(Mailbox(send), self))
        async with receive:
            async for first in receive:
                batch = [first]
                while len(batch) < self.max_batch:
                    try:
                        batch.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await self._serve([c for c in batch if not c.abandoned])

    async def refresh(self) -> None:
        """Apply every change committed since the watermark (a checkpoint)."""
        self._seen_batches = self.store.batches_committed
        self._refreshed_at = trio.current_time()
        while True:
            request = VectorChanges(self.index.watermark)
            table, changes = await self.store.call(request)
            if table != self.index.generation:
                self.index.reset(table)  # first load, or the database was re-embedded
                continue
            self.index.apply(changes)
            if len(changes) < request.limit:
                return

    async def _serve(self, batch: list[Call[IndexSearch]]) -> None:
        if not batch:
            return
        try:
            if self.store.batches_committed != self._seen_batches or \
                    trio.current_time() - self._refreshed_at >= self.external_refresh:
                await self.refresh()
            allowed: list[npt.NDArray[np.int64] | None] = []
            for call in batch:
                empty = call.request.filter == MemoryFilter()
                allowed.append(None if empty else
                               await self.store.call(AllowedSeqs(call.request.filter)))
        except TriomemError as exc:
            for call in batch:
                call.fail(exc)
            return
        queries = np.stack([c.request.vector for c in batch]).astype(np.float32)
        k = max(c.request.k for c in batch)
        results = await self.executor.run(
            functools.partial(self.index.search, queries, k, allowed))
        for call, hits in zip(batch, results, strict=True):
            call.reply(outcome.Value(hits[: call.request.k]))


# -- the recall actor -------------------------------------------------------------------


@attrs.define(eq=False)
class RecallHandle:
    _mailbox: Mailbox[RecallRequest]
    _actor: RecallActor

    async def recall(self, request: RecallRequest) -> RecallResult:
        """Answer by the deadline (a checkpoint). Raises RecallTimeout, InvalidMemory, ..."""
        result: RecallResult = await self._mailbox.call(request)
        return result

    def statistics(self) -> RecallStatistics:
        return self._actor.statistics(self._mailbox.queued())

    async def aclose(self) -> None:
        await self._mailbox.aclose()


@attrs.define(eq=False)
class _Background:
    """A background leg search in flight, shared by every request that wants it."""

    done: trio.Event = attrs.field(factory=trio.Event)
    result: LegHits | LegResult | None = None


@attrs.define(eq=False)
class RecallActor:
    store: StoreHandle
    embed: EmbedHandle
    legs: Sequence[RecallLeg]
    config: RecallConfig = RecallConfig()
    index_size: Callable[[], int] = lambda: 0
    _cache: collections.OrderedDict[tuple[Any, ...], tuple[float, LegHits | LegResult]] = attrs.field(
        factory=collections.OrderedDict)
    _inflight: dict[tuple[Any, ...], _Background] = attrs.field(factory=dict)
    _served: int = 0
    _partial: int = 0
    _timeouts: int = 0
    _cache_hits: int = 0
    _running: int = 0

    def statistics(self, queued: int) -> RecallStatistics:
        return RecallStatistics(queued, self._running, self._served, self._partial,
                                self._timeouts, self._cache_hits, len(self._inflight),
                                self.index_size())

    async def run(self, *, task_status: trio.TaskStatus[RecallHandle] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        send, receive = trio.open_memory_channel[Call[RecallRequest]](self.config.mailbox_size)
        limiter = trio.CapacityLimiter(self.config.concurrency)
        async with receive, trio.open_nursery() as background:
            async with trio.open_nursery() as requests:
                task_status.started(RecallHandle(Mailbox(send), self))
                async for call in receive:
                    await limiter.acquire_on_behalf_of(call)
                    requests.start_soon(self._serve_one, call, limiter, background)
            background.cancel_scope.cancel()  # closing: background legs stop with the engine

    async def _serve_one(self, call: Call[RecallRequest], limiter: trio.CapacityLimiter,
                         background: trio.Nursery) -> None:
        self._running += 1
        try:
            if call.abandoned:
                return
            deadline = min(call.deadline, trio.current_time() + self.config.deadline)
            with trio.CancelScope(deadline=deadline) as scope:
                call.on_abandon = scope.cancel
                try:
                    call.reply(outcome.Value(await self._recall(call.request, deadline,
                                                                background)))
                except TriomemError as exc:
                    call.fail(exc)
            if scope.cancelled_caught and not call.abandoned:
                self._timeouts += 1
                call.fail(RecallTimeout(self.config.retry_hint))
        finally:
            self._running -= 1
            limiter.release_on_behalf_of(call)

    async def _recall(self, request: RecallRequest, deadline: float,
                      background: trio.Nursery) -> RecallResult:
        started = trio.current_time()
        # Leave a little of the budget for fusion and fetching the winners.
        legs_deadline = deadline - min(0.02, (deadline - started) * 0.1)
        k = max(self.config.candidates, request.limit * 2)
        legs = [leg for leg in self.legs if request.legs is None or leg.name in request.legs]
        done: dict[str, LegHits] = {}
        brought: dict[str, Memory] = {}
        steps = len(legs) + 2  # embed, each leg, fuse
        progress = _ProgressReporter(request.progress, steps, started, self.config)
        vector_ready = trio.Event()
        vector: list[npt.NDArray[np.float32]] = []

        async def embed() -> None:
            vector.append(request.vector if request.vector is not None else
                          (await self.embed.embed([request.text]))[0])
            vector_ready.set()
            progress.step("query embedded")

        async def run_leg(leg: RecallLeg) -> None:
            if leg.needs_vector:
                await vector_ready.wait()
            query = LegQuery(request.text, vector[0] if vector else None, k, request.filter)
            found = await (self._background_leg(leg, query, background) if leg.background
                           else leg.search(query))
            if isinstance(found, LegResult):
                brought.update(found.memories)
                found = list(found.hits)
            done[leg.name] = found
            progress.step(f"{leg.name} leg finished")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(progress.heartbeat)
            with trio.move_on_at(legs_deadline):
                async with trio.open_nursery() as running:
                    if any(leg.needs_vector for leg in legs):
                        running.start_soon(embed)
                    for leg in legs:
                        running.start_soon(run_leg, leg)
            nursery.cancel_scope.cancel()
        pending = tuple(leg.name for leg in legs if leg.name not in done)
        if pending and (not done or not request.include_partial):
            self._timeouts += 1
            raise RecallTimeout(self.config.retry_hint)
        fused = [f for f in fuse(done, self.config.fusion, request.limit)
                 if f.score >= request.min_score]
        memories: dict[str, Memory] = await self.store.call(
            MemoriesById(tuple(f.id for f in fused)))
        for memory_id, memory in brought.items():  # the local copy wins when there is one
            memories.setdefault(memory_id, memory)
        progress.step("fused")
        hits = tuple(
            RecallHit(memories[f.id], f.score, f.leg_scores.get("vector"),
                      f.leg_ranks.get("text"), tuple(f.leg_scores))
            for f in fused if f.id in memories
        )
        self._served += 1
        self._partial += bool(pending)
        return RecallResult(hits, bool(pending), tuple(done), pending)

    async def _background_leg(self, leg: RecallLeg, query: LegQuery,
                              background: trio.Nursery) -> LegHits | LegResult:
        key = (leg.name, query.text, query.k, query.filter)
        now = trio.current_time()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache_hits += 1
            return cached[1]
        job = self._inflight.get(key)
        if job is None:
            job = self._inflight[key] = _Background()
            background.start_soon(self._run_background, leg, query, key, job)
        await job.done.wait()
        if job.result is None:
            raise RecallTimeout(self.config.retry_hint)
        return job.result

    async def _run_background(self, leg: RecallLeg, query: LegQuery, key: tuple[Any, ...],
                              job: _Background) -> None:
        try:
            with trio.move_on_after(self.config.background_budget):
                job.result = await leg.search(query)
                self._cache[key] = (trio.current_time() + self.config.cache_ttl, job.result)
                while len(self._cache) > self.config.cache_size:
                    self._cache.popitem(last=False)
        except TriomemError as exc:
            log.warning("%s leg failed: %s", leg.name, exc)
        finally:
            del self._inflight[key]
            job.done.set()


@attrs.define(eq=False)
class _ProgressReporter:
    """Calls ``callback`` with strictly increasing progress: a step at each milestone, and a
    heartbeat every ``progress_every`` seconds once the recall has run ``progress_after``."""

    callback: Progress | None
    total: int
    started: float
    config: RecallConfig
    _value: float = 0.0
    _steps: int = 0

    def step(self, message: str) -> None:
        self._steps += 1
        self._emit(float(self._steps), message)

    def _emit(self, value: float, message: str) -> None:
        if self.callback is None:
            return
        self._value = max(value, math.nextafter(self._value, math.inf))
        try:
            self.callback(self._value, float(self.total), message)
        except Exception:  # a broken progress consumer must not break the recall
            log.exception("progress callback failed")
            self.callback = None

    async def heartbeat(self) -> None:
        if self.callback is None:
            return
        await trio.sleep_until(self.started + self.config.progress_after)
        while True:
            # between milestones, creep towards the next one without reaching it
            gap = (self._steps + 1) - self._value
            self._emit(self._value + gap / 4, "working")
            await trio.sleep(self.config.progress_every)

