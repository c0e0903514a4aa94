"""The call protocol between a handle and its actor.

A caller wraps a request in a ``Call``: an event, an outcome slot, the caller's effective
deadline (cancel scopes do not cross tasks, so the deadline travels in the message) and an
``abandoned`` flag. The actor replies synchronously and never waits on a caller.

Cancellation rules (also in design/actors.md):
- caller cancelled while its call is queued: the actor skips it;
- caller cancelled during a read: the read is interrupted, the result dropped;
- caller cancelled during a write: the write commits or rolls back as a whole; the answer is
  dropped;
- actor gone: every queued and future call fails with EngineClosed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import outcome
import trio

from ._errors import EngineClosed, Overloaded

Req = TypeVar("Req")


@attrs.define(eq=False)
class Call(Generic[Req]):
    request: Req
    deadline: float = math.inf
    enqueued_at: float = 0.0
    attempts: int = 0
    abandoned: bool = False  # written by the caller's task, read by the actor (and SQLite's
    #                          progress handler): a plain flag, never a lock
    # Set by an actor that runs the call in a cancel scope of its own: the caller's
    # cancellation then cancels the work at once instead of at the next check of ``abandoned``.
    on_abandon: Callable[[], None] | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    result: outcome.Outcome[Any] | None = None

    def reply(self, result: outcome.Outcome[Any]) -> None:
        if self.result is None:
            self.result = result
            self.done.set()

    def fail(self, exc: BaseException) -> None:
        self.reply(outcome.Error(exc))


@attrs.define(eq=False)
class Mailbox(Generic[Req]):
    """The caller's side of an actor: a bounded channel of calls."""

    _send: trio.MemorySendChannel[Call[Req]]
    # Whether calls carry their caller's deadline; off for an actor that never reads it
    # (capturing it walks the caller's cancel scopes, on every call).
    _deadlines: bool = True

    async def call(self, request: Req) -> Any:
        """Send ``request`` and wait for the answer; waits for room when the mailbox is full.

        A checkpoint. Raises the actor's typed error, or EngineClosed. If cancelled, see the
        module docstring for what happens to the request.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        call = self._new(request)
        if not await self._put(call):
            raise EngineClosed("engine is closed")
        return await self._wait(call)

    async def forward(self, call: Call[Req]) -> None:
        """Hand on a call another actor received (its caller keeps waiting on the same call);
        fails the call with EngineClosed when this mailbox is closed."""
        if not await self._put(call):
            call.fail(EngineClosed("engine closed before the write was stored"))

    async def _put(self, call: Call[Req]) -> bool:
        """Enqueue ``call``, waiting for room; False if the mailbox is closed. With room it
        takes no scheduling round: the caller's wait for the answer is the checkpoint."""
        try:
            try:
                self._send.send_nowait(call)
            except trio.WouldBlock:
                await self._send.send(call)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    async def try_call(self, request: Req) -> Any:
        """Like ``call``, but raise Overloaded at once instead of waiting for room."""
        call = self._new(request)
        try:
            self._send.send_nowait(call)
        except trio.WouldBlock:
            raise Overloaded("mailbox full; retry shortly") from None
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise EngineClosed("engine is closed") from None
        return await self._wait(call)

    def queued(self) -> int:
        return self._send.statistics().current_buffer_used

    async def aclose(self) -> None:
        await self._send.aclose()

    def _new(self, request: Req) -> Call[Req]:
        deadline = trio.current_effective_deadline() if self._deadlines else math.inf
        return Call(request, deadline=deadline, enqueued_at=trio.current_time())

    @staticmethod
    async def _wait(call: Call[Req]) -> Any:
        try:
            await call.done.wait()
        except BaseException:
            call.abandoned = True
            if call.on_abandon is not None:
                call.on_abandon()
            raise
        assert call.result is not None
        return call.result.unwrap()
