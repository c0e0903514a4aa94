"""HubRemote: another triomem engine, reached over WebSocket, as a replication backend.

One person with several machines needs no extra software: one of them runs
``triomem serve --hub`` and the others point ``remote.url`` at ``ws://that-host:8765/hub``.
Each call opens its own connection (trio-websocket), sends one request and reads one answer:
no background task, no connection state to go stale, and a call cancelled by the caller's
deadline simply closes its socket. Pushes are idempotent on the hub, so a push whose answer
was lost is safely repeated.
"""

from __future__ import annotations

import itertools
import json
import ssl
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    open_websocket_url,
)

from ..engine import (
    DeviceInfo,
    MemoryVersion,
    PullPage,
    PushResult,
    RemoteAuth,
    RemoteHit,
    RemoteInfo,
    RemoteTransient,
)
from . import wire

CONNECT_TIMEOUT = 10.0
T = TypeVar("T")


def _mask(url: str) -> str:
    return url.split("?", 1)[0]  # a ?token= must never reach a log


@attrs.define(eq=False)
class HubRemote:
    url: str = attrs.field(repr=_mask)
    token: str | None = attrs.field(default=None, repr=False)
    connect_timeout: float = CONNECT_TIMEOUT
    _ids: itertools.count[int] = attrs.field(factory=itertools.count)

    async def _call(self, op: str, **arguments: Any) -> Any:
        headers = [(b"Authorization", f"Bearer {self.token}".encode())] if self.token else []
        context = ssl.create_default_context() if self.url.startswith("wss:") else None
        request_id = next(self._ids)
        frame = json.dumps({"id": request_id, "op": op, **arguments}, separators=(",", ":"))
        try:
            async with open_websocket_url(
                    self.url, ssl_context=context, subprotocols=[wire.SUBPROTOCOL],
                    extra_headers=headers, connect_timeout=self.connect_timeout,
                    message_queue_size=1, max_message_size=wire.MAX_FRAME) as ws:
                await ws.send_message(frame)
                answer = json.loads(await ws.get_message())
        except ConnectionRejected as exc:
            if exc.status_code in (401, 403):
                raise RemoteAuth(f"{_mask(self.url)} refused the token "
                                 f"(HTTP {exc.status_code})") from None
            raise RemoteTransient(f"{_mask(self.url)} refused the connection "
                                  f"(HTTP {exc.status_code})") from None
        except (HandshakeError, ConnectionClosed, OSError, trio.TooSlowError,
                ValueError) as exc:
            raise RemoteTransient(f"{_mask(self.url)}: {type(exc).__name__}: {exc}") from None
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise RemoteTransient(f"{_mask(self.url)}: malformed answer")
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise wire.error_for(str(error.get("kind")), str(error.get("message")))
        return answer.get("result")

    async def handshake(self, device: DeviceInfo) -> RemoteInfo:
        result = await self._call("handshake", device=attrs.asdict(device))
        return wire.decode_info(self._object(result))

    async def push(self, space: str, versions: Sequence[MemoryVersion]
                   ) -> Sequence[PushResult]:
        result = await self._call("push", space=space,
                                  versions=[wire.encode_version(v) for v in versions])
        return self._decoded(wire.decode_results, result)

    async def pull(self, space: str, after_seq: int, limit: int) -> PullPage:
        result = await self._call("pull", space=space, after_seq=after_seq, limit=limit)
        return self._decoded(wire.decode_page, self._object(result))

    async def search(self, space: str | None, text: str, vector: bytes | None, k: int
                     ) -> Sequence[RemoteHit]:
        encoded = None if vector is None else wire.encode_version(MemoryVersion(
            id="", space="", content=None, content_hash=None, type="", tags=(),
            metadata_json="{}", created_at=0, updated_at=0, deleted_at=None, hlc=0,
            origin="", embedding=vector))["embedding"]
        result = await self._call("search", space=space, text=text, vector=encoded, k=k)
        return self._decoded(wire.decode_hits, result)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()

    def _object(self, result: Any) -> dict[str, Any]:
        if not isinstance(result, dict):
            raise RemoteTransient(f"{_mask(self.url)}: malformed answer")
        return result

    def _decoded(self, decode: Callable[[Any], T], result: Any) -> T:
        try:
            return decode(result)
        except (wire.WireError, KeyError, TypeError, ValueError) as exc:
            raise RemoteTransient(f"{_mask(self.url)}: malformed answer: {exc}") from None
