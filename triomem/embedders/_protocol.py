"""The embedder contract: synchronous, CPU-bound, called from worker threads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension.

    ``model_id`` is stored in the database: two embedders with the same id must produce
    interchangeable vectors. ``embed`` blocks (it is CPU or network work) and is only ever called
    through the engine's embed actor, on worker threads.

    One exception, opted into by the embedder: an optional ``inline_chars: int`` attribute lets
    the embed actor run batches of at most that many characters on the trio thread. It is for
    models so cheap (static embeddings: a table lookup and a mean) that handing a small batch
    to a thread costs more than embedding it (design/embedders.md).
    """

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return an array of shape ``(len(texts), dim)``, each row L2-normalised."""
        ...


def normalize(vectors: npt.NDArray[np.floating]) -> Vectors:
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    normalized: Vectors = (out / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return normalized
