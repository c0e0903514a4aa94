"""ReadWhenReadyStream: the WebSocket server's socket stream, over a real socket pair."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from triomem.transports._streams import ReadWhenReadyStream


def _pair() -> tuple[ReadWhenReadyStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return ReadWhenReadyStream(trio.SocketStream(a)), trio.SocketStream(b)


async def test_reads_everything_in_order_then_eof() -> None:
    stream, peer = _pair()
    with trio.fail_after(5):
        await peer.send_all(b"0123456789")
        assert await stream.receive_some(4) == b"0123"  # full: more may be waiting
        assert await stream.receive_some(4) == b"4567"
        assert await stream.receive_some(100) == b"89"  # drained: the next read waits

        async def later() -> None:
            await trio.sleep(0.05)
            await peer.send_all(b"late")
            await peer.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            assert await stream.receive_some(100) == b"late"
        assert await stream.receive_some(100) == b""
        assert await stream.receive_some(100) == b""  # EOF stays EOF
    await stream.aclose()
    await peer.aclose()


async def test_closing_while_a_read_waits_raises_closed() -> None:
    stream, peer = _pair()
    with trio.fail_after(5):
        await peer.send_all(b"x")
        assert await stream.receive_some(100) == b"x"
        raised: list[BaseException] = []

        async def reader() -> None:
            try:
                await stream.receive_some(100)
            except trio.ClosedResourceError as exc:
                raised.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await stream.aclose()
        assert len(raised) == 1
    with pytest.raises(trio.ClosedResourceError):
        await stream.receive_some(100)  # and after: what trio's streams raise
    await peer.aclose()


async def test_sends_pass_through() -> None:
    stream, peer = _pair()
    with trio.fail_after(5):
        await stream.send_all(b"hello")
        await stream.wait_send_all_might_not_block()
        await stream.send_eof()
        assert await peer.receive_some(100) == b"hello"
        assert await peer.receive_some(100) == b""
    await stream.aclose()
    await peer.aclose()
