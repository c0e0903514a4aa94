"""Any OpenAI-compatible embeddings endpoint (Ollama, vLLM, a GPU box), with a deadline.

``POST {base_url}/embeddings`` with ``{"model": ..., "input": [...]}``; answers carry
``data[i].embedding`` and ``data[i].index``. Runs on a worker thread like every embedder; the
request timeout is the deadline, and a failure is EmbedderUnavailable, never a hang.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import httpx
import numpy as np

from ..actors._errors import EmbedderUnavailable
from ._protocol import Vectors, normalize


@attrs.define(eq=False)
class HttpEmbedder:
    base_url: str
    model: str
    dim: int
    timeout: float = 30.0
    api_key: str | None = attrs.field(default=None, repr=False)
    _client: httpx.Client = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.Client(base_url=self.base_url.rstrip("/"), headers=headers,
                                    timeout=self.timeout)

    @property
    def model_id(self) -> str:
        return f"http:{self.model}@{self.dim}"

    @classmethod
    def connect(cls, base_url: str, model: str, *, dim: int | None = None, timeout: float = 30.0,
                api_key: str | None = None) -> HttpEmbedder:
        """Create the client; without ``dim``, one probe request learns it."""
        probe = cls(base_url, model, dim or 0, timeout, api_key)
        if not dim:
            probe.dim = int(probe._request(["dimension probe"]).shape[1])
        return probe

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._request(list(texts))
        if vectors.shape != (len(texts), self.dim):
            raise EmbedderUnavailable(
                f"{self.base_url}: expected {len(texts)} vectors of {self.dim} dimensions, "
                f"got shape {vectors.shape}"
            )
        return vectors

    def _request(self, texts: list[str]) -> Vectors:
        try:
            response = self._client.post("/embeddings", json={"model": self.model, "input": texts})
            response.raise_for_status()
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            vectors = np.array([d["embedding"] for d in data], dtype=np.float32)
        except httpx.TimeoutException:
            raise EmbedderUnavailable(
                f"{self.base_url}: no answer within {self.timeout}s") from None
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            raise EmbedderUnavailable(f"{self.base_url}: {exc}") from None
        if vectors.ndim != 2 or not np.isfinite(vectors).all():
            raise EmbedderUnavailable(f"{self.base_url}: malformed or non-finite embeddings")
        return normalize(vectors)

    def close(self) -> None:
        self._client.close()
