from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from triomem.actors._stamps import Hlc, UuidV7Source


def test_uuid7_is_version_7_and_strictly_increasing_within_a_millisecond() -> None:
    source = UuidV7Source()
    ids = [source.next(now_ms=1_700_000_000_000) for _ in range(5000)]  # forces counter overflow
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    parsed = uuid.UUID(ids[0])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert int(ids[0].replace("-", "")[:12], 16) == 1_700_000_000_000


def test_uuid7_never_goes_back_when_the_clock_does() -> None:
    source = UuidV7Source()
    first = source.next(now_ms=2_000)
    assert source.next(now_ms=1_000) > first


@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=200))
def test_hlc_ticks_are_strictly_increasing_whatever_the_wall_clock(walls: list[int]) -> None:
    clock = Hlc(0)
    packed = []
    for wall in walls:
        clock = clock.tick(wall)
        packed.append(clock.pack())
    assert packed == sorted(packed)
    assert len(set(packed)) == len(packed)
    assert all(Hlc.unpack(p).pack() == p for p in packed)


def test_hlc_observe_is_after_both() -> None:
    local, remote = Hlc(100, 5), Hlc(200, 7)
    seen = local.observe(remote, now_ms=50)
    assert seen > local
    assert seen > remote
    assert Hlc(5, 0xFFFF).tick(0) == Hlc(6, 0)
