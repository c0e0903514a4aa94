"""Embedders: the ``Embedder`` protocol and the built-in implementations, by name."""

from __future__ import annotations

import os

from ..actors._errors import EmbedderUnavailable
from ._protocol import Embedder, Vectors, normalize

EMBEDDERS = ("minilm", "wordllama", "http")
DEFAULT_EMBEDDER = "minilm"


def load_embedder(name: str) -> Embedder:
    """Load a built-in embedder by name. Blocking (reads weights): call from a worker thread.

    ``http`` is configured by ``TRIOMEM_EMBED_URL``, ``TRIOMEM_EMBED_MODEL``, optional
    ``TRIOMEM_EMBED_DIM``, ``TRIOMEM_EMBED_TIMEOUT`` and ``TRIOMEM_EMBED_API_KEY``.
    Raises EmbedderUnavailable with a message naming the fix.
    """
    if name == "minilm":
        from .minilm import MiniLM, ModelMissing

        try:
            return MiniLM.load()
        except ModelMissing as exc:
            raise EmbedderUnavailable(str(exc)) from None
    if name == "wordllama":
        from .wordllama import WordLlamaEmbedder

        return WordLlamaEmbedder.load()
    if name == "http":
        from .http import HttpEmbedder

        url = os.environ.get("TRIOMEM_EMBED_URL")
        if not url:
            raise EmbedderUnavailable("the http embedder needs TRIOMEM_EMBED_URL")
        dim = os.environ.get("TRIOMEM_EMBED_DIM")
        return HttpEmbedder.connect(
            url, os.environ.get("TRIOMEM_EMBED_MODEL", "nomic-embed-text"),
            dim=int(dim) if dim else None,
            timeout=float(os.environ.get("TRIOMEM_EMBED_TIMEOUT", "30")),
            api_key=os.environ.get("TRIOMEM_EMBED_API_KEY"),
        )
    raise EmbedderUnavailable(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}")


__all__ = ["DEFAULT_EMBEDDER", "EMBEDDERS", "Embedder", "Vectors", "load_embedder", "normalize"]
