"""A gated embedder: lets a test hold one engine call at a known point."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import attrs
import trio

from tests.fakes import HashEmbedder
from triomem.embedders import Vectors


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
