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
# Digits are single tokens that no merge touches, so a chunk is cut at each ASCII digit too:
# its head (up to the first digit) is looked up like a chunk, each digit is its own token, and
# each stretch after a digit is looked up under the key "0" + stretch, tokenized as that
# string less its first two tokens ("▁" and "0"). Numbers, dates and ticket ids then share
# cache entries instead of each making a new one.
_DIGIT = re.compile("[0-9]")
_DIGIT_SPLIT = re.compile("([0-9])")


@attrs.define(eq=False)
class WordLlamaEmbedder:
    _model: Any
    _tokenizer: Tokenizer
    _table: npt.NDArray[np.float32]  # one 256-d vector per token id
    _special: tuple[str, ...]  # added tokens the tokenizer cuts out of any text ("<s>", ...)
    _space_id: int  # the token of a lone "▁"
    _digit_ids: dict[str, list[int]]  # "0".."9" -> [its token]
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
        digit_ids: dict[str, list[int]] = {}
        for digit in "0123456789":
            token = tokenizer.token_to_id(digit)
            assert token is not None, f"the tokenizer has no token for {digit!r}"
            digit_ids[digit] = [token]
        return cls(model, tokenizer, np.asarray(model.embedding, dtype=np.float32), special,
                   space_id, digit_ids)

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
        keyed: list[list[str] | None] = []
        found: list[list[list[int] | None]] = []
        missing: dict[str, None] = {}
        for text in texts:
            if not text or ("<" in text and any(s in text for s in self._special)):
                keyed.append(None)  # tokenized whole: an added token splits differently
                found.append([])
                continue
            keys = _keys(text)
            hits = list(map(cached, keys))
            if None in hits:
                missing.update((k, None) for k, hit in zip(keys, hits, strict=True)
                               if hit is None)
            keyed.append(keys)
            found.append(hits)
        fresh = self._fresh(list(missing)) if missing else {}
        whole = iter(self._encode([t for t, k in zip(texts, keyed, strict=True) if k is None]))
        out: list[list[int]] = []
        for text_keys, hits in zip(keyed, found, strict=True):
            if text_keys is None:
                out.append(next(whole))
            elif None in hits:
                out.append([i for k, hit in zip(text_keys, hits, strict=True)
                            for i in (fresh[k] if hit is None else hit)])
            else:
                out.append(list(itertools.chain.from_iterable(hits)))  # type: ignore[arg-type]
        return out

    def _fresh(self, keys: list[str]) -> dict[str, list[int]]:
        """Token ids for keys not in the cache, which keeps those of at most
        CHUNK_CACHE_CHARS characters."""
        fresh: dict[str, list[int]] = {}
        encode: list[str] = []
        for key in keys:
            if key in self._digit_ids:
                fresh[key] = self._digit_ids[key]
            elif not key:
                fresh[key] = [self._space_id]  # a lone "▁": no prepend to an empty text
            else:
                encode.append(key)
        for key, ids in zip(encode, self._encode(encode), strict=True):
            # "0" + stretch: the tokenizer prepends "▁" and "0" stays a token of its own
            fresh[key] = ids[2:] if key[0] == "0" else ids
        kept = {k: ids for k, ids in fresh.items() if len(k) <= CHUNK_CACHE_CHARS}
        if len(self._chunks) + len(kept) > CHUNK_CACHE_SIZE:
            self._chunks.clear()  # bounded; the working set refills it within a few batches
            kept = dict(itertools.islice(kept.items(), CHUNK_CACHE_SIZE))
        self._chunks.update(kept)
        return fresh

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



def _keys(text: str) -> list[str]:
    """The cache keys of a non-empty text, in order (see _CHUNK and _DIGIT)."""
    if _SPACE in text or "  " in text or text[0] == " " or text[-1] == " ":
        chunks = _CHUNK.findall(_SPACE + text.replace(" ", _SPACE))
        return [k for chunk in chunks for k in _digit_keys(chunk)]
    # Single spaces only: the chunks are the space-separated words (str.split is four times
    # faster than the regex), and with digits, the text is cut at them once, not per chunk.
    parts = _DIGIT_SPLIT.split(text)  # words, digit, stretch and words, digit, ...
    keys = parts[0].split(" ")
    for i in range(1, len(parts), 2):
        keys.append(parts[i])
        stretch, space, words = parts[i + 1].partition(" ")
        if stretch:
            keys.append("0" + stretch)
        if space:
            keys.extend(words.split(" "))
    return keys


def _digit_keys(chunk: str) -> list[str]:
    """A chunk's cache keys: its head, then each digit and the "0"-prefixed stretch after it."""
    if not _DIGIT.search(chunk):
        return [chunk]
    parts = _DIGIT_SPLIT.split(chunk)  # head, digit, stretch, digit, stretch, ...
    keys = [parts[0]]
    for i in range(1, len(parts), 2):
        keys.append(parts[i])
        if parts[i + 1]:
            keys.append("0" + parts[i + 1])
    return keys
