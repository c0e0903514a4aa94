"""The contract between the sync actor and a remote backend (PostgreSQL, a hub, a fake).

Values that cross the wire are frozen attrs classes; every backend implements
``RemoteBackend`` and raises only the typed errors below, so the sync actor can tell a blip
(retry with backoff) from a permanent refusal (dead letter) from missing credentials (pause).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import attrs

from ._errors import RemoteUnavailable

PROTOCOL_VERSION = 1


@attrs.frozen
class MemoryVersion:
    """One version of one memory, as replicated. ``content=None`` is a tombstone.

    ``embedding`` is little-endian float32 bytes made by ``embedding_model``; a receiver with
    another model ignores it and embeds the content itself.
    """

    id: str
    space: str
    content: str | None
    content_hash: str | None
    type: str
    tags: tuple[str, ...]
    metadata_json: str  # canonical JSON text of the metadata object
    created_at: int
    updated_at: int
    deleted_at: int | None
    hlc: int
    origin: str
    embedding: bytes | None = attrs.field(default=None, repr=False)
    embedding_model: str | None = None

    @property
    def key(self) -> tuple[int, str]:
        """The last-writer-wins order: a higher key wins."""
        return (self.hlc, self.origin)


@attrs.frozen
class PushResult:
    """``applied``: the remote now holds this version, including when it already held exactly
    this version (a replayed push after a lost ack must not look like a lost contest);
    ``superseded``: the remote holds a newer version and kept it."""

    id: str
    status: Literal["applied", "superseded"]


@attrs.frozen
class PullPage:
    """Versions after the cursor, in the remote's change order, and the cursor after them."""

    versions: tuple[MemoryVersion, ...]
    next_seq: int
    more: bool


@attrs.frozen
class DeviceInfo:
    origin: str
    wall_ms: int
    protocol_version: int = PROTOCOL_VERSION


@attrs.frozen
class RemoteInfo:
    schema_version: int
    min_protocol: int
    server_wall_ms: int
    spaces: tuple[str, ...] = ()  # the spaces the remote holds that this device may pull


@attrs.frozen
class RemoteHit:
    version: MemoryVersion
    score: float  # cosine similarity in [-1, 1], or a lexical strength in [0, 1]


class RemoteTransient(RemoteUnavailable):
    """Unreachable, timed out, overloaded, serialization failure: retry with backoff."""

    kind = "remote_transient"


class RemotePermanent(RemoteUnavailable):
    """The remote refuses this data for good (schema or constraint): dead-letter it."""

    kind = "remote_permanent"


class RemoteAuth(RemoteUnavailable):
    """Missing or rejected credentials: sync pauses, local work goes on."""

    kind = "remote_auth"


class UpgradeNeeded(RemoteUnavailable):
    """The remote speaks a newer protocol than this triomem: sync stops, local work goes on."""

    kind = "upgrade_needed"


class ClockSkew(RemoteUnavailable):
    """This device's clock is too far ahead of the remote's: pushing would win every
    last-writer-wins contest unfairly, so pushes are refused until the clock is fixed."""

    kind = "clock_skew"


class RemoteBackend(Protocol):
    """What a replication target offers. Every method is a checkpoint and may raise the
    typed errors above. ``search`` is a read: callers run it under a deadline and the backend
    must give up promptly when cancelled; ``push`` is a write: never abandoned half-way, bounded
    by the backend's own statement timeout, and idempotent when retried."""

    async def handshake(self, device: DeviceInfo) -> RemoteInfo: ...

    async def push(self, space: str, versions: Sequence[MemoryVersion]
                   ) -> Sequence[PushResult]: ...

    async def pull(self, space: str, after_seq: int, limit: int) -> PullPage: ...

    async def search(self, space: str | None, text: str, vector: bytes | None, k: int
                     ) -> Sequence[RemoteHit]: ...

    async def aclose(self) -> None: ...
