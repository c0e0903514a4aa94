"""WordLlama static embeddings (256-d, MIT): the instant option for bulk work and tests.

wordllama 0.4.0.post1 ships its weights inside its own wheel but downloads unless told not to:
``WordLlama.load(cache_dir=<the package's own folder>, disable_download=True)`` stays offline.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from ._protocol import Vectors, normalize

TOKEN_BUDGET = 16384  # tokens pooled at once: 16 MB of token vectors


@attrs.define(eq=False)
class WordLlamaEmbedder:
    _model: Any
    _tokenizer: Tokenizer
    _table: npt.NDArray[np.float32]  # one 256-d vector per token id

    model_id = "wordllama:l2_supercat_256"
    dim = 256
    # Batches up to 16 KiB of text (well under a millisecond) are embedded on the trio thread:
    # a thread handoff and a third busy thread cost 64 writers more (design/embedders.md).
    inline_chars = 16384

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
        tokenizer = Tokenizer.from_str(model.tokenizer.to_str())
        tokenizer.no_padding()
        tokenizer.no_truncation()
        return cls(model, tokenizer, np.asarray(model.embedding, dtype=np.float32))

    def embed(self, texts: Sequence[str]) -> Vectors:
        """wordllama's own embedding (the mean of the texts' token vectors), computed leaner.

        ``encode_batch_fast`` skips the character offsets wordllama never reads, and the
        tokens are pooled unpadded, in slices of at most ``TOKEN_BUDGET`` tokens: wordllama
        pads a batch to its longest text and gathers a float for every padded position, so 32
        texts beside one 64 KiB text took over 500 MB (measured ~20% faster, same vectors).
        """
        ids = [e.ids for e in self._tokenizer.encode_batch_fast(list(texts),
                                                                 add_special_tokens=False)]
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        start = 0
        while start < len(ids):
            end, tokens = start + 1, len(ids[start])
            while end < len(ids) and tokens + len(ids[end]) <= TOKEN_BUDGET:
                tokens += len(ids[end])
                end += 1
            out[start:end] = self._mean_pool(ids[start:end])
            start = end
        return normalize(out)

    def _mean_pool(self, ids: list[list[int]]) -> Vectors:
        lengths = np.fromiter(map(len, ids), dtype=np.intp, count=len(ids))
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.intp,
                           count=int(lengths.sum()))
        np.clip(flat, 0, len(self._table) - 1, out=flat)  # as wordllama does
        tokens = self._table[flat]
        sums = np.zeros((len(ids), self.dim), dtype=np.float32)
        # One reduce per text: np.add.reduceat over rows took 7 µs a text, this 2 (32 texts of
        # about 30 tokens); the sums agree to float32 rounding.
        start = 0
        for row, end in enumerate(np.cumsum(lengths).tolist()):
            if end > start:
                np.add.reduce(tokens[start:end], axis=0, out=sums[row])
            start = end
        sums /= np.maximum(lengths, 1)[:, None].astype(np.float32)
        return sums
