"""The ``RemoteBackend`` contract as a reusable test suite.

Every backend (PostgreSQL, the hub, the fake) runs the same tests: subclass ``RemoteContract``
in a ``test_*.py`` module and override the ``harness`` fixture to return a ``ContractHarness``
for a fresh, empty remote::

    class TestFakeContract(RemoteContract):
        @pytest.fixture
        def harness(self) -> ContractHarness:
            return FakeHarness()

The tests use only the protocol, the values and the typed errors of
``triomem.actors._remote``, real time, and each runs under ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Protocol

import numpy as np
import pytest
import trio

from triomem.actors._remote import (
    PROTOCOL_VERSION,
    ClockSkew,
    DeviceInfo,
    MemoryVersion,
    RemoteBackend,
    UpgradeNeeded,
)

LIMIT_S = 15.0  # every contract test finishes well within this, or fails
SPACE = "personal:ann"
OTHER_SPACE = "team:zoo"


class ContractHarness(Protocol):
    """What the suite needs from one backend under test."""

    dim: int  # the dimension of the vectors the remote indexes
    model: str | None  # the embedding model the clients it opens use
    max_skew_ms: int  # how far ahead a device clock may be before ClockSkew

    def open(self) -> contextlib.AbstractAsyncContextManager[RemoteBackend]:
        """A client of the harness's one remote; several may be open at once."""
        ...

    async def require_protocol(self, min_protocol: int) -> None:
        """Make the remote demand clients of at least ``min_protocol``."""
        ...


_ids = itertools.count(1)


def new_id() -> str:
    return f"0190a1b2-0000-7000-8000-{next(_ids):012d}"


def unit_vector(dim: int, axis: int, tilt: float = 0.0) -> bytes:
    """A unit vector along ``axis``, tilted by ``tilt`` towards the next axis."""
    v = np.zeros(dim, dtype="<f4")
    v[axis % dim] = 1.0
    v[(axis + 1) % dim] = tilt
    unit: bytes = (v / np.linalg.norm(v)).astype("<f4").tobytes()
    return unit


def version(id_: str, content: str | None, hlc: int, *, space: str = SPACE,
            origin: str = "dev-a", embedding: bytes | None = None, model: str | None = None,
            tags: tuple[str, ...] = ("t1",), metadata_json: str = '{"k":[1,"x"]}'
            ) -> MemoryVersion:
    live = content is not None
    return MemoryVersion(
        id=id_, space=space, content=content, content_hash=f"h-{content}" if live else None,
        type="note", tags=tags if live else (), metadata_json=metadata_json if live else "{}",
        created_at=1_700_000_000_000, updated_at=1_700_000_000_000 + hlc,
        deleted_at=None if live else 1_700_000_000_000 + hlc, hlc=hlc, origin=origin,
        embedding=embedding if live else None,
        embedding_model=model if live and embedding is not None else None)


class RemoteContract:
    """The contract tests. Not collected itself (no ``Test`` prefix): subclass it."""

    @pytest.fixture
    def harness(self) -> ContractHarness:
        raise NotImplementedError("override the harness fixture")

    @contextlib.asynccontextmanager
    async def remote(self, harness: ContractHarness) -> AsyncIterator[RemoteBackend]:
        async with harness.open() as remote:
            yield remote

    def live(self, harness: ContractHarness, content: str, hlc: int, *, axis: int = 0,
             id_: str | None = None, origin: str = "dev-a", space: str = SPACE
             ) -> MemoryVersion:
        return version(id_ or new_id(), content, hlc, origin=origin, space=space,
                       embedding=unit_vector(harness.dim, axis), model=harness.model)

    async def test_push_then_pull_returns_versions_in_order_with_a_gap_free_cursor(
            self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                pushed = [self.live(harness, f"memory number {i}", 100 + i, axis=i)
                          for i in range(3)]
                results = await remote.push(SPACE, pushed)
                assert [(r.id, r.status) for r in results] == [(v.id, "applied") for v in pushed]

                page = await remote.pull(SPACE, 0, 10)
                assert page.versions == tuple(pushed)  # every field, vectors bit-exact
                assert page.next_seq > 0
                assert not page.more

                # One by one: the cursor strictly increases and never skips a version.
                cursor, seen = 0, list[MemoryVersion]()
                while True:
                    step = await remote.pull(SPACE, cursor, 1)
                    if not step.versions:
                        assert step.next_seq == cursor
                        break
                    assert step.next_seq > cursor
                    cursor = step.next_seq
                    seen.extend(step.versions)
                assert seen == pushed
                assert cursor == page.next_seq

                later = self.live(harness, "a later memory", 200)
                await remote.push(SPACE, [later])
                tail = await remote.pull(SPACE, page.next_seq, 10)
                assert tail.versions == (later,)
                assert tail.next_seq > page.next_seq
                assert (await remote.pull(OTHER_SPACE, 0, 10)).versions == ()

    async def test_older_version_is_superseded_and_newer_applied(
            self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                id_ = new_id()
                current = self.live(harness, "the port is 5432", 500, id_=id_)
                assert [r.status for r in await remote.push(SPACE, [current])] == ["applied"]
                cursor = (await remote.pull(SPACE, 0, 10)).next_seq

                older = self.live(harness, "the port is 5433", 400, id_=id_)
                assert [r.status for r in await remote.push(SPACE, [older])] == ["superseded"]
                unchanged = await remote.pull(SPACE, 0, 10)
                assert unchanged.versions == (current,)
                assert unchanged.next_seq == cursor  # nothing new to deliver

                newer = self.live(harness, "the port is 6543", 600, id_=id_)
                assert [r.status for r in await remote.push(SPACE, [newer])] == ["applied"]
                moved = await remote.pull(SPACE, cursor, 10)
                assert moved.versions == (newer,)  # the latest state, once

                # A retry after a lost ack: the very same version is "applied" (not a conflict)
                # and changes nothing.
                assert [r.status for r in await remote.push(SPACE, [newer])] == ["applied"]
                assert (await remote.pull(SPACE, moved.next_seq, 10)).versions == ()

    async def test_equal_clocks_are_ordered_by_origin(self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                id_ = new_id()
                a = self.live(harness, "from device a", 700, id_=id_, origin="dev-a")
                b = self.live(harness, "from device b", 700, id_=id_, origin="dev-b")
                assert [r.status for r in await remote.push(SPACE, [a])] == ["applied"]
                assert [r.status for r in await remote.push(SPACE, [b])] == ["applied"]
                assert [r.status for r in await remote.push(SPACE, [a])] == ["superseded"]
                assert (await remote.pull(SPACE, 0, 10)).versions == (b,)

    async def test_one_batch_reports_each_version(self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                kept = self.live(harness, "kept", 900)
                await remote.push(SPACE, [kept])
                stale = self.live(harness, "stale", 800, id_=kept.id)
                fresh = self.live(harness, "fresh", 100)
                results = await remote.push(SPACE, [stale, fresh])
                assert [(r.id, r.status) for r in results] == [
                    (kept.id, "superseded"), (fresh.id, "applied")]

    async def test_tombstones_replicate_with_content_cleared(
            self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                alive = self.live(harness, "forget me: the zebra secret", 100, axis=1)
                await remote.push(SPACE, [alive])
                cursor = (await remote.pull(SPACE, 0, 10)).next_seq
                tomb = version(alive.id, None, 101)
                assert [r.status for r in await remote.push(SPACE, [tomb])] == ["applied"]

                page = await remote.pull(SPACE, cursor, 10)
                assert page.versions == (tomb,)
                got = page.versions[0]
                assert got.content is None and got.content_hash is None
                assert got.embedding is None and got.deleted_at is not None

                hits = await remote.search(SPACE, "zebra secret",
                                           unit_vector(harness.dim, 1), 10)
                assert alive.id not in [h.version.id for h in hits]
                # An older live version cannot resurrect it.
                assert [r.status for r in await remote.push(SPACE, [alive])] == ["superseded"]

    async def test_pull_pages_with_more(self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                pushed = [self.live(harness, f"page item {i}", 10 + i) for i in range(5)]
                await remote.push(SPACE, pushed)
                cursor, pages = 0, []
                while True:
                    page = await remote.pull(SPACE, cursor, 2)
                    pages.append((len(page.versions), page.more))
                    cursor = page.next_seq
                    if not page.more:
                        break
                assert pages == [(2, True), (2, True), (1, False)]
                everything = await remote.pull(SPACE, 0, 5)
                assert everything.versions == tuple(pushed)
                assert not everything.more
                assert everything.next_seq == cursor

    async def test_search_finds_by_vector_and_by_text(self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                cat = self.live(harness, "the cat sleeps on the warm keyboard", 10, axis=0)
                db = self.live(harness, "postgres listens on port 5432", 11, axis=1)
                bird = self.live(harness, "a heron waits by the river", 12, axis=2)
                elsewhere = self.live(harness, "a heron in another space", 13, axis=2,
                                      space=OTHER_SPACE)
                await remote.push(SPACE, [cat, db, bird])
                await remote.push(OTHER_SPACE, [elsewhere])

                near_db = unit_vector(harness.dim, 1, tilt=0.1)
                by_vector = await remote.search(SPACE, "", near_db, 2)
                assert by_vector[0].version.id == db.id
                assert by_vector[0].version.content == db.content
                assert by_vector[0].score == pytest.approx(1 / np.sqrt(1.01), abs=1e-3)

                by_text = await remote.search(SPACE, "keyboard", None, 3)
                assert [h.version.id for h in by_text] == [cat.id]
                assert 0.0 <= by_text[0].score <= 1.0

                hybrid = await remote.search(SPACE, "heron river", unit_vector(harness.dim, 2), 3)
                assert hybrid[0].version.id == bird.id
                assert elsewhere.id not in [h.version.id for h in hybrid]

                everywhere = await remote.search(None, "heron", None, 5)
                assert {h.version.id for h in everywhere} == {bird.id, elsewhere.id}
                assert await remote.search(SPACE, "", None, 5) == []

    async def test_handshake_reports_the_remote_and_its_clock(
            self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                now = time.time_ns() // 1_000_000
                info = await remote.handshake(DeviceInfo("dev-a", now))
                assert info.min_protocol <= PROTOCOL_VERSION
                assert abs(info.server_wall_ms - now) < 60_000
                # A device behind the remote is fine: it cannot win unfairly.
                await remote.handshake(DeviceInfo("dev-b", now - 10 * harness.max_skew_ms))

    async def test_handshake_refuses_a_clock_too_far_ahead(
            self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                ahead = time.time_ns() // 1_000_000 + harness.max_skew_ms + 60_000
                with pytest.raises(ClockSkew):
                    await remote.handshake(DeviceInfo("dev-fast", ahead))

    async def test_handshake_asks_for_an_upgrade(self, harness: ContractHarness) -> None:
        with trio.fail_after(LIMIT_S):
            async with self.remote(harness) as remote:
                now = time.time_ns() // 1_000_000
                with pytest.raises(UpgradeNeeded):
                    await remote.handshake(DeviceInfo("dev-old", now, protocol_version=0))
                await harness.require_protocol(PROTOCOL_VERSION + 1)
                with pytest.raises(UpgradeNeeded):
                    await remote.handshake(DeviceInfo("dev-a", now))
