"""The wordllama embedder computes wordllama's own vectors, in bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

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
]


@pytest.fixture(scope="module")
def embedder() -> WordLlamaEmbedder:
    return WordLlamaEmbedder.load()


def _reference(embedder: WordLlamaEmbedder, texts: list[str]) -> np.ndarray:
    return normalize(embedder._model.embed(texts, norm=False))


def test_vectors_match_wordllamas_own_embed(embedder: WordLlamaEmbedder) -> None:
    ours = embedder.embed(TEXTS)
    reference = _reference(embedder, TEXTS)
    assert ours.shape == (len(TEXTS), 256) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_pooling_in_slices_under_a_small_token_budget_gives_the_same_vectors(
        embedder: WordLlamaEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = embedder.embed(TEXTS)
    monkeypatch.setattr(wordllama_module, "TOKEN_BUDGET", 8)
    np.testing.assert_allclose(embedder.embed(TEXTS), whole, atol=1e-6)


def test_no_texts_gives_an_empty_matrix(embedder: WordLlamaEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 256)
