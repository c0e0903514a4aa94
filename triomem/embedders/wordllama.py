"""WordLlama static embeddings (256-d, MIT): the instant option for bulk work and tests.

wordllama 0.4.0.post1 ships its weights inside its own wheel but downloads unless told not to:
``WordLlama.load(cache_dir=<the package's own folder>, disable_download=True)`` stays offline.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from ._protocol import Vectors, normalize

TOKEN_BUDGET = 16384  # tokens pooled at once: 16 MB of token vectors
# Token ids are kept for up to this many distinct chunks of at most CHUNK_CACHE_CHARS
# characters (at most a few tens of MB; longer chunks, such as pasted blobs, are not kept).
CHUNK_CACHE_SIZE = 1 << 15
CHUNK_CACHE_CHARS = 32

# The tokenizer is a SentencePiece-style BPE over the whole text: spaces become "▁", one "▁" is
# prepended, and no token holds a "▁" after another character, so no merge ever crosses the
# start of a "▁" run. A text is therefore the concatenation of its chunks' tokens (a run of
# "▁" and the characters up to the next one), each tokenized alone with its first "▁" left to
# the tokenizer's own prepend. Tested against whole-text tokenization, fuzzed.
_SPACE = "\u2581"
_CHUNK = re.compile(f"{_SPACE}({_SPACE}*[^{_SPACE}]*)")  # a chunk, less the first "▁"


@attrs.define(eq=False)
class WordLlamaEmbedder:
    _model: Any
    _tokenizer: Tokenizer
    _table: npt.NDArray[np.float32]  # one 256-d vector per token id
    _special: tuple[str, ...]  # added tokens the tokenizer cuts out of any text ("<s>", ...)
    _space_id: int  # the token of a lone "▁"
    # chunk -> its token ids. Shared by worker threads: single dict operations only, and a
    # lookup never relies on an entry another thread may clear.
    _chunks: dict[str, list[int]] = attrs.field(factory=dict)

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
        special = tuple(t.content for t in tokenizer.get_added_tokens_decoder().values())
        space_id = tokenizer.token_to_id(_SPACE)
        assert space_id is not None, "the tokenizer has no token for a lone space"
        return cls(model, tokenizer, np.asarray(model.embedding, dtype=np.float32), special,
                   space_id)

    def embed(self, texts: Sequence[str]) -> Vectors:
        """wordllama's own embedding (the mean of the texts' token vectors), computed leaner.

        Tokens come from a cache of chunks (``token_ids``), and are pooled unpadded, in slices
        of at most ``TOKEN_BUDGET`` tokens: wordllama pads a batch to its longest text and
        gathers a float for every padded position, so 32 texts beside one 64 KiB text took
        over 500 MB (measured ~20% faster, same vectors).
        """
        ids = self.token_ids(texts)
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

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Exactly the tokenizer's ids for each text, from the chunk cache where it can.

        The tokenizer runs BPE over a whole text, so nothing of one text helps the next: about
        16 µs for 100 new characters. Chunks (about a word each) repeat across texts: with
        the cache a new text costs about 5 µs (design/embedders.md).
        """
        cached = self._chunks.get
        chunked: list[list[str] | None] = []
        found: list[list[list[int] | None]] = []
        missing: dict[str, None] = {}
        for text in texts:
            if not text or ("<" in text and any(s in text for s in self._special)):
                chunked.append(None)  # tokenized whole: an added token splits differently
                found.append([])
                continue
            if _SPACE in text or "  " in text or text[0] == " " or text[-1] == " ":
                chunks = _CHUNK.findall(_SPACE + text.replace(" ", _SPACE))
            else:
                chunks = text.split(" ")  # the same chunks, four times faster
            hits = list(map(cached, chunks))
            if None in hits:
                missing.update((c, None) for c, hit in zip(chunks, hits, strict=True)
                               if hit is None)
            chunked.append(chunks)
            found.append(hits)
        fresh: dict[str, list[int]] = {}
        if missing:
            fresh = dict(zip(missing, self._encode(list(missing)), strict=True))
            if "" in fresh:
                fresh[""] = [self._space_id]  # a lone trailing "▁": no prepend to an empty text
            kept = {c: ids for c, ids in fresh.items() if len(c) <= CHUNK_CACHE_CHARS}
            if len(self._chunks) + len(kept) > CHUNK_CACHE_SIZE:
                self._chunks.clear()  # bounded; the working set refills it within a few batches
                kept = dict(itertools.islice(kept.items(), CHUNK_CACHE_SIZE))
            self._chunks.update(kept)
        whole = iter(self._encode([t for t, c in zip(texts, chunked, strict=True) if c is None]))
        out: list[list[int]] = []
        for parts, hits in zip(chunked, found, strict=True):
            if parts is None:
                out.append(next(whole))
            elif None in hits:
                out.append([i for c, hit in zip(parts, hits, strict=True)
                            for i in (fresh[c] if hit is None else hit)])
            else:
                out.append(list(itertools.chain.from_iterable(hits)))  # type: ignore[arg-type]
        return out

    def _encode(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        # encode_batch_fast skips the character offsets nothing here reads
        return [e.ids for e in self._tokenizer.encode_batch_fast(texts,
                                                                  add_special_tokens=False)]

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
