"""The store's side of replication on a real file: outbox, acks, pulls, conflicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import apsw
import attrs

from tests.unit.test_sql import EMBEDDER, _open, _put
from triomem.actors._db import rows, scalar
from triomem.actors._remote import MemoryVersion
from triomem.actors._sql_sync import (
    AckOutbox,
    ApplyPulled,
    ListConflicts,
    OutboxAck,
    PulledVersion,
    ReadCursor,
    ReadSyncFacts,
    TakeOutbox,
)
from triomem.actors._sql_write import ForgetMemory, UpdateMemory
from triomem.actors._stamps import UuidV7Source
from triomem.actors._store import _apply_batch


def _do(conn: apsw.Connection, *requests: Any) -> list[Any]:
    return [r.unwrap() for r in _apply_batch(conn, list(requests), embedder=EMBEDDER.model_id,
                                             ids=UuidV7Source())]


def _outbox(conn: apsw.Connection) -> dict[str, int]:
    return dict(rows(conn, "SELECT memory_id, change FROM sync_outbox"))


def test_local_writes_queue_one_coalesced_entry_per_memory(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    (a,) = _do(conn, _put("alpha"))
    (b,) = _do(conn, _put("beta"))
    memory_id = a.memory.id
    _do(conn, UpdateMemory(memory_id, tags=("x",)), UpdateMemory(memory_id, tags=("y",)))
    queued = _outbox(conn)
    assert set(queued) == {memory_id, b.memory.id}
    [first, second] = TakeOutbox(limit=10).run(conn)
    assert first.version.id == b.memory.id  # oldest change first
    assert second.version.tags == ("y",)  # the current version, read at push time
    assert second.version.embedding is not None
    assert second.version.embedding_model == EMBEDDER.model_id


def test_acks_remove_only_unchanged_entries(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    (a,) = _do(conn, _put("alpha"))
    (b,) = _do(conn, _put("beta"))
    taken = {i.version.id: i for i in TakeOutbox().run(conn)}
    _do(conn, UpdateMemory(a.memory.id, tags=("edited-in-flight",)))
    (settled,) = _do(conn, AckOutbox((
        OutboxAck(a.memory.id, taken[a.memory.id].change, "applied"),
        OutboxAck(b.memory.id, taken[b.memory.id].change, "applied"))))
    assert settled == 1
    assert set(_outbox(conn)) == {a.memory.id}  # the edit made meanwhile is still queued


def test_superseded_goes_to_conflicts_and_permanent_to_dead_letters(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    (a,) = _do(conn, _put("alpha"))
    (b,) = _do(conn, _put("beta"))
    (c,) = _do(conn, _put("gamma"))
    changes = {i.version.id: i.change for i in TakeOutbox().run(conn)}
    _do(conn, AckOutbox((
        OutboxAck(a.memory.id, changes[a.memory.id], "superseded"),
        OutboxAck(b.memory.id, changes[b.memory.id], "permanent", "value too long"),
        OutboxAck(c.memory.id, changes[c.memory.id], "transient", "connection reset"))))
    facts = ReadSyncFacts("r").run(conn)
    assert (facts.outbox, facts.dead_letters, facts.conflicts, facts.max_attempts) == \
        (1, 1, 1, 1)
    [conflict] = ListConflicts().run(conn)
    assert conflict["content"] == "alpha"


def _remote_version(local: MemoryVersion, **changes: Any) -> MemoryVersion:
    return attrs.evolve(local, **changes)


def test_pulls_apply_newer_versions_and_keep_losers(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    (a,) = _do(conn, _put("alpha"))
    (b,) = _do(conn, _put("beta"))
    items = {i.version.id: i for i in TakeOutbox().run(conn)}
    _do(conn, AckOutbox(tuple(OutboxAck(k, i.change, "applied") for k, i in items.items())))
    local_a, local_b = items[a.memory.id].version, items[b.memory.id].version
    vector = EMBEDDER.embed(["alpha, edited far away"])[0].astype("<f4").tobytes()
    newer = _remote_version(local_a, content="alpha, edited far away",
                            content_hash="h-new", hlc=local_a.hlc + 10**6, origin="elsewhere")
    older = _remote_version(local_b, content="beta, a stale edit", content_hash="h-old",
                            hlc=local_b.hlc - 1, origin="elsewhere")
    brand_new = _remote_version(local_a, id="01234567-89ab-7def-8123-456789abcdef",
                                content="made on another device", content_hash="h-3",
                                hlc=local_a.hlc + 5, origin="elsewhere")
    (counts,) = _do(conn, ApplyPulled("r", "default", (
        PulledVersion(newer, vector), PulledVersion(older, vector),
        PulledVersion(brand_new, vector)), next_seq=42))
    assert counts == {"applied": 2, "superseded": 1, "unchanged": 0, "duplicate": 0}
    content: dict[str, str | None] = dict(rows(conn, "SELECT id, content FROM memories"))
    assert content[a.memory.id] == "alpha, edited far away"
    assert content[b.memory.id] == "beta"  # the local version was newer
    assert content[brand_new.id] == "made on another device"
    assert _outbox(conn) == {}  # pulled versions are not pushed back
    assert ReadCursor("r", "default").run(conn) == 42
    assert [c["content"] for c in ListConflicts().run(conn)] == ["beta, a stale edit"]


def test_a_pulled_winner_over_a_queued_local_edit_keeps_the_local_one(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    (a,) = _do(conn, _put("alpha"))
    local = TakeOutbox().run(conn)[0].version
    remote = _remote_version(local, content=None, content_hash=None, deleted_at=1,
                             hlc=local.hlc + 10**6, origin="elsewhere", embedding=None)
    _do(conn, ApplyPulled("r", "default", (PulledVersion(remote, None),), next_seq=1))
    assert scalar(conn, "SELECT content FROM memories WHERE id = ?", (a.memory.id,)) is None
    assert _outbox(conn) == {}
    assert [c["content"] for c in ListConflicts().run(conn)] == ["alpha"]
    assert scalar(conn, "SELECT count(*) FROM memory_vec_1") == 0  # the tombstone erased it


def test_forget_queues_a_tombstone(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    (a,) = _do(conn, _put("alpha"))
    _do(conn, ForgetMemory(a.memory.id))
    [item] = TakeOutbox().run(conn)
    assert item.version.content is None
    assert item.version.deleted_at is not None
    assert item.version.embedding is None
