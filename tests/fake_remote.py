"""FakeRemote: a pure-trio RemoteBackend with a seeded fault plan (tests only).

One ``FakeServer`` holds the replicated state (per space: rows by id with their change seq, and
a head counter, like the PostgreSQL design). Each device talks to it through its own
``FakeRemote`` link with its own ``FaultPlan``, so a test can partition one device, drop acks to
another, and so on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import attrs
import numpy as np
import trio

from triomem import (
    ClockSkew,
    DeviceInfo,
    MemoryVersion,
    PullPage,
    PushResult,
    RemoteAuth,
    RemoteHit,
    RemoteInfo,
    RemotePermanent,
    RemoteTransient,
    UpgradeNeeded,
)
from triomem.actors._stamps import wall_ms


@attrs.define(eq=False)
class FakeServer:
    rows: dict[str, dict[str, tuple[int, MemoryVersion]]] = attrs.field(factory=dict)
    heads: dict[str, int] = attrs.field(factory=dict)
    min_protocol: int = 1
    clock_offset_ms: int = 0  # the server's clock relative to the devices'
    max_skew_ms: int = 5 * 60 * 1000
    pushes: int = 0
    history: list[MemoryVersion] = attrs.field(factory=list)  # every replaced version

    def apply(self, space: str, version: MemoryVersion) -> PushResult:
        rows = self.rows.setdefault(space, {})
        current = rows.get(version.id)
        if current is not None and current[1].key == version.key:
            return PushResult(version.id, "applied")  # a replay: acknowledged, not re-stored
        if current is not None and current[1].key > version.key:
            return PushResult(version.id, "superseded")
        if current is not None:
            self.history.append(current[1])
        self.heads[space] = self.heads.get(space, 0) + 1
        rows[version.id] = (self.heads[space], version)
        return PushResult(version.id, "applied")

    def state(self) -> dict[str, MemoryVersion]:
        return {i: v for rows in self.rows.values() for i, (_, v) in rows.items()}


@attrs.define(eq=False)
class FaultPlan:
    """Probabilities per call, drawn from a seeded RNG, plus switches a test flips."""

    seed: int = 0
    drop_request: float = 0.0  # fails before doing anything
    drop_ack: float = 0.0  # a push applies, then the answer is lost
    duplicate: float = 0.0  # a push is delivered twice
    delay: float = 0.0  # the call first sleeps ``delay_s`` (past a deadline)
    delay_s: float = 2.0
    partial_page: float = 0.0  # a pull returns fewer rows than it could, ``more`` set
    permanent_ids: set[str] = attrs.field(factory=set)
    auth_failures: int = 0  # the next N calls are refused for credentials
    partitioned: bool = False
    rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def roll(self, probability: float) -> bool:
        return probability > 0 and self.rng.random() < probability


@attrs.define(eq=False)
class FakeRemote:
    server: FakeServer
    plan: FaultPlan = attrs.field(factory=FaultPlan)
    calls: int = 0

    async def _enter(self) -> None:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self.plan.partitioned:
            raise RemoteTransient("network partition")
        if self.plan.auth_failures:
            self.plan.auth_failures -= 1
            raise RemoteAuth("token rejected")
        if self.plan.roll(self.plan.delay):
            await trio.sleep(self.plan.delay_s)
        if self.plan.roll(self.plan.drop_request):
            raise RemoteTransient("request dropped")

    async def handshake(self, device: DeviceInfo) -> RemoteInfo:
        await self._enter()
        if device.protocol_version < self.server.min_protocol:
            raise UpgradeNeeded(f"the remote needs protocol {self.server.min_protocol}")
        server_ms = wall_ms() + self.server.clock_offset_ms
        if device.wall_ms - server_ms > self.server.max_skew_ms:
            raise ClockSkew(f"device clock is {device.wall_ms - server_ms} ms ahead")
        return RemoteInfo(1, self.server.min_protocol, server_ms, tuple(self.server.rows))

    async def push(self, space: str, versions: Sequence[MemoryVersion]
                   ) -> Sequence[PushResult]:
        await self._enter()
        refused = [v.id for v in versions if v.id in self.plan.permanent_ids]
        if refused:
            raise RemotePermanent(f"constraint violated by {refused[0]}")
        results = [self.server.apply(space, v) for v in versions]
        self.server.pushes += 1
        if self.plan.roll(self.plan.duplicate):
            for v in versions:
                self.server.apply(space, v)
        if self.plan.roll(self.plan.drop_ack):
            raise RemoteTransient("connection lost before the answer")
        return results

    async def pull(self, space: str, after_seq: int, limit: int) -> PullPage:
        await self._enter()
        rows = sorted((seq, v) for seq, v in self.server.rows.get(space, {}).values()
                      if seq > after_seq)
        take = limit
        if len(rows) > 1 and self.plan.roll(self.plan.partial_page):
            take = min(limit, self.plan.rng.randint(1, len(rows) - 1))
        page = rows[:take]
        return PullPage(tuple(v for _, v in page), page[-1][0] if page else after_seq,
                        len(rows) > take)

    async def search(self, space: str | None, text: str, vector: bytes | None, k: int
                     ) -> Sequence[RemoteHit]:
        """Cosine similarity when a vector is given, plus 1 for a shared word of the text;
        only memories that match at least one way."""
        await self._enter()
        query = None if vector is None else np.frombuffer(vector, dtype="<f4")
        words = {w for w in text.lower().split() if w}
        hits = []
        for name, rows in self.server.rows.items():
            if space is not None and name != space:
                continue
            for _, v in rows.values():
                if v.content is None:
                    continue
                lexical = bool(words & set(v.content.lower().split()))
                similar = query is not None and v.embedding is not None and \
                    len(v.embedding) == 4 * len(query)
                if not (lexical or similar):
                    continue
                score = float(np.frombuffer(v.embedding, dtype="<f4") @ query) \
                    if similar and v.embedding is not None and query is not None else 0.0
                hits.append(RemoteHit(v, score + (1.0 if lexical and not similar else
                                                  0.5 if lexical else 0.0)))
        return sorted(hits, key=lambda h: -h.score)[:k]

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()
