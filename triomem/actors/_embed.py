"""The embed actor: turns texts into vectors on worker threads, batching concurrent requests.

Embedding is CPU work (or a network call) and never runs inside the store actor, so a slow
model never stalls commits. Each worker task takes one request, drains whatever else is queued
(up to ``max_batch`` texts) and embeds them in one model call on a worker thread: under load,
64 concurrent remembers cost a few batched forward passes instead of 64 single ones.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence

import attrs
import numpy as np
import outcome
import trio

from ..embedders import Embedder, Vectors
from ._call import Call, Mailbox
from ._errors import EmbedderUnavailable, TriomemError
from ._executor import Executor

log = logging.getLogger("triomem.embed")


@attrs.frozen
class EmbedRequest:
    texts: tuple[str, ...]


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
    _mailbox: Mailbox[EmbedRequest]
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

    def statistics(self) -> EmbedStatistics:
        return self._actor.statistics(self._mailbox.queued())

    async def aclose(self) -> None:
        await self._mailbox.aclose()


@attrs.define(eq=False)
class EmbedActor:
    embedder: Embedder
    executor: Executor
    workers: int = 1
    max_batch: int = 64
    mailbox_size: int = 1024
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
        send, receive = trio.open_memory_channel[Call[EmbedRequest]](self.mailbox_size)
        async with receive, trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._worker, receive.clone())
            task_status.started(EmbedHandle(Mailbox(send), self))

    async def _worker(self, receive: trio.MemoryReceiveChannel[Call[EmbedRequest]]) -> None:
        async with receive:
            async for first in receive:
                batch, size = [first], len(first.request.texts)
                while size < self.max_batch:
                    try:
                        call = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(call)
                    size += len(call.request.texts)
                await self._embed_batch([c for c in batch if not c.abandoned])

    async def _embed_batch(self, batch: list[Call[EmbedRequest]]) -> None:
        texts = [t for call in batch for t in call.request.texts]
        if not texts:
            return
        try:
            vectors = await self.executor.run(functools.partial(self.embedder.embed, texts))
            if vectors.shape != (len(texts), self.embedder.dim) or not np.isfinite(vectors).all():
                raise EmbedderUnavailable(
                    f"{self.embedder.model_id} returned malformed vectors {vectors.shape}")
        except Exception as exc:
            self._failures += 1
            self._last_error = str(exc)
            log.error("embedding %d texts failed: %s", len(texts), exc)
            for call in batch:
                call.fail(exc if isinstance(exc, TriomemError) and len(batch) == 1
                          else EmbedderUnavailable(f"{self.embedder.model_id}: {exc}"))
            return
        self._batches += 1
        self._texts += len(texts)
        self._largest = max(self._largest, len(texts))
        offset = 0
        for call in batch:
            n = len(call.request.texts)
            call.reply(outcome.Value(vectors[offset:offset + n]))
            offset += n
