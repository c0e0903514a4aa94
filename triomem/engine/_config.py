"""EngineConfig: every server-side knob in one frozen, validated value."""

from __future__ import annotations

from typing import Literal

import attrs

from ..actors._recall import RecallConfig, RecallLeg
from ..actors._remote import RemoteBackend
from ..actors._schema import Pragmas
from ..actors._store import RetryPolicy, StoreConfig
from ..actors._sync import SyncConfig
from ..actors._values import Limits
from ..embedders import DEFAULT_EMBEDDER, Embedder


@attrs.frozen
class EngineConfig:
    """How an engine runs. All fields have production defaults.

    ``embedder`` is a built-in name (``minilm``, ``wordllama``, ``http``) or an ``Embedder``.
    ``executor`` is ``thread`` in production; ``inline`` runs SQL and embedding on the trio
    thread, for deterministic tests under trio's autojump clock.
    """

    embedder: str | Embedder = DEFAULT_EMBEDDER
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    busy_timeout_ms: int = attrs.field(default=50, validator=attrs.validators.ge(0))
    retry: RetryPolicy = RetryPolicy()
    limits: Limits = Limits()
    max_batch: int = attrs.field(default=256, validator=attrs.validators.gt(0))
    # How long a commit may wait for ready tasks to send their writes (0: never wait)
    commit_delay: float = attrs.field(default=0.002, validator=attrs.validators.ge(0))
    mailbox_size: int = attrs.field(default=1024, validator=attrs.validators.gt(0))
    idle_checkpoint_after: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    wal_autocheckpoint_pages: int = attrs.field(default=1000, validator=attrs.validators.ge(0))
    journal_size_limit_bytes: int = attrs.field(default=64 * 1024 * 1024)
    executor: Literal["thread", "inline"] = attrs.field(
        default="thread", validator=attrs.validators.in_(("thread", "inline")))
    # Two single-threaded workers: measured faster than one BLAS-threaded worker on 2 cores,
    # and they degrade gracefully when another process is busy (design/embedders.md).
    embed_workers: int = attrs.field(default=2, validator=attrs.validators.gt(0))
    # A slow model's queue is split over the workers anyway; for a fast one, 64 writers make
    # two inline batches that the store commits together (64 was about 1% faster, within
    # the noise: design/performance.md).
    embed_max_batch: int = attrs.field(default=32, validator=attrs.validators.gt(0))
    recall: RecallConfig = RecallConfig()
    # More recall legs beside the vector index and FTS5 (tests inject slow fakes).
    extra_legs: tuple[RecallLeg, ...] = ()
    # Replication: a backend to sync with (None: local only) and how. With ``remote_recall``
    # the remote's search is a background recall leg.
    remote: RemoteBackend | None = None
    # Or a URL (``postgresql://...``, ``ws://host:port/hub``) the engine turns into one once
    # the embedder (whose dimension and model the remote needs) is loaded. Never logged.
    remote_url: str | None = attrs.field(default=None, repr=False)
    remote_token: str | None = attrs.field(default=None, repr=False)
    sync: SyncConfig = SyncConfig()
    remote_recall: bool = True
    sync_grace: float = attrs.field(default=2.0, validator=attrs.validators.ge(0))
    seed: int | None = None

    def store_config(self) -> StoreConfig:
        return StoreConfig(
            pragmas=Pragmas(
                synchronous=self.synchronous, busy_timeout_ms=self.busy_timeout_ms,
                wal_autocheckpoint_pages=self.wal_autocheckpoint_pages,
                journal_size_limit_bytes=self.journal_size_limit_bytes,
            ),
            retry=self.retry, mailbox_size=self.mailbox_size, max_batch=self.max_batch,
            commit_delay=self.commit_delay,
            idle_checkpoint_after=self.idle_checkpoint_after, seed=self.seed,
        )
