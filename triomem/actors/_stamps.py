"""Identity and ordering stamps: UUIDv7 memory ids and hybrid logical clock (HLC) versions.

A memory's id is a UUIDv7 (RFC 9562): time-ordered, so ``ORDER BY id`` is creation order and
ids made on different machines never collide. Its version is an HLC packed into one signed
64-bit integer (``wall_ms << 16 | counter``): it never goes backwards even when the wall clock
does, and ``(hlc, origin)`` totally orders versions across replicas (the sync issue builds on
this).
"""

from __future__ import annotations

import os
import time
import uuid

import attrs

_COUNTER_BITS = 16
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1


def wall_ms() -> int:
    """Milliseconds since the Unix epoch from the system clock."""
    return time.time_ns() // 1_000_000


@attrs.define(eq=False)
class UuidV7Source:
    """Makes UUIDv7 strings, strictly increasing within this process.

    Within one millisecond the 12-bit ``rand_a`` field is a counter (RFC 9562 method 1);
    when it overflows the timestamp is advanced by one millisecond.
    """

    _last_ms: int = 0
    _seq: int = 0

    def next(self, now_ms: int | None = None) -> str:
        ms = wall_ms() if now_ms is None else now_ms
        if ms <= self._last_ms:
            ms = self._last_ms
            self._seq += 1
            if self._seq > 0xFFF:
                ms += 1
                self._seq = 0
        else:
            self._seq = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave room to count up
        self._last_ms = ms
        rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
        value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | self._seq << 64 | 0b10 << 62 | rand_b
        return str(uuid.UUID(int=value))


@attrs.frozen(order=True)
class Hlc:
    """A hybrid logical clock reading: wall milliseconds plus a counter for ties."""

    wall: int
    counter: int = 0

    @classmethod
    def unpack(cls, packed: int) -> Hlc:
        return cls(packed >> _COUNTER_BITS, packed & _COUNTER_MASK)

    def pack(self) -> int:
        return self.wall << _COUNTER_BITS | self.counter

    def tick(self, now_ms: int) -> Hlc:
        """The next local reading after this one, given the wall clock now."""
        if now_ms > self.wall:
            return Hlc(now_ms, 0)
        if self.counter < _COUNTER_MASK:
            return Hlc(self.wall, self.counter + 1)
        return Hlc(self.wall + 1, 0)

    def observe(self, remote: Hlc, now_ms: int) -> Hlc:
        """The reading after receiving ``remote``: later than both it and this one."""
        return max(self, remote).tick(now_ms)

    def __str__(self) -> str:
        return f"{self.wall}.{self.counter}"
