"""``HubService``: a triomem engine serving the ``RemoteBackend`` contract to other devices.

One person with a laptop, a desktop and a Raspberry Pi needs no extra software: one engine is
the hub, the others sync with it. In process, ``HubService`` is itself a ``RemoteBackend`` (the
contract tests run against it directly); over the network the WebSocket hub endpoint serves
it and ``HubRemote`` is the client. Pushes go through the hub's store actor under the same
last-writer-wins guard, and its local change numbers are the gap-free pull sequence.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs
import numpy as np
import trio

from ..actors._fts import query_terms
from ..actors._recall import RecallRequest
from ..actors._remote import (
    PROTOCOL_VERSION,
    ClockSkew,
    DeviceInfo,
    MemoryVersion,
    PullPage,
    PushResult,
    RemoteHit,
    RemoteInfo,
    UpgradeNeeded,
)
from ..actors._sql_read import MemoryFilter
from ..actors._sql_sync import ReadSpaces, ServePull, ServePush
from ..actors._stamps import wall_ms
from ..actors._values import Memory
from ._engine import Engine

MAX_SKEW_MS = 5 * 60 * 1000


def _version_of(memory: Memory) -> MemoryVersion:
    return MemoryVersion(
        id=memory.id, space=memory.space, content=memory.content,
        content_hash=memory.content_hash, type=memory.type, tags=memory.tags,
        metadata_json=json.dumps(dict(memory.metadata), sort_keys=True, separators=(",", ":"),
                                 ensure_ascii=False),
        created_at=round(memory.created_at.timestamp() * 1000),
        updated_at=round(memory.updated_at.timestamp() * 1000), deleted_at=None,
        hlc=memory.version, origin=memory.origin)


@attrs.define(eq=False)
class HubService:
    engine: Engine
    max_skew_ms: int = MAX_SKEW_MS
    min_protocol: int = PROTOCOL_VERSION

    async def handshake(self, device: DeviceInfo) -> RemoteInfo:
        await trio.lowlevel.checkpoint()
        if device.protocol_version < self.min_protocol:
            raise UpgradeNeeded(f"this hub needs protocol {self.min_protocol}")
        now = wall_ms()
        if device.wall_ms - now > self.max_skew_ms:
            raise ClockSkew(f"device clock is {device.wall_ms - now} ms ahead of the hub")
        spaces: list[str] = await self.engine._store.call(ReadSpaces())
        return RemoteInfo(1, self.min_protocol, now, tuple(spaces))

    async def push(self, space: str, versions: Sequence[MemoryVersion]
                   ) -> Sequence[PushResult]:
        model = self.engine.embedder_id
        need = [v for v in versions if v.content is not None and v.embedding_model != model]
        made: dict[str, bytes] = {}
        if need:
            vectors = await self.engine._embed.embed([v.content or "" for v in need])
            made = {v.id: np.ascontiguousarray(x, dtype="<f4").tobytes()
                    for v, x in zip(need, vectors, strict=True)}
        vectors_in_model = tuple(
            None if v.content is None else made.get(v.id, v.embedding) for v in versions)
        results: list[str] = await self.engine._store.call(
            ServePush(tuple(attrs.evolve(v, space=space) for v in versions), vectors_in_model))
        self.engine._wrote()
        return [PushResult(v.id, "applied" if r == "applied" else "superseded")
                for v, r in zip(versions, results, strict=True)]

    async def pull(self, space: str, after_seq: int, limit: int) -> PullPage:
        page, more = await self.engine._store.call(ServePull(space, after_seq, limit))
        return PullPage(tuple(v for _, v in page), page[-1][0] if page else after_seq, more)

    async def search(self, space: str | None, text: str, vector: bytes | None, k: int
                     ) -> Sequence[RemoteHit]:
        """The hub's own hybrid recall: the vector index when ``vector`` is in the hub's
        dimension, FTS5 when ``text`` has searchable words, fused when both. A vector-only
        search scores by cosine similarity."""
        dim = self.engine._embed.dim
        query = None if vector is None or len(vector) != 4 * dim else \
            np.frombuffer(vector, dtype="<f4").copy()
        legs = ({"vector"} if query is not None else set()) | \
            ({"text"} if query_terms(text) else set())
        if not legs:
            return []
        result = await self.engine._recall.recall(RecallRequest(
            text or " ", max(1, min(k, 1000)), MemoryFilter(space=space),
            legs=frozenset(legs), vector=query))
        return [RemoteHit(_version_of(h.memory),
                          h.vector_similarity if legs == {"vector"} and
                          h.vector_similarity is not None else h.score)
                for h in result.hits]

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
