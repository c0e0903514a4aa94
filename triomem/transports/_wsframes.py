"""RFC 6455 frame headers and masking, the parts the server's fast path and the benchmark's
load generator share. Pure functions on bytes.

A frame starts with two bytes: FIN, three reserved bits and the opcode; then the mask bit and
a 7-bit length, where 126 and 127 announce a 16- or 64-bit length after them. A masked frame
(every client frame) carries a 4-byte key next, and its payload is XORed with that key
repeated.
"""

from __future__ import annotations

import struct

FIN = 0x80
TEXT = 0x1
BINARY = 0x2
MASKED = 0x80


def header(first: int, size: int, *, masked: bool = False) -> bytes:
    """A frame's header up to (not including) any mask key: ``first`` is FIN|opcode."""
    mask_bit = MASKED if masked else 0
    if size < 126:
        return struct.pack("!BB", first, mask_bit | size)
    if size < 1 << 16:
        return struct.pack("!BBH", first, mask_bit | 126, size)
    return struct.pack("!BBQ", first, mask_bit | 127, size)


def parse_header(buffer: bytes | bytearray) -> tuple[int, int, int] | None:
    """``(second byte, payload size, header length before any mask key)`` of the frame at the
    head of ``buffer``, or None while its header is incomplete."""
    if len(buffer) < 2:
        return None
    second = buffer[1]
    size = second & 0x7F
    if size == 126:
        return None if len(buffer) < 4 else (second, struct.unpack_from("!H", buffer, 2)[0], 4)
    if size == 127:
        return None if len(buffer) < 10 else (second, struct.unpack_from("!Q", buffer, 2)[0], 10)
    return second, size, 2


def mask(payload: bytes, key: bytes) -> bytes:
    """``payload`` XORed with ``key`` repeated: masks and unmasks alike."""
    size = len(payload)
    repeated = int.from_bytes((key * (size // 4 + 1))[:size], "big")
    return (int.from_bytes(payload, "big") ^ repeated).to_bytes(size, "big")
