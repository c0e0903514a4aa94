"""The hub endpoint: ``ws://HOST:PORT/hub`` serves the replication contract of this engine to
other devices (``HubRemote`` is the client), beside MCP on ``/mcp``, behind the same token and
Origin checks. One request at a time per connection; a malformed frame is answered with an
``invalid_input`` error and the connection goes on."""

from __future__ import annotations

import json
import logging
from typing import Any

from ..engine import HubService, TriomemError
from ..remotes import wire
from ._wsserver import ConnectionClosed, WebSocket

logger = logging.getLogger("triomem.transports.hub")


async def _dispatch(service: HubService, request: dict[str, Any]) -> Any:
    op = request.get("op")
    if op == "handshake":
        device = request.get("device")
        if not isinstance(device, dict):
            raise wire.WireError("device: expected an object")
        return wire.encode_info(await service.handshake(wire.decode_device(device)))
    space = request.get("space")
    if op == "push":
        versions = request.get("versions")
        if not isinstance(space, str) or not isinstance(versions, list):
            raise wire.WireError("push needs space and versions")
        decoded = [wire.decode_version(v) for v in versions]
        return wire.encode_results(list(await service.push(space, decoded)))
    if op == "pull":
        after, limit = request.get("after_seq"), request.get("limit")
        if not isinstance(space, str) or not isinstance(after, int) or \
                not isinstance(limit, int) or not 1 <= limit <= 10_000:
            raise wire.WireError("pull needs space, after_seq and limit (1-10000)")
        return wire.encode_page(await service.pull(space, after, limit))
    if op == "search":
        text, k, vector = request.get("text"), request.get("k"), request.get("vector")
        if not isinstance(text, str) or not isinstance(k, int) or \
                not (space is None or isinstance(space, str)):
            raise wire.WireError("search needs text and k")
        raw = None
        if vector is not None:
            raw = wire.decode_version({**_blank, "embedding": vector}).embedding
        return wire.encode_hits(list(await service.search(space, text, raw, k)))
    raise wire.WireError(f"unknown op {op!r}")


_blank: dict[str, Any] = {  # a carrier so a search vector is checked by the same decoder
    "id": "", "space": "", "content": None, "type": "", "tags": [], "metadata_json": "{}",
    "created_at": 0, "updated_at": 0, "hlc": 0, "origin": "",
}


async def serve_hub(service: HubService, ws: WebSocket) -> None:
    """Answer requests on ``ws`` until the device leaves."""
    while True:
        try:
            message = await ws.get_message()
        except ConnectionClosed:
            return
        request_id: Any = None
        try:
            if not isinstance(message, str):
                raise wire.WireError("frames are UTF-8 JSON text")
            request = json.loads(message)
            if not isinstance(request, dict):
                raise wire.WireError("a request is a JSON object")
            request_id = request.get("id")
            reply: dict[str, Any] = {"id": request_id,
                                     "result": await _dispatch(service, request)}
        except (wire.WireError, ValueError, TriomemError) as exc:
            reply = {"id": request_id, "error": wire.error_payload(exc)}
        except Exception as exc:
            logger.exception("hub request failed")
            reply = {"id": request_id, "error": wire.error_payload(exc)}
        try:
            await ws.send_message(json.dumps(reply, separators=(",", ":")))
        except ConnectionClosed:
            return
