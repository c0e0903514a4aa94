"""The wordllama embedder computes wordllama's own vectors, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triomem.embedders import normalize
from triomem.embedders import wordllama as wordllama_module
from triomem.embedders.wordllama import WordLlamaEmbedder

TEXTS = [
    "The user prefers tabs over spaces in Go code.",
    "a",
    "\u200b",  # no tokens at all: a zero vector, as wordllama gives
    "émoji 🎉 and ünïcödé",
    "deploys happen on Tuesdays " * 300,
    "short one",
    # spaces, "▁" itself and added tokens, where cutting a text into chunks could go wrong
    " ", "a ", "  two  spaces  ", "\u2581 \u2581a", "a\n b", "x <s> y", "<unk>  z ",
    "OPS-1193: rotate the TLS certificate on edge-lb-2 before 14 November.",
    "2025-07-02 0.5 v10 007 x0 0x", "room 101a, 9:45", "٣ and 3",
]


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder.load()


def _reference(embedder: WordLlamaEmbedder, texts: list[str]) -> np.ndarray:
    return normalize(embedder._model.embed(texts, norm=False))


def _whole_text_ids(embedder: WordLlamaEmbedder, texts: list[str]) -> list[list[int]]:
    return [e.ids for e in embedder._tokenizer.encode_batch_fast(texts,
                                                                 add_special_tokens=False)]


def test_vectors_match_wordllamas_own_embed(embedder: WordLlamaEmbedder) -> None:
    for _ in range(2):  # the second time, chunks come from the cache
        ours = embedder.embed(TEXTS)
        reference = _reference(embedder, TEXTS)
        assert ours.shape == (len(TEXTS), 256) and ours.dtype == np.float32
        np.testing.assert_allclose(ours, reference, atol=1e-5)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(
    ["a", "bc", "word", " ", "  ", "\u2581", "\t", "\n", "<s>", "</s>", "<unk>", "<", "é", "日",
     "😀", ".", "-", "0", "09", "7", "x:y", "v1.2", "٣", "WEB-"]), max_size=20).map("".join),
    min_size=1, max_size=8))
def test_token_ids_are_exactly_the_tokenizers(embedder: WordLlamaEmbedder,
                                              texts: list[str]) -> None:
    # The chunk cache never changes a token: every text's ids equal whole-text tokenization.
    assert embedder.token_ids(texts) == _whole_text_ids(embedder, texts)


def test_the_chunk_cache_stays_bounded(embedder: WordLlamaEmbedder,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wordllama_module, "CHUNK_CACHE_SIZE", 50)
    # distinct short chunks (no digits: those are cut out and shared) and a long one, in
    # batches that together hold more chunks than the cache may
    for start in range(0, 200, 40):
        texts = [f"w{chr(97 + i % 26)}{chr(97 + i // 26)} " + "x" * 40
                 for i in range(start, start + 40)]
        assert embedder.token_ids(texts) == _whole_text_ids(embedder, texts)
        assert len(embedder._chunks) <= 50
    assert all(len(chunk) <= wordllama_module.CHUNK_CACHE_CHARS for chunk in embedder._chunks)


def test_pooling_in_slices_under_a_small_token_budget_gives_the_same_vectors(
        embedder: WordLlamaEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = embedder.embed(TEXTS)
    monkeypatch.setattr(wordllama_module, "TOKEN_BUDGET", 8)
    np.testing.assert_allclose(embedder.embed(TEXTS), whole, atol=1e-6)


def test_no_texts_gives_an_empty_matrix(embedder: WordLlamaEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 256)
