"""The executor seam: where the store's synchronous SQL runs.

``ThreadExecutor`` (production) runs each call on a worker thread behind a CapacityLimiter(1),
so the trio loop keeps serving sockets while SQLite works, and only one thread at a time ever
touches the connection. ``InlineExecutor`` (tests) runs on the trio thread and then checkpoints:
trio's autojump clock cannot see time spent in threads, so deterministic tests run inline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import attrs
import trio

T = TypeVar("T")


class Executor(Protocol):
    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` to completion and return its result. Not abandoned on cancellation:
        a write handed to SQLite always finishes (commits or rolls back) before this returns."""
        ...


@attrs.define(eq=False)
class ThreadExecutor:
    limiter: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(1))

    async def run(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self.limiter, abandon_on_cancel=False)


@attrs.define(eq=False)
class InlineExecutor:
    async def run(self, fn: Callable[[], T]) -> T:
        result = fn()
        # Yield to the scheduler but never raise Cancelled here: the work is done (a batch may
        # have committed), so its result must reach the actor, like the thread executor's.
        await trio.lowlevel.cancel_shielded_checkpoint()
        return result
