"""WordLlama static embeddings (256-d, MIT): the instant option for bulk work and tests.

wordllama 0.4.0.post1 ships its weights inside its own wheel but downloads unless told not to:
``WordLlama.load(cache_dir=<the package's own folder>, disable_download=True)`` stays offline.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ._protocol import Vectors, normalize


@attrs.define(eq=False)
class WordLlamaEmbedder:
    _model: Any

    model_id = "wordllama:l2_supercat_256"
    dim = 256

    @classmethod
    def load(cls) -> WordLlamaEmbedder:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: never reach a hub
        # tokenizers' thread pool spins on the core the store actor needs: 64 writers ran
        # about 5% slower with it (design/performance.md). A user's own setting wins.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import wordllama  # imported lazily: it pulls in a large dependency tree

        model = wordllama.WordLlama.load(
            cache_dir=Path(wordllama.__file__).parent, disable_download=True, dim=256
        )
        return cls(model)

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize(self._model.embed(list(texts), norm=False))
