"""The hub protocol on the wire: one JSON object per WebSocket text frame.

Request:  ``{"id": n, "op": "handshake" | "push" | "pull" | "search", ...arguments}``
Response: ``{"id": n, "result": ...}`` or ``{"id": n, "error": {"kind": ..., "message": ...}}``

Versions travel as JSON objects with the embedding base64-encoded. Decoding validates every
field and raises ``WireError`` (never a crash) on anything malformed, so a hub is safe to
expose to devices it does not trust.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from ..engine import (
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
    RemoteUnavailable,
    TriomemError,
    UpgradeNeeded,
)

SUBPROTOCOL = "triomem-hub"
MAX_FRAME = 16 * 1024 * 1024


class WireError(ValueError):
    """A malformed frame: answered with an ``invalid_input`` error, never a crash."""


def _get(obj: dict[str, Any], key: str, kind: type | tuple[type, ...],
         optional: bool = False) -> Any:
    value = obj.get(key)
    if value is None and optional:
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise WireError(f"{key}: expected {getattr(kind, '__name__', kind)}")
    return value


def encode_version(v: MemoryVersion) -> dict[str, Any]:
    return {
        "id": v.id, "space": v.space, "content": v.content, "content_hash": v.content_hash,
        "type": v.type, "tags": list(v.tags), "metadata_json": v.metadata_json,
        "created_at": v.created_at, "updated_at": v.updated_at, "deleted_at": v.deleted_at,
        "hlc": v.hlc, "origin": v.origin,
        "embedding": None if v.embedding is None else base64.b64encode(v.embedding).decode(),
        "embedding_model": v.embedding_model,
    }


def decode_version(obj: object) -> MemoryVersion:
    if not isinstance(obj, dict):
        raise WireError("version: expected an object")
    tags = _get(obj, "tags", list)
    if not all(isinstance(t, str) for t in tags):
        raise WireError("tags: expected strings")
    embedding = _get(obj, "embedding", str, optional=True)
    try:
        raw = None if embedding is None else base64.b64decode(embedding, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("embedding: not base64") from None
    if raw is not None and len(raw) % 4:
        raise WireError("embedding: not float32 values")
    metadata = _get(obj, "metadata_json", str)
    try:
        if not isinstance(json.loads(metadata), dict):
            raise WireError("metadata_json: not a JSON object")
    except ValueError:
        raise WireError("metadata_json: not JSON") from None
    content = _get(obj, "content", str, optional=True)
    return MemoryVersion(
        id=_get(obj, "id", str), space=_get(obj, "space", str), content=content,
        content_hash=_get(obj, "content_hash", str, optional=content is None),
        type=_get(obj, "type", str), tags=tuple(tags), metadata_json=metadata,
        created_at=_get(obj, "created_at", int), updated_at=_get(obj, "updated_at", int),
        deleted_at=_get(obj, "deleted_at", int, optional=True), hlc=_get(obj, "hlc", int),
        origin=_get(obj, "origin", str), embedding=raw,
        embedding_model=_get(obj, "embedding_model", str, optional=True),
    )


def encode_info(info: RemoteInfo) -> dict[str, Any]:
    return {"schema_version": info.schema_version, "min_protocol": info.min_protocol,
            "server_wall_ms": info.server_wall_ms, "spaces": list(info.spaces)}


def decode_info(obj: dict[str, Any]) -> RemoteInfo:
    spaces = _get(obj, "spaces", list)
    return RemoteInfo(_get(obj, "schema_version", int), _get(obj, "min_protocol", int),
                      _get(obj, "server_wall_ms", int), tuple(str(s) for s in spaces))


def decode_device(obj: dict[str, Any]) -> DeviceInfo:
    return DeviceInfo(_get(obj, "origin", str), _get(obj, "wall_ms", int),
                      _get(obj, "protocol_version", int))


def encode_page(page: PullPage) -> dict[str, Any]:
    return {"versions": [encode_version(v) for v in page.versions], "next_seq": page.next_seq,
            "more": page.more}


def decode_page(obj: dict[str, Any]) -> PullPage:
    return PullPage(tuple(decode_version(v) for v in _get(obj, "versions", list)),
                    _get(obj, "next_seq", int), _get(obj, "more", bool))


def encode_results(results: list[PushResult]) -> list[dict[str, str]]:
    return [{"id": r.id, "status": r.status} for r in results]


def decode_results(obj: object) -> list[PushResult]:
    if not isinstance(obj, list):
        raise WireError("results: expected a list")
    out = []
    for item in obj:
        if not isinstance(item, dict) or item.get("status") not in ("applied", "superseded"):
            raise WireError("results: malformed entry")
        out.append(PushResult(str(item["id"]), item["status"]))
    return out


def encode_hits(hits: list[RemoteHit]) -> list[dict[str, Any]]:
    return [{"version": encode_version(h.version), "score": h.score} for h in hits]


def decode_hits(obj: object) -> list[RemoteHit]:
    if not isinstance(obj, list):
        raise WireError("hits: expected a list")
    return [RemoteHit(decode_version(h.get("version")), float(_get(h, "score", (int, float))))
            for h in obj if isinstance(h, dict)]


_ERRORS: dict[str, type[RemoteUnavailable]] = {
    cls.kind: cls for cls in (RemoteTransient, RemotePermanent, RemoteAuth, UpgradeNeeded,
                              ClockSkew, RemoteUnavailable)
}


def error_for(kind: str, message: str) -> RemoteUnavailable:
    """The typed error a hub's error answer stands for, on the device side. Anything the
    device cannot act on otherwise is permanent for this data (it will not go better by
    retrying the same frame), except the hub's own engine trouble, which is transient."""
    if kind in _ERRORS:
        return _ERRORS[kind](message)
    if kind in ("invalid_input", "duplicate_content", "not_found"):
        return RemotePermanent(f"{kind}: {message}")
    return RemoteTransient(f"{kind}: {message}")


def error_payload(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, TriomemError):
        return {"kind": exc.kind, "message": str(exc)}
    if isinstance(exc, WireError):
        return {"kind": "invalid_input", "message": str(exc)}
    return {"kind": "internal", "message": "internal error"}
