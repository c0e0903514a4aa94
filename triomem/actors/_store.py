"""The store actor: the only SQLite connection in the process.

Invariant: exactly one task (this actor's ``run``) ever holds the ``apsw.Connection``. Other code
holds a ``StoreHandle`` and sends it requests over a bounded memory channel. There is no lock:
the connection is used by one task, and through the executor by at most one thread at a time.

Group commit: the actor drains every queued write into one ``BEGIN IMMEDIATE ... COMMIT`` (each
write inside a SAVEPOINT, so a bad write fails alone) and answers each writer only after COMMIT
returned: with ``synchronous=FULL`` an acknowledged write is on disk. Reads run between batches.

Other processes may hold the write lock (a CLI run, another engine). Then BEGIN IMMEDIATE fails
fast (a short busy timeout) and the batch is retried on the trio clock with a jittered, growing
interval, bounded by ``RetryPolicy``; every retry and give-up is counted and logged, and a write
that runs out of budget is answered with ``StoreBusy``. Never an unbounded loop or a silent drop.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import random
from collections.abc import Callable
from typing import Any, Literal

import apsw
import attrs
import outcome
import trio
import trio.testing

from ._backup import BackupJob, BackupRequest
from ._call import Call, Mailbox
from ._errors import (
    EngineClosed,
    InvalidMemory,
    StoreBusy,
    StoreCorrupt,
    StoreIOError,
    TriomemError,
)
from ._executor import Executor
from ._schema import Pragmas, connect, immediate
from ._sql_read import ReadRequest, bind_embedder, wal_size
from ._sql_sync import SyncRead, SyncWrite
from ._sql_write import WriteContext, WriteRequest
from ._stamps import UuidV7Source, wall_ms

log = logging.getLogger("triomem.store")

_IO_ERRORS = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.CantOpenError,
              apsw.PermissionsError)
_CORRUPT_ERRORS = (apsw.CorruptError, apsw.NotADBError)
# Raised by Python, not SQLite, on input no validator caught (a lone surrogate bound as text,
# an integer beyond 64 bits, JSON nested past the stack): the caller's input is at fault, so
# the call fails with a typed error and the actor serves on.
_INPUT_ERRORS = (ValueError, OverflowError, RecursionError)


def _as_typed(exc: Exception) -> TriomemError:
    if isinstance(exc, TriomemError):
        return exc
    log.warning("input rejected inside the store: %s: %s", type(exc).__name__, exc)
    return InvalidMemory("input", f"not storable: {type(exc).__name__}")


@attrs.frozen
class RetryPolicy:
    """How long a write waits for another process's write lock.

    The n-th retry waits ``interval * backoff**(n-1)`` (capped at ``max_interval``), jittered by
    +/-50%. ``fail_mode="raise"`` gives up after ``max_retries`` retries or ``total_timeout``
    seconds, whichever comes first; ``fail_mode="queue"`` keeps the write queued until
    ``total_timeout``. Either way the writer then gets ``StoreBusy``.
    """

    interval: float = attrs.field(default=0.05, validator=attrs.validators.gt(0))
    backoff: float = attrs.field(default=2.0, validator=attrs.validators.ge(1))
    max_interval: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    max_retries: int = attrs.field(default=50, validator=attrs.validators.ge(0))
    total_timeout: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    fail_mode: Literal["raise", "queue"] = attrs.field(
        default="raise", validator=attrs.validators.in_(("raise", "queue"))
    )

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.max_interval, self.interval * self.backoff ** max(0, attempt - 1))
        return base * rng.uniform(0.5, 1.5)

    def exhausted(self, attempts: int, waited: float) -> bool:
        """After ``attempts`` failed attempts (the first is not a retry), give up?"""
        if waited >= self.total_timeout:
            return True
        return self.fail_mode == "raise" and attempts > self.max_retries


@attrs.frozen
class StoreConfig:
    pragmas: Pragmas = Pragmas()
    retry: RetryPolicy = RetryPolicy()
    mailbox_size: int = attrs.field(default=1024, validator=attrs.validators.gt(0))
    max_batch: int = attrs.field(default=256, validator=attrs.validators.gt(0))
    # Seconds a commit may wait for the tasks ready to run to send their writes (``_gather``)
    commit_delay: float = attrs.field(default=0.002, validator=attrs.validators.ge(0))
    idle_checkpoint_after: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    seed: int | None = None  # jitter RNG seed, for reproducible tests


@attrs.frozen
class CheckpointResult:
    mode: str
    wal_frames: int
    checkpointed_frames: int
    busy: bool


@attrs.frozen
class StoreStatistics:
    queued: int
    pending_writes: int
    batches: int
    writes_committed: int
    writes_failed: int
    largest_batch: int
    reads: int
    reads_interrupted: int
    busy_retries: int
    busy_give_ups: int
    checkpoints: int
    last_checkpoint: CheckpointResult | None
    wal_bytes: int
    last_error: str | None


@attrs.define(eq=False)
class _Counters:
    batches: int = 0
    writes_committed: int = 0
    writes_failed: int = 0
    largest_batch: int = 0
    reads: int = 0
    reads_interrupted: int = 0
    busy_retries: int = 0
    busy_give_ups: int = 0
    checkpoints: int = 0
    last_checkpoint: CheckpointResult | None = None
    last_error: str | None = None


AnyWrite = WriteRequest | SyncWrite
AnyRead = ReadRequest | SyncRead
StoreRequest = AnyWrite | AnyRead | BackupRequest


@attrs.define(eq=False)
class StoreHandle:
    """What the rest of the engine holds instead of the connection."""

    _mailbox: Mailbox[StoreRequest]
    _actor: StoreActor

    async def call(self, request: StoreRequest) -> Any:
        return await self._mailbox.call(request)

    async def try_call(self, request: StoreRequest) -> Any:
        return await self._mailbox.try_call(request)

    async def forward(self, call: Call[Any]) -> None:
        """Take a write call another actor completed (the embed actor); see Mailbox.forward."""
        await self._mailbox.forward(call)

    def statistics(self) -> StoreStatistics:
        return self._actor.statistics(self._mailbox.queued())

    @property
    def batches_committed(self) -> int:
        """How many write batches this store has committed: followers of the database (the
        recall index) compare it to skip a round trip when this process wrote nothing."""
        return self._actor.statistics().batches

    async def aclose(self) -> None:
        """Stop accepting requests; the actor finishes what is queued, then closes the file."""
        await self._mailbox.aclose()


def _apply_batch(
    conn: apsw.Connection, requests: list[AnyWrite], *, embedder: str, ids: UuidV7Source
) -> list[outcome.Outcome[Any]]:
    """One transaction for the whole batch, in which each write can fail alone.

    First without savepoints: two statements fewer per write, and FTS5 flushes its pending
    terms once per commit instead of at every savepoint (writes about 10% faster, and far
    fewer tiny FTS5 segments to merge). If a write fails, the whole transaction is rolled back
    and the batch runs again with a savepoint per write, so the failure stays with its write.
    """
    try:
        return _apply(conn, requests, embedder=embedder, ids=ids, savepoints=False)
    except _WriteFailed:
        return _apply(conn, requests, embedder=embedder, ids=ids, savepoints=True)


class _WriteFailed(Exception):
    """A write failed in a batch run without savepoints: roll back, run it with them."""


def _apply(conn: apsw.Connection, requests: list[AnyWrite], *, embedder: str,
           ids: UuidV7Source, savepoints: bool) -> list[outcome.Outcome[Any]]:
    results: list[outcome.Outcome[Any]] = []
    with immediate(conn):
        ctx = WriteContext.load(conn, embedder=embedder, now_ms=wall_ms(), ids=ids)
        for request in requests:
            if savepoints:
                conn.execute("SAVEPOINT w")
            try:
                value = request.apply(ctx)
                if savepoints:
                    ctx.flush()
            except (TriomemError, *_INPUT_ERRORS) as exc:
                if not savepoints:
                    raise _WriteFailed from exc
                ctx.discard()
                conn.execute("ROLLBACK TO w")
                results.append(outcome.Error(_as_typed(exc)))
            else:
                results.append(outcome.Value(value))
            if savepoints:
                conn.execute("RELEASE w")
        try:
            ctx.save()
        except (TriomemError, *_INPUT_ERRORS) as exc:
            if savepoints:
                raise
            raise _WriteFailed from exc
    return results


@attrs.define(eq=False)
class StoreActor:
    path: str
    embedder_id: str
    embedder_dim: int
    executor: Executor
    config: StoreConfig = StoreConfig()
    _conn: apsw.Connection | None = None
    _counters: _Counters = attrs.field(factory=_Counters)
    _pending: list[Call[AnyWrite]] = attrs.field(factory=list)
    _ids: UuidV7Source = attrs.field(factory=UuidV7Source)
    _rng: random.Random = attrs.field(factory=random.Random)
    _reading: Call[AnyRead] | None = None
    _jobs: list[Call[BackupRequest]] = attrs.field(factory=list)  # long jobs, one step a turn
    _identity: tuple[int, int] | None = None  # (device, inode) of the file we opened
    _job: BackupJob | None = None  # the head job, once started

    def statistics(self, queued: int = 0) -> StoreStatistics:
        c = self._counters
        return StoreStatistics(
            queued=queued, pending_writes=len(self._pending), batches=c.batches,
            writes_committed=c.writes_committed, writes_failed=c.writes_failed,
            largest_batch=c.largest_batch, reads=c.reads, reads_interrupted=c.reads_interrupted,
            busy_retries=c.busy_retries, busy_give_ups=c.busy_give_ups,
            checkpoints=c.checkpoints, last_checkpoint=c.last_checkpoint,
            wal_bytes=wal_size(self.path), last_error=c.last_error,
        )

    async def run(self, *, task_status: trio.TaskStatus[StoreHandle] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        """Open the file (retrying on another process's lock), then serve until closed.

        Raises StoreCorrupt, SchemaTooNew, EmbedderMismatch, StoreIOError or StoreBusy before
        ``started`` if the database cannot be opened.
        """
        if self.config.seed is not None:
            self._rng.seed(self.config.seed)
        self._conn = await self._with_busy_retry(self._open, what="open")
        self._identity = self._file_identity()
        send, receive = trio.open_memory_channel[Call[StoreRequest]](self.config.mailbox_size)
        try:
            task_status.started(StoreHandle(Mailbox(send), self))
            await self._serve(receive)
        finally:
            receive.close()
            for call in self._pending:
                call.fail(EngineClosed("engine closed before the write was committed"))
            self._pending.clear()
            if self._job is not None:
                self._job.abort()
                self._job = None
            for job in self._jobs:
                job.fail(EngineClosed("engine closed before the backup finished"))
            self._jobs.clear()
            while True:
                try:
                    receive.receive_nowait().fail(EngineClosed("engine closed"))
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
            with trio.CancelScope(shield=True):
                conn, self._conn = self._conn, None
                await self.executor.run(functools.partial(self._close, conn))

    def _open(self) -> apsw.Connection:
        conn = connect(self.path, self.config.pragmas)
        try:
            with immediate(conn):
                bind_embedder(conn, self.embedder_id, self.embedder_dim)
            conn.set_progress_handler(self._should_interrupt, 1000)
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _close(conn: apsw.Connection) -> None:
        with contextlib.suppress(apsw.Error):  # another process is busy; it will checkpoint
            conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
        conn.close()

    def _should_interrupt(self) -> bool:
        # Runs inside SQLite's VM loop, possibly on the worker thread: reads one flag only.
        reading = self._reading
        return reading is not None and reading.abandoned

    async def _with_busy_retry(self, fn: Callable[[], Any], *, what: str) -> Any:
        """Run ``fn`` through the executor, retrying BusyError under the retry policy."""
        policy, started, attempts = self.config.retry, trio.current_time(), 0
        while True:
            try:
                return await self.executor.run(fn)
            except apsw.BusyError:
                attempts += 1
                waited = trio.current_time() - started
                self._counters.busy_retries += 1
                if policy.exhausted(attempts, waited):
                    self._counters.busy_give_ups += 1
                    log.warning("%s: database still locked after %d retries", what, attempts - 1)
                    raise StoreBusy(attempts - 1, waited) from None
                await trio.sleep(policy.delay(attempts, self._rng))

    async def _serve(self, receive: trio.MemoryReceiveChannel[Call[StoreRequest]]) -> None:
        next_attempt = -math.inf
        idle_since = trio.current_time()
        checkpointed = True
        closed = False
        while not (closed and not self._pending and not self._jobs):
            if self._jobs:
                wake = -math.inf  # a job in progress: take its next step after this turn
            elif self._pending:
                wake = next_attempt
            elif not checkpointed:
                wake = idle_since + self.config.idle_checkpoint_after
            else:
                wake = math.inf
            reads: list[Call[AnyRead]] = []
            if not closed:
                with trio.move_on_at(wake):
                    try:
                        self._take(await receive.receive(), reads)
                    except trio.EndOfChannel:
                        closed = True
                while not closed:
                    try:
                        self._take(receive.receive_nowait(), reads)
                    except trio.WouldBlock:
                        break
                    except trio.EndOfChannel:
                        closed = True
                if self._pending and not (closed or reads) and \
                        trio.current_time() >= next_attempt:
                    closed = await self._gather(receive, reads)
            if reads or self._pending:
                idle_since, checkpointed = trio.current_time(), False
            for call in reads:
                await self._read(call)
            if self._pending and trio.current_time() >= next_attempt:
                retry_in = await self._commit_pending()
                next_attempt = trio.current_time() + retry_in if retry_in else -math.inf
            elif not self._pending and not checkpointed and not self._jobs and \
                    trio.current_time() >= idle_since + self.config.idle_checkpoint_after:
                await self._checkpoint()
                checkpointed = True
            if self._jobs:
                await self._advance_job()
            if closed and self._pending and next_attempt > trio.current_time():
                await trio.sleep_until(next_attempt)

    async def _gather(self, receive: trio.MemoryReceiveChannel[Call[StoreRequest]],
                      reads: list[Call[AnyRead]]) -> bool:
        """Let every task that is ready to run go first (for at most ``commit_delay``), so the
        writes they are about to send share this commit; True if the mailbox closed.

        "Every task has run until it waits" is when the event loop has queued all it can:
        writers just answered by the last commit have sent their next writes, and an inline
        embedding has finished. Measured with 64 writers and a fast embedder: one commit of 64
        while the trio thread rests is 16% faster than two commits of 32, each beside the
        other half's embedding (both threads want the GIL; design/performance.md). A lone
        writer's commit waits one scheduling round; a slow model's batches, embedded on
        worker threads, are not waited for.
        """
        with trio.move_on_after(self.config.commit_delay):
            await trio.testing.wait_all_tasks_blocked()
        while True:
            try:
                self._take(receive.receive_nowait(), reads)
            except trio.WouldBlock:
                return False
            except trio.EndOfChannel:
                return True

    def _take(self, call: Call[StoreRequest], reads: list[Call[AnyRead]]) -> None:
        if isinstance(call.request, AnyWrite):
            self._pending.append(call)  # type: ignore[arg-type]
        elif isinstance(call.request, BackupRequest):
            self._jobs.append(call)  # type: ignore[arg-type]
        else:
            reads.append(call)  # type: ignore[arg-type]

    async def _read(self, call: Call[AnyRead]) -> None:
        if call.abandoned:
            return
        assert self._conn is not None
        conn = self._conn
        self._counters.reads += 1
        self._reading = call
        try:
            async with trio.open_nursery() as nursery:
                if call.deadline < math.inf:
                    nursery.start_soon(self._abandon_at_deadline, call)
                try:
                    value = await self.executor.run(functools.partial(call.request.run, conn))
                    call.reply(outcome.Value(value))
                except apsw.InterruptError:
                    self._counters.reads_interrupted += 1
                    call.fail(trio.TooSlowError("read interrupted: caller gone or deadline"))
                except (TriomemError, *_INPUT_ERRORS) as exc:
                    call.fail(_as_typed(exc))
                except apsw.Error as exc:
                    call.fail(self._translate(exc))
                nursery.cancel_scope.cancel()
        finally:
            self._reading = None

    @staticmethod
    async def _abandon_at_deadline(call: Call[Any]) -> None:
        await trio.sleep_until(call.deadline)
        call.abandoned = True

    async def _commit_pending(self) -> float:
        """Try to commit one batch of pending writes; returns seconds until a retry, or 0."""
        policy = self.config.retry
        self._pending = [c for c in self._pending if not c.abandoned]
        batch = self._pending[: self.config.max_batch]
        if not batch:
            return 0.0
        assert self._conn is not None
        apply = functools.partial(
            _apply_batch, self._conn, [c.request for c in batch],
            embedder=self.embedder_id, ids=self._ids,
        )

        def work() -> list[outcome.Outcome[Any]]:
            self._check_identity()
            return apply()

        try:
            results = await self.executor.run(work)
        except apsw.BusyError:
            self._counters.busy_retries += 1
            attempts = max(c.attempts for c in batch) + 1
            kept = []
            for call in batch:
                call.attempts += 1
                waited = trio.current_time() - call.enqueued_at
                if policy.exhausted(call.attempts, waited):
                    self._counters.busy_give_ups += 1
                    call.fail(StoreBusy(call.attempts - 1, waited))
                else:
                    kept.append(call)
            if len(kept) < len(batch):
                log.warning("gave up %d writes: database locked by another process",
                            len(batch) - len(kept))
            log.info("database locked by another process; batch of %d retried (attempt %d)",
                     len(batch), attempts)
            self._pending = kept + self._pending[len(batch):]
            return policy.delay(attempts, self._rng) if self._pending else 0.0
        except (*_IO_ERRORS, *_CORRUPT_ERRORS, TriomemError) as exc:
            del self._pending[: len(batch)]
            self._counters.writes_failed += len(batch)
            self._counters.last_error = str(exc)
            log.error("batch of %d writes failed: %s", len(batch), exc)
            for call in batch:
                call.fail(self._translate(exc) if isinstance(exc, apsw.Error)
                          else _copy_error(exc))
            return 0.0
        del self._pending[: len(batch)]
        c = self._counters
        c.batches += 1
        c.largest_batch = max(c.largest_batch, len(batch))
        for call, result in zip(batch, results, strict=True):
            if isinstance(result, outcome.Value):
                c.writes_committed += 1
            else:
                c.writes_failed += 1
            call.reply(result)
        return 0.0

    async def _advance_job(self) -> None:
        """One step of the head backup: writers wait for at most this one step."""
        call, conn = self._jobs[0], self._conn
        assert conn is not None
        try:
            if call.abandoned:
                raise trio.TooSlowError("backup abandoned by its caller")
            if self._job is None:
                self._job = await self.executor.run(
                    functools.partial(BackupJob.start, conn, call.request))
            job = self._job
            if await self.executor.run(job.step):
                self._job = None
                self._jobs.pop(0)
                call.reply(outcome.Value(await self.executor.run(job.finish)))
        except (apsw.BusyError, apsw.LockedError):
            self._counters.busy_retries += 1  # another process writes; next turn tries again
        except (TriomemError, apsw.Error, OSError, trio.TooSlowError) as exc:
            if self._job is not None:
                await self.executor.run(self._job.abort)
                self._job = None
            self._jobs.pop(0)
            call.fail(exc if isinstance(exc, TriomemError) else
                      StoreIOError(f"backup failed: {exc}"))

    async def _checkpoint(self) -> None:
        assert self._conn is not None
        conn = self._conn

        def run() -> CheckpointResult:
            try:
                frames, done = conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_TRUNCATE)
                return CheckpointResult("truncate", frames, done, busy=False)
            except apsw.BusyError:
                frames, done = conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
                return CheckpointResult("passive", frames, done, busy=True)

        try:
            self._counters.last_checkpoint = await self.executor.run(run)
            self._counters.checkpoints += 1
        except apsw.Error as exc:
            self._counters.last_error = f"checkpoint: {exc}"
            log.warning("idle checkpoint failed: %s", exc)

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def _check_identity(self) -> None:
        """Refuse to write when the path no longer names the file we opened: SQLite would
        go on writing to a deleted (or replaced) inode and every acknowledgement would be a
        lie once the process ends."""
        if self._identity is not None and self._file_identity() != self._identity:
            raise StoreIOError(f"{self.path} was deleted or replaced while open; writes are "
                               "refused (reads still answer from the open file); restart "
                               "the engine")

    def _translate(self, exc: apsw.Error) -> TriomemError:
        if isinstance(exc, apsw.BusyError):
            return StoreBusy(0, 0.0)
        if isinstance(exc, _CORRUPT_ERRORS):
            return StoreCorrupt(f"database is corrupt: {exc}")
        self._counters.last_error = str(exc)
        return StoreIOError(f"database write failed: {exc}")


def _copy_error(exc: TriomemError) -> TriomemError:
    """A fresh instance per caller: one exception object raised in many tasks tangles tracebacks."""
    clone = type(exc).__new__(type(exc))
    clone.__dict__.update(exc.__dict__)
    clone.args = exc.args
    return clone
