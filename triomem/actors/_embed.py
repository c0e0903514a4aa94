"""The embed actor: turns texts into vectors on worker threads, batching concurrent requests.

Embedding is CPU work (or a network call) and never runs inside the store actor, so a slow
model never stalls commits. One dispatcher forms batches: it waits for a free worker, then for a
request, lets every caller that is ready to run enqueue (one scheduling round), and hands the
worker what is queued (at most ``max_batch`` texts; for a slow model, its share of the queue
over the free workers) as one model call on a worker thread. Under load, 64 concurrent
remembers cost a few batched forward passes instead of 64 single ones.

Forming the batch only once a worker is free matters: workers that each waited on the channel
got one request apiece by direct handoff, and the lone request became a batch, then a commit,
of its own, in every round after (a self-sustaining wave of one, measured in
design/performance.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
import outcome
import trio

from ..embedders import Embedder, Vectors
from ._call import Call, Mailbox
from ._errors import EmbedderUnavailable, TriomemError
from ._executor import Executor
from ._sql_write import PutMemory, UpdateMemory

log = logging.getLogger("triomem.embed")


@attrs.frozen
class EmbedRequest:
    texts: tuple[str, ...]


@attrs.frozen
class EmbedAndStore:
    """A write to complete with the vector of ``text`` and hand on to the store actor.

    The caller waits once, for the commit: one call where embed-then-store took two, and the
    store receives a whole embedded batch at once (design/performance.md).
    """

    text: str
    write: PutMemory | UpdateMemory  # its ``vector`` is replaced


EmbedCall = Call[EmbedRequest | EmbedAndStore]
Forward = Callable[[Call[Any]], Awaitable[None]]


def vector_bytes(vector: npt.NDArray[np.float32]) -> bytes:
    """The storage form of a vector (or of a matrix's rows, one after another): little-endian
    float32."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


@attrs.frozen
class EmbedStatistics:
    queued: int
    batches: int
    texts: int
    largest_batch: int
    failures: int
    last_error: str | None


@attrs.define(eq=False)
class EmbedHandle:
    _mailbox: Mailbox[EmbedRequest | EmbedAndStore]
    _actor: EmbedActor

    @property
    def model_id(self) -> str:
        return self._actor.embedder.model_id

    @property
    def dim(self) -> int:
        return self._actor.embedder.dim

    async def embed(self, texts: Sequence[str]) -> Vectors:
        """Vectors for ``texts``; a checkpoint. Raises EmbedderUnavailable or EngineClosed."""
        result: Vectors = await self._mailbox.call(EmbedRequest(tuple(texts)))
        return result

    async def embed_and_store(self, text: str, write: PutMemory | UpdateMemory) -> Any:
        """Embed ``text``, store ``write`` with its vector; the store's answer. A checkpoint.

        Raises EmbedderUnavailable, the store's errors, or EngineClosed.
        """
        return await self._mailbox.call(EmbedAndStore(text, write))

    def statistics(self) -> EmbedStatistics:
        return self._actor.statistics(self._mailbox.queued())

    async def aclose(self) -> None:
        """Stop accepting requests and wait until those taken are embedded and handed on."""
        await self._mailbox.aclose()
        await self._actor.stopped.wait()


@attrs.define(eq=False)
class EmbedActor:
    embedder: Embedder
    executor: Executor
    workers: int = 1
    max_batch: int = 64
    mailbox_size: int = 1024
    forward: Forward | None = None  # the store's mailbox, for EmbedAndStore
    # Spread a queue over the free workers when embedding it would take longer than this
    # (seconds, from the recent time per text): about a group commit's time.
    split_above: float = 0.005
    _seconds_per_text: float = 0.0  # moving average, per batch
    stopped: trio.Event = attrs.field(factory=trio.Event)
    _batches: int = 0
    _texts: int = 0
    _largest: int = 0
    _failures: int = 0
    _last_error: str | None = None

    def statistics(self, queued: int) -> EmbedStatistics:
        return EmbedStatistics(queued, self._batches, self._texts, self._largest,
                               self._failures, self._last_error)

    async def run(self, *, task_status: trio.TaskStatus[EmbedHandle] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        send, receive = trio.open_memory_channel[EmbedCall](self.mailbox_size)
        free_workers = trio.Semaphore(self.workers)
        try:
            async with receive, trio.open_nursery() as nursery:
                task_status.started(EmbedHandle(Mailbox(send, deadlines=False), self))
                while True:
                    await free_workers.acquire()
                    try:
                        batch = await self._next_batch(receive, free_workers)
                    except trio.EndOfChannel:
                        break
                    nursery.start_soon(self._work, batch, free_workers)
        finally:
            self.stopped.set()

    async def _next_batch(self, receive: trio.MemoryReceiveChannel[EmbedCall],
                          free_workers: trio.Semaphore) -> list[EmbedCall]:
        first = await receive.receive()
        # Callers woken together (by one commit) send in the same scheduling round as ``first``
        # or the next one: let them all in before draining.
        await trio.lowlevel.cancel_shielded_checkpoint()
        batch, size = [first], _size(first)
        limit = self.max_batch
        # A slow model's queue is spread over the free workers (8 writers embedding with MiniLM
        # use both cores); a fast one's stays whole, as one batch means one commit (splitting
        # a wordllama burst cost 64 writers 9% and 8 writers 38% of their throughput).
        # Counted now, not before the wait: workers may have finished meanwhile.
        queued = 1 + receive.statistics().current_buffer_used
        if queued * self._seconds_per_text > self.split_above:
            free = free_workers.value + 1  # with the worker this batch holds
            limit = min(limit, -(-queued // free))
        while size < limit:
            try:
                call = receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            batch.append(call)
            size += _size(call)
        return batch

    async def _work(self, batch: list[EmbedCall], free_workers: trio.Semaphore) -> None:
        try:
            await self._embed_batch([c for c in batch if not c.abandoned])
        finally:
            free_workers.release()

    async def _embed_batch(self, batch: list[EmbedCall]) -> None:
        texts = [t for call in batch for t in _texts(call.request)]
        if not texts:
            return
        started = trio.current_time()
        try:
            if sum(map(len, texts)) <= getattr(self.embedder, "inline_chars", 0):
                vectors, writes = self._embed(texts, batch)
            else:
                vectors, writes = await self.executor.run(lambda: self._embed(texts, batch))
        except Exception as exc:
            self._failures += 1
            self._last_error = str(exc)
            log.error("embedding %d texts failed: %s", len(texts), exc)
            for call in batch:
                call.fail(exc if isinstance(exc, TriomemError) and len(batch) == 1
                          else EmbedderUnavailable(f"{self.embedder.model_id}: {exc}"))
            return
        per_text = (trio.current_time() - started) / len(texts)
        self._seconds_per_text = per_text if not self._batches else \
            0.8 * self._seconds_per_text + 0.2 * per_text
        self._batches += 1
        self._texts += len(texts)
        self._largest = max(self._largest, len(texts))
        offset = 0
        for call, write in zip(batch, writes, strict=True):
            if write is None:
                n = len(_texts(call.request))
                call.reply(outcome.Value(vectors[offset:offset + n]))
                offset += n
                continue
            offset += 1
            if call.abandoned:
                continue
            assert self.forward is not None, "EmbedAndStore needs the store's mailbox"
            handed_on: Call[Any] = call
            handed_on.request = write
            await self.forward(handed_on)

    def _embed(self, texts: list[str], batch: list[EmbedCall]
               ) -> tuple[Vectors, list[PutMemory | UpdateMemory | None]]:
        """On a worker thread (the trio thread for an inline batch): the vectors, and each
        EmbedAndStore's write completed with its vector."""
        vectors = self.embedder.embed(texts)
        if vectors.shape != (len(texts), self.embedder.dim) or not np.isfinite(vectors).all():
            raise EmbedderUnavailable(
                f"{self.embedder.model_id} returned malformed vectors {vectors.shape}")
        writes: list[PutMemory | UpdateMemory | None] = []
        stored = vector_bytes(vectors)  # one conversion for the batch, then a slice per write
        size = 4 * self.embedder.dim
        offset = 0
        for call in batch:
            request = call.request
            if isinstance(request, EmbedAndStore):
                vector = stored[offset * size:(offset + 1) * size]
                writes.append(request.write.with_vector(vector))
                offset += 1
            else:
                writes.append(None)
                offset += len(request.texts)
        return vectors, writes


def _texts(request: EmbedRequest | EmbedAndStore) -> tuple[str, ...]:
    return (request.text,) if isinstance(request, EmbedAndStore) else request.texts


def _size(call: EmbedCall) -> int:
    return len(_texts(call.request))
