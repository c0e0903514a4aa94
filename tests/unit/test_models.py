"""The default model's weights: located without importing, verified, and named when missing."""

from __future__ import annotations

import importlib.util

import pytest

from triomem import EmbedderUnavailable
from triomem.embedders import load_embedder, minilm


def test_weights_are_installed_and_verified() -> None:
    assert minilm.verify_weights() == minilm.WEIGHTS_SHA256


def test_missing_weights_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == minilm.MODEL_PACKAGE else real(name, *a))
    with pytest.raises(EmbedderUnavailable, match="triomem models install"):
        load_embedder("minilm")


def test_unknown_embedder_lists_the_choices() -> None:
    with pytest.raises(EmbedderUnavailable, match="minilm, wordllama, http"):
        load_embedder("gpt-17")
