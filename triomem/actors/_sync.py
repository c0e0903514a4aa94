"""The sync actor: replicate every acknowledged write to a remote, and bring remote changes in.

It never touches the database: the durable outbox, pull cursors, conflicts and dead letters
all live in the store, reached through store requests (``_sql_sync``). A cycle pushes first
(oldest queued changes, batch by batch, per space), then pulls every subscribed space page by
page; each page is applied together with its cursor. Everything is idempotent under the
last-writer-wins guard, so a crash, a lost ack or a duplicate delivery costs a repeat, never a
lost or doubled write.

Failures, by type:
- ``RemoteTransient``: full-jitter exponential backoff from a seeded RNG, retried forever;
- ``RemotePermanent`` on a batch: the batch is retried one version at a time and the refused
  version goes to the dead-letter table (reported, never deleted);
- ``RemoteAuth``, ``UpgradeNeeded``, ``ClockSkew``: sync pauses (local work goes on) and tries
  again after the backoff cap or when kicked;
- anything else is a bug: the sync loop alone restarts, at most ``restarts`` times, then the
  error takes the engine down loudly.
"""

from __future__ import annotations

import json
import logging
import random
from collections import defaultdict
from collections.abc import Sequence

import attrs
import numpy as np
import trio

from ._embed import EmbedHandle
from ._recall import LegQuery, LegResult
from ._remote import (
    ClockSkew,
    DeviceInfo,
    MemoryVersion,
    RemoteAuth,
    RemoteBackend,
    RemotePermanent,
    RemoteTransient,
    UpgradeNeeded,
)
from ._sql_sync import (
    AckOutbox,
    ApplyPulled,
    OutboxAck,
    OutboxItem,
    PulledVersion,
    ReadCursor,
    ReadSpaces,
    ReadSyncFacts,
    SyncFacts,
    TakeOutbox,
)
from ._stamps import wall_ms
from ._store import StoreHandle
from ._values import Memory, utc_from_ms

log = logging.getLogger("triomem.sync")


@attrs.frozen
class SyncConfig:
    remote_name: str = "default"
    # pulled besides the spaces the remote announces and those holding local memories
    spaces: tuple[str, ...] = ("default",)
    push_batch: int = attrs.field(default=200, validator=attrs.validators.gt(0))
    pull_page: int = attrs.field(default=500, validator=attrs.validators.gt(0))
    interval: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))
    backoff_base: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    backoff_cap: float = attrs.field(default=300.0, validator=attrs.validators.gt(0))
    restarts: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    seed: int | None = None


@attrs.frozen
class SyncStatus:
    state: str  # "idle", "syncing", "backoff", "paused"
    paused_reason: str | None
    outbox: int
    dead_letters: int
    conflicts: int
    cursors: dict[str, int] = attrs.field(eq=False)
    last_push_at: float | None
    last_pull_at: float | None
    last_error: str | None
    failures: int
    retry_in: float | None
    pushed: int
    pulled: int
    restarts: int


@attrs.define(eq=False)
class SyncHandle:
    _actor: SyncActor

    def sync_now(self) -> None:
        """Start a cycle at once, even during a backoff or pause. Never blocks."""
        self._actor.kick.set()

    def nudge(self) -> None:
        """After a local write: start a cycle soon, unless sync is backing off or paused
        (writes must not defeat the backoff, or hammer a remote that refuses us)."""
        if self._actor.state in ("idle", "syncing"):
            self._actor.kick.set()

    async def status(self) -> SyncStatus:
        return await self._actor.status()

    async def wait_synced(self) -> None:
        """Kick a cycle and wait until one completes without error (a checkpoint)."""
        target = self._actor.cycles + 1
        self.sync_now()
        while self._actor.cycles < target:
            await self._actor.cycle_done.wait()


@attrs.define(eq=False)
class SyncActor:
    store: StoreHandle
    embed: EmbedHandle
    remote: RemoteBackend
    origin: str
    embedder_id: str
    config: SyncConfig = SyncConfig()
    kick: trio.Event = attrs.field(factory=trio.Event)
    cycle_done: trio.Event = attrs.field(factory=trio.Event)
    cycles: int = 0
    _rng: random.Random = attrs.field(factory=random.Random)
    state: str = "idle"
    _paused: str | None = None
    _failures: int = 0
    _retry_at: float | None = None
    _last_error: str | None = None
    _last_push: float | None = None
    _last_pull: float | None = None
    _pushed: int = 0
    _pulled: int = 0
    _restarts: int = 0
    _remote_spaces: tuple[str, ...] = ()
    _progress: bool = False  # did the current cycle settle anything

    async def status(self) -> SyncStatus:
        facts: SyncFacts = await self.store.call(ReadSyncFacts(self.config.remote_name))
        retry = None if self._retry_at is None else max(0.0, self._retry_at - trio.current_time())
        return SyncStatus(
            self.state, self._paused, facts.outbox, facts.dead_letters, facts.conflicts,
            facts.cursors, self._last_push, self._last_pull, self._last_error, self._failures,
            retry, self._pushed, self._pulled, self._restarts)

    async def run(self, *, task_status: trio.TaskStatus[SyncHandle] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Sync until cancelled. A bug in the loop restarts it (bounded), then re-raises."""
        if self.config.seed is not None:
            self._rng.seed(self.config.seed)
        self.kick.set()  # a first cycle at start: push what queued while we were away
        task_status.started(SyncHandle(self))
        while True:
            try:
                await self._loop()
            except (trio.Cancelled, KeyboardInterrupt):
                raise
            except Exception:
                self._restarts += 1
                log.exception("sync loop crashed (restart %d of %d)", self._restarts,
                              self.config.restarts)
                if self._restarts > self.config.restarts:
                    raise
                await trio.sleep(self.config.backoff_base)

    async def _loop(self) -> None:
        while True:
            wake = self._retry_at if self._retry_at is not None else \
                trio.current_time() + self.config.interval
            with trio.move_on_at(wake):
                await self.kick.wait()
            self.kick = trio.Event()
            self.state = "syncing"
            self._progress = False
            try:
                await self._cycle()
            except RemoteTransient as exc:
                if self._progress:  # a lossy link that still moves data is not a dead one
                    self._failures = 0
                self._back_off("backoff", None, exc)
            except RemoteAuth as exc:  # credentials will not fix themselves in a second
                self._back_off("paused", exc.kind, exc, at_cap=True)
            except (UpgradeNeeded, ClockSkew) as exc:
                self._back_off("paused", exc.kind, exc, at_cap=True)
            else:
                self.state, self._paused, self._retry_at = "idle", None, None
                self._failures = 0
                self.cycles += 1
                self.cycle_done.set()
                self.cycle_done = trio.Event()

    def _back_off(self, state: str, reason: str | None, exc: Exception, *,
                  at_cap: bool = False) -> None:
        """Full jitter: sleep uniform(0, min(cap, base * 2^n))."""
        self._failures += 1
        self.state, self._paused, self._last_error = state, reason, str(exc)
        ceiling = min(self.config.backoff_cap,
                      self.config.backoff_base * 2 ** min(self._failures - 1, 30))
        delay = self.config.backoff_cap if at_cap else self._rng.uniform(0, ceiling)
        self._retry_at = trio.current_time() + delay
        log.warning("sync %s (%s); next try in %.1fs", state, exc, delay)

    async def _cycle(self) -> None:
        # Every cycle: the clock check must hold now, and new spaces appear on the remote.
        info = await self.remote.handshake(DeviceInfo(self.origin, wall_ms()))
        self._remote_spaces = info.spaces
        await self._push_all()
        await self._pull_all()

    async def _push_all(self) -> None:
        while True:
            items: list[OutboxItem] = await self.store.call(TakeOutbox(self.config.push_batch))
            if not items:
                return
            by_space: dict[str, list[OutboxItem]] = defaultdict(list)
            for item in items:
                by_space[item.version.space].append(item)
            for space, batch in by_space.items():
                acks = await self._push_batch(space, batch)
                await self.store.call(AckOutbox(tuple(acks)))
                self._pushed += sum(a.status == "applied" for a in acks)
                self._progress = True
            self._last_push = trio.current_time()

    async def _push_batch(self, space: str, batch: Sequence[OutboxItem]) -> list[OutboxAck]:
        try:
            results = await self.remote.push(space, [self._outgoing(i.version) for i in batch])
        except RemotePermanent as exc:
            if len(batch) == 1:
                log.error("remote refused %s for good: %s", batch[0].version.id, exc)
                return [OutboxAck(batch[0].version.id, batch[0].change, "permanent", str(exc))]
            acks: list[OutboxAck] = []  # find the refused version(s): one at a time
            for item in batch:
                acks += await self._push_batch(space, [item])
            return acks
        status = {r.id: r.status for r in results}
        return [OutboxAck(i.version.id, i.change, status[i.version.id])
                if i.version.id in status else
                OutboxAck(i.version.id, i.change, "transient", "the remote did not answer it")
                for i in batch]

    def _outgoing(self, version: MemoryVersion) -> MemoryVersion:
        return version if version.embedding_model == self.embedder_id else \
            attrs.evolve(version, embedding=None, embedding_model=None)

    async def _pull_all(self) -> None:
        spaces: list[str] = await self.store.call(ReadSpaces())
        for space in dict.fromkeys([*self.config.spaces, *self._remote_spaces, *spaces]):
            while True:
                cursor: int = await self.store.call(
                    ReadCursor(self.config.remote_name, space))
                page = await self.remote.pull(space, cursor, self.config.pull_page)
                if page.versions:
                    pulled = await self._with_vectors(page.versions)
                    counts: dict[str, int] = await self.store.call(
                        ApplyPulled(self.config.remote_name, space, pulled, page.next_seq))
                    self._pulled += counts["applied"]
                    self._progress = True
                elif page.next_seq > cursor:
                    await self.store.call(
                        ApplyPulled(self.config.remote_name, space, (), page.next_seq))
                if not page.more:
                    break
        self._last_pull = trio.current_time()

    async def _with_vectors(self, versions: Sequence[MemoryVersion]
                            ) -> tuple[PulledVersion, ...]:
        """Vectors in this database's model: taken as sent when the model matches, else made
        here from the content (never mixing models)."""
        missing = [v for v in versions if v.content is not None
                   and (v.embedding is None or v.embedding_model != self.embedder_id)]
        made: dict[str, bytes] = {}
        if missing:
            vectors = await self.embed.embed([v.content or "" for v in missing])
            made = {v.id: np.ascontiguousarray(vec, dtype="<f4").tobytes()
                    for v, vec in zip(missing, vectors, strict=True)}
        return tuple(PulledVersion(v, None if v.content is None else made.get(v.id, v.embedding))
                     for v in versions)



def memory_from_version(version: MemoryVersion) -> Memory:
    assert version.content is not None and version.content_hash is not None
    return Memory(
        id=version.id, space=version.space, content=version.content, type=version.type,
        tags=version.tags, metadata=json.loads(version.metadata_json),
        created_at=utc_from_ms(version.created_at), updated_at=utc_from_ms(version.updated_at),
        version=version.hlc, origin=version.origin, content_hash=version.content_hash)


@attrs.define(eq=False)
class RemoteLeg:
    """Recall's remote leg: the remote's own hybrid search, as a background leg (it may finish
    after the deadline; its result is cached for the retry). Filters the remote cannot apply
    are applied here to what it returns."""

    remote: RemoteBackend
    name: str = "remote"
    needs_vector: bool = True
    background: bool = True

    async def search(self, query: LegQuery) -> LegResult:
        vector = None if query.vector is None else \
            np.ascontiguousarray(query.vector, dtype="<f4").tobytes()
        found = await self.remote.search(query.filter.space, query.text, vector, query.k)
        memories = {h.version.id: memory_from_version(h.version) for h in found
                    if h.version.content is not None}
        kept = {i: m for i, m in memories.items() if query.filter.accepts(m)}
        hits = tuple((h.version.id, h.score) for h in found if h.version.id in kept)
        return LegResult(hits, kept)
