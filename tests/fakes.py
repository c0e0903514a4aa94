"""Deterministic fakes, implementing the same Protocols as the real things."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence

import attrs
import numpy as np
import trio

from triomem.embedders import Vectors, normalize

_WORD = re.compile(r"\w+")


@attrs.define(eq=False)
class HashEmbedder:
    """Bag-of-words vectors from hashed tokens: texts sharing words are similar. Instant.

    ``fail_next`` makes the next ``embed`` call raise (an injected fault).
    """

    dim: int = 64
    fail_next: int = 0
    calls: int = 0
    name: str | None = None
    batches: list[int] = attrs.field(factory=list)  # texts per call, in order

    @property
    def model_id(self) -> str:
        return self.name or f"test:hash-{self.dim}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls += 1
        self.batches.append(len(texts))
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("injected embedder fault")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()) or [text]:
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
                out[row, h % self.dim] += 1.0 if (h >> 32) & 1 else -1.0
            if not out[row].any():
                out[row, 0] = 1.0
        return normalize(out)


@attrs.define(eq=False)
class GateEmbedder:
    """``HashEmbedder`` vectors, but a text containing ``marker`` blocks its embed call (on
    the engine's worker thread) until ``release()``. A held call blocks one of the engine's
    ``embed_workers`` (2 by default); the others go on embedding texts without the marker, so
    to stall every embedding give every text the marker."""

    marker: str = "HOLD"
    inner: HashEmbedder = attrs.field(factory=HashEmbedder)
    _entered: trio.Event = attrs.field(factory=trio.Event)
    _released: threading.Event = attrs.field(factory=threading.Event)

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> Vectors:
        if any(self.marker in text for text in texts):
            # Runs on the engine's worker thread (executor="thread"), started by trio.
            trio.from_thread.run_sync(self._entered.set)
            self._released.wait(timeout=30)  # bounded: a broken test must not hang CI
        return self.inner.embed(texts)

    async def wait_entered(self) -> None:
        """Wait until a held call is inside ``embed``. A checkpoint."""
        await self._entered.wait()

    def release(self) -> None:
        self._released.set()
