"""The SQL layer on its own: plain functions on a real SQLite file, no trio."""

from __future__ import annotations

import json
from pathlib import Path

import apsw
import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import HashEmbedder
from triomem import EmbedderMismatch, InvalidMemory, NotFound, SchemaTooNew, StoreCorrupt
from triomem.actors._db import scalar
from triomem.actors._fts import match_expression, query_terms
from triomem.actors._schema import SCHEMA_VERSION, Pragmas, connect, immediate
from triomem.actors._sql_read import (
    AllowedSeqs,
    ListMemories,
    MemoryFilter,
    TextCandidates,
    VectorChanges,
    bind_embedder,
)
from triomem.actors._sql_write import (
    ApplyVersion,
    ForgetMemory,
    PutMemory,
    UpdateMemory,
    WriteContext,
)
from triomem.actors._stamps import UuidV7Source
from triomem.actors._store import _apply_batch
from triomem.actors._values import content_hash

EMBEDDER = HashEmbedder(dim=16)


def _open(path: Path) -> apsw.Connection:
    conn = connect(str(path), Pragmas())
    with immediate(conn):
        bind_embedder(conn, EMBEDDER.model_id, EMBEDDER.dim)
    return conn


def _put(content: str, *, space: str = "default", tags: tuple[str, ...] = (),
         key: str | None = None) -> PutMemory:
    vector = EMBEDDER.embed([content])[0].astype("<f4").tobytes()
    return PutMemory(space=space, content=content, content_hash=content_hash(content),
                     type="note", tags=tags, metadata_json="{}", vector=vector,
                     idempotency_key=key)


def _apply(conn: apsw.Connection, *requests: object) -> list[object]:
    results = _apply_batch(conn, list(requests), embedder=EMBEDDER.model_id,  # type: ignore[arg-type]
                           ids=UuidV7Source())
    return [r.unwrap() if not hasattr(r, "error") else r.error for r in results]


def test_new_file_is_created_in_wal_with_the_current_schema(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    assert conn.execute("PRAGMA journal_mode").fetchall()[0][0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchall()[0][0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA synchronous").fetchall()[0][0] == 2  # FULL
    conn.close()
    again = _open(tmp_path / "m.db")  # migrations are idempotent
    assert again.execute("PRAGMA user_version").fetchall()[0][0] == SCHEMA_VERSION


@pytest.mark.parametrize("junk", [b"not a database at all" * 10, b"\x00" * 4096])
def test_a_non_sqlite_file_is_refused_and_left_untouched(tmp_path: Path, junk: bytes) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(junk)
    with pytest.raises(StoreCorrupt):
        connect(str(path), Pragmas())
    assert path.read_bytes() == junk
    assert not (tmp_path / "junk.db-wal").exists()


def test_a_truncated_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    _open(path).close()
    data = path.read_bytes()
    path.write_bytes(data[:100] + b"\xff" * 500)
    with pytest.raises(StoreCorrupt):
        connect(str(path), Pragmas())
    assert path.read_bytes()[:100] == data[:100]


def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    other = apsw.Connection(str(path))
    other.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY)")
    other.close()
    before = path.read_bytes()
    with pytest.raises(StoreCorrupt, match="another application"):
        connect(str(path), Pragmas())
    assert path.read_bytes() == before


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = _open(path)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew) as info:
        connect(str(path), Pragmas())
    assert info.value.found == SCHEMA_VERSION + 1


def test_another_embedder_is_refused(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    with pytest.raises(EmbedderMismatch), immediate(conn):
        bind_embedder(conn, "other:model", 16)
    with pytest.raises(EmbedderMismatch):
        _apply_batch(conn, [_put("x")], embedder="other:model", ids=UuidV7Source())


def test_one_bad_write_fails_alone_in_its_batch(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    first, missing, second = _apply(conn, _put("alpha"), ForgetMemory("nope"), _put("beta"))
    assert isinstance(missing, NotFound)
    assert conn.execute("SELECT count(*) FROM memories").fetchall()[0][0] == 2
    assert first.memory.content == "alpha"  # type: ignore[attr-defined]
    assert second.memory.content == "beta"  # type: ignore[attr-defined]


@attrs.frozen
class HalfWrite:
    """Stores a memory, then fails: a write that breaks after changing the database."""

    put: PutMemory

    def apply(self, ctx: WriteContext) -> None:
        self.put.apply(ctx)
        raise InvalidMemory("content", "refused after writing")


def test_a_write_failing_halfway_leaves_nothing_of_itself(tmp_path: Path) -> None:
    # The batch's first run (no savepoints) is rolled back whole and redone write by write.
    conn = _open(tmp_path / "m.db")
    first, failed, second = _apply(conn, _put("alpha"), HalfWrite(_put("half")), _put("beta"))
    assert isinstance(failed, InvalidMemory)
    assert [r[0] for r in conn.execute("SELECT content FROM memories ORDER BY seq")] == \
        ["alpha", "beta"]
    assert conn.execute("SELECT count(*) FROM memory_fts").fetchall()[0][0] == 2
    assert conn.execute("SELECT count(*) FROM sync_outbox").fetchall()[0][0] == 2
    assert first.memory.content == "alpha"  # type: ignore[attr-defined]
    assert second.memory.content == "beta"  # type: ignore[attr-defined]


def _version(memory_id: str, content: str, tags: tuple[str, ...]) -> ApplyVersion:
    vector = EMBEDDER.embed([content])[0].astype("<f4").tobytes()
    return ApplyVersion(id=memory_id, space="default", content=content,
                        content_hash=content_hash(content), type="note", tags=tags,
                        metadata_json="{}", created_at=1, updated_at=1, deleted_at=None,
                        hlc=1 << 16, origin="elsewhere", vector=vector)


def test_index_rows_queued_in_a_batch_meet_later_writes_in_the_same_batch(tmp_path: Path
                                                                          ) -> None:
    # Index rows are written together at the end of a batch; a later write in the same batch
    # that retags or forgets the memory must still find and remove them.
    conn = _open(tmp_path / "m.db")
    ids = UuidV7Source()
    kept, forgotten = ids.next(1), ids.next(2)
    results = _apply(conn, _version(kept, "alpha apple", ("old-tag",)),
                     UpdateMemory(kept, tags=("new-tag",)),
                     _version(forgotten, "beta banana", ("gone-tag",)),
                     ForgetMemory(forgotten))
    assert results == ["applied", results[1], "applied", True]
    seq = scalar(conn, "SELECT seq FROM memories WHERE id = ?", (kept,))
    assert conn.execute("SELECT tag, seq FROM memory_tags").fetchall() == [("new-tag", seq)]
    fts = "SELECT rowid FROM memory_fts WHERE memory_fts MATCH ?"
    assert conn.execute(fts, ("banana",)).fetchall() == []
    assert conn.execute(fts, ("old",)).fetchall() == []
    assert conn.execute(fts, ("new",)).fetchall() == [(seq,)]
    vec_table = scalar(conn, "SELECT value FROM meta WHERE key = 'vec_table'")
    assert conn.execute(f"SELECT rowid FROM {vec_table}").fetchall() == [(seq,)]
    assert sorted(r[0] for r in conn.execute("SELECT memory_id FROM sync_outbox")) == \
        sorted([kept, forgotten])


def test_duplicates_and_idempotency_keys_return_the_existing_memory(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    a, same, other_space, keyed, replay = _apply(
        conn, _put("alpha"), _put("alpha"), _put("alpha", space="work"),
        _put("gamma", key="k1"), _put("something else", key="k1"))
    assert a.created and not same.created  # type: ignore[attr-defined]
    assert same.memory.id == a.memory.id  # type: ignore[attr-defined]
    assert other_space.created  # type: ignore[attr-defined]
    assert keyed.created and not replay.created  # type: ignore[attr-defined]
    assert replay.memory.content == "gamma"  # type: ignore[attr-defined]


def test_versions_increase_with_every_write(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    (a,) = _apply(conn, _put("alpha"))
    memory_id = a.memory.id  # type: ignore[attr-defined]
    (b,) = _apply(conn, UpdateMemory(memory_id, tags=("x",)))
    assert b.version > a.memory.version  # type: ignore[attr-defined]


def test_forget_really_erases_content_and_vector(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    conn = _open(path)
    secret = "the launch code is zebra-quokka-7731"
    (put,) = _apply(conn, _put(secret, tags=("classified-tag",)))
    vector = EMBEDDER.embed([secret])[0].astype("<f4").tobytes()
    (erased,) = _apply(conn, ForgetMemory(put.memory.id))  # type: ignore[attr-defined]
    assert erased is True
    assert _apply(conn, ForgetMemory(put.memory.id)) == [False]  # type: ignore[attr-defined]
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = path.read_bytes()
    assert b"zebra-quokka" not in data
    assert b"classified-tag" not in data
    assert vector not in data


def test_filters_run_inside_sql(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    _apply(conn, _put("red apple", tags=("fruit", "red")), _put("red car", tags=("red",)),
           _put("green apple", tags=("fruit",), space="work"))
    both = ListMemories(MemoryFilter(tags_all=("fruit", "red"))).run(conn)
    assert [m.content for m in both.memories] == ["red apple"]
    either = ListMemories(MemoryFilter(tags_any=("fruit", "red"))).run(conn)
    assert len(either.memories) == 3
    work = ListMemories(MemoryFilter(space="work")).run(conn)
    assert [m.content for m in work.memories] == ["green apple"]
    allowed = AllowedSeqs(MemoryFilter(space="work")).run(conn)
    assert len(allowed) == 1
    text = TextCandidates(query_terms("apples"), 10, MemoryFilter(tags_any=("red",))).run(conn)
    assert len(text) == 1  # porter stemming: "apples" finds "apple"
    assert 0 < text[0][1] <= 1  # a lexical strength


def test_lexical_strength_is_high_for_rare_terms_and_low_for_common_ones(
        tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    _apply(conn, *[_put(f"the team met on monday about topic {i}") for i in range(30)],
           _put("error E11000 duplicate key in the orders collection"))
    [(_, rare)] = TextCandidates(query_terms("E11000"), 5).run(conn)
    common = TextCandidates(query_terms("which team owns the billing dashboard"), 50).run(conn)
    assert rare > 0.4
    assert common
    assert max(strength for _, strength in common) < 0.4


def test_listing_pages_through_everything_once(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    _apply(conn, *[_put(f"memory {i}") for i in range(25)])
    seen, cursor = [], None
    while True:
        page = ListMemories(limit=10, cursor=cursor).run(conn)
        seen += [m.content for m in page.memories]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(f"memory {i}" for i in range(25))
    assert seen[0] == "memory 24"  # newest first
    with pytest.raises(InvalidMemory):
        ListMemories(cursor="not-a-cursor").run(conn)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_no_user_string_breaks_the_fts5_query(text: str) -> None:
    conn = getattr(test_no_user_string_breaks_the_fts5_query, "conn", None)
    if conn is None:
        conn = apsw.Connection(":memory:")
        conn.execute("CREATE VIRTUAL TABLE f USING fts5(content, tags, "
                     "tokenize='porter unicode61 remove_diacritics 2')")
        conn.execute("INSERT INTO f VALUES('hello world', 'x')")
        test_no_user_string_breaks_the_fts5_query.conn = conn  # type: ignore[attr-defined]
    terms = query_terms(text)
    if terms:
        conn.execute("SELECT rowid FROM f WHERE f MATCH ?", (match_expression(terms),)).fetchall()


def test_query_terms_drop_function_words_and_quote_the_rest() -> None:
    assert query_terms("What did the user say about Postgres?") == ("say", "postgres")
    assert query_terms("the of and") == ()
    terms = query_terms('"); DROP TABLE memories; --')
    assert match_expression(terms) == '"drop" OR "table" OR "memories"'


def test_vectors_are_stored_as_given(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    _apply(conn, _put("alpha"))
    table = json.loads('"memory_vec_1"')
    blob = scalar(conn, f"SELECT embedding FROM {table}")
    assert np.allclose(np.frombuffer(blob, dtype="<f4"), EMBEDDER.embed(["alpha"])[0])


def test_vector_changes_follow_the_hlc_watermark(tmp_path: Path) -> None:
    conn = _open(tmp_path / "m.db")
    (a,) = _apply(conn, _put("alpha"))
    table, changes = VectorChanges(-1).run(conn)
    assert table == "memory_vec_1"
    assert [(c.id, c.vector is not None) for c in changes] == [(a.memory.id, True)]  # type: ignore[attr-defined]
    mark = changes[-1].change
    assert VectorChanges(mark).run(conn)[1] == []
    _apply(conn, ForgetMemory(a.memory.id), _put("beta"))  # type: ignore[attr-defined]
    _, changes = VectorChanges(mark).run(conn)
    assert [(c.id == a.memory.id, c.vector is None) for c in changes] == [(True, True), (False, False)]  # type: ignore[attr-defined]
