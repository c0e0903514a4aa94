"""``PostgresRemote`` against a real PostgreSQL 18 + pgvector (the session fixture's server).

The contract suite, then what only a real server shows: the concurrent-pushers cursor race,
a read cancelled server-side at the caller's deadline, the server killed mid-push, and the
mapping of connection failures to typed errors. Real clock; each test under ``fail_after``.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import psycopg
import pytest
import trio

from tests.remote._pgserver import PgServer, free_port, with_dbname
from tests.remote.contract import (
    SPACE,
    ContractHarness,
    RemoteContract,
    new_id,
    unit_vector,
    version,
)
from triomem.actors._remote import (
    MemoryVersion,
    RemoteAuth,
    RemoteBackend,
    RemotePermanent,
    RemoteTransient,
)
from triomem.remotes.postgres import PgSettings, PostgresRemote

DIM = 8
MODEL = "test-model-8"


@attrs.define
class PgHarness:
    url: str
    dim: int = DIM
    model: str | None = MODEL
    max_skew_ms: int = 300_000

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[RemoteBackend]:
        async with await PostgresRemote.connect(self.url, dim=self.dim,
                                                model=self.model) as remote:
            yield remote

    async def require_protocol(self, min_protocol: int) -> None:
        def bump() -> None:
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute("UPDATE triomem_schema SET min_protocol = %s", (min_protocol,))
        await trio.to_thread.run_sync(bump)


class TestPostgresContract(RemoteContract):
    @pytest.fixture
    def harness(self, pg_url: str) -> ContractHarness:
        return PgHarness(pg_url)


def live(content: str, hlc: int, axis: int = 0, id_: str | None = None) -> MemoryVersion:
    return version(id_ or new_id(), content, hlc, embedding=unit_vector(DIM, axis), model=MODEL)


async def connect(url: str, **options: Any) -> PostgresRemote:
    return await PostgresRemote.connect(url, dim=DIM, model=MODEL, **options)


def _backends(admin: psycopg.Connection[Any], app: str, state: str | None = None) -> int:
    sql = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    args: list[object] = [app]
    if state is not None:
        sql += " AND state = %s"
        args.append(state)
    row = admin.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


async def wait_until(predicate: Callable[[], bool], within: float) -> float:
    """Poll ``predicate`` (on a thread: it may query) every 20 ms; the seconds it took to
    become true. Fails after ``within`` seconds."""
    start = trio.current_time()
    for _ in range(math.ceil(within / 0.02)):
        if await trio.to_thread.run_sync(predicate):
            return trio.current_time() - start
        await trio.sleep(0.02)
    raise AssertionError(f"still false after {within}s")


# -- concurrent pushers: the cursor never skips (design/replication.md §2.5) -------------------

async def test_a_pull_between_concurrent_pushers_never_skips_the_slower_one(
        pg_url: str, pg_admin: psycopg.Connection[Any]) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold_open(space: str) -> None:  # the first pusher's transaction stays open here
        entered.set()
        release.wait(10)

    first = await connect(pg_url, before_commit=hold_open, application_name="race-first")
    second = await connect(pg_url, application_name="race-second")
    from_first = live("written by the first pusher", 10)
    from_second = live("written by the second pusher", 11)
    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                done: list[str] = []

                async def push(name: str, remote: PostgresRemote, v: MemoryVersion) -> None:
                    assert [r.status for r in await remote.push(SPACE, [v])] == ["applied"]
                    done.append(name)

                nursery.start_soon(push, "first", first, from_first)
                await trio.to_thread.run_sync(entered.wait, 10)
                nursery.start_soon(push, "second", second, from_second)
                # Under a naive sequence the second would commit now; here it must queue on
                # the space's counter row lock.
                await wait_until(lambda: bool(done) or admin_waits_on_lock(pg_admin,
                                                                           "race-second"), within=5)
                between = await second.pull(SPACE, 0, 10)  # while the first is still open
                release.set()

            after = await second.pull(SPACE, between.next_seq, 10)
            delivered = [*between.versions, *after.versions]
            assert delivered == [from_first, from_second]  # nothing skipped, commit order
            assert between.versions == ()  # the cursor did not move past the open one
            assert done == ["first", "second"]
    finally:
        release.set()
        await first.aclose()
        await second.aclose()


def admin_waits_on_lock(admin: psycopg.Connection[Any], app: str) -> bool:
    row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                        "AND wait_event_type = 'Lock'", (app,)).fetchone()
    return row is not None and row[0] > 0


# -- reads give up at the caller's deadline and the server query is cancelled --------------

@pytest.mark.parametrize("operation", ["search", "pull"])
async def test_a_slow_read_returns_by_the_deadline_and_the_server_query_is_cancelled(
        pg_url: str, pg_admin: psycopg.Connection[Any], operation: str) -> None:
    app = f"slow-{operation}"
    # A large slack: the server-side statement_timeout backstop would fire only after 10 s,
    # so the query ending well before that is the shielded cancel request's doing.
    remote = await connect(pg_url, application_name=app, read_slack_s=10.0, read_connections=1)
    locker = psycopg.connect(pg_url)  # holds the table lock: the read blocks behind it

    async def read() -> object:
        if operation == "search":
            return await remote.search(SPACE, "lantern", unit_vector(DIM, 3), 5)
        return await remote.pull(SPACE, 0, 10)

    try:
        with trio.fail_after(20):
            await remote.push(SPACE, [live("a lantern in the attic", 5, axis=3)])
            assert await read()  # warm: the reader is connected and has answered once
            await trio.to_thread.run_sync(
                locker.execute, "LOCK TABLE memories IN ACCESS EXCLUSIVE MODE")

            start = trio.current_time()
            with trio.move_on_after(0.2) as scope:
                await read()
            returned_after = trio.current_time() - start
            assert scope.cancelled_caught
            assert returned_after < 0.2 + 0.5  # by the deadline, plus the cancel round trip

            # Cancelled server-side well before the 10 s backstop; reader and writer stay
            # connected and idle.
            await wait_until(lambda: _backends(pg_admin, app, "active") == 0, within=2.0)
            await wait_until(lambda: _backends(pg_admin, app, "idle") == 2, within=2.0)

            await trio.to_thread.run_sync(locker.rollback)
            assert await read()  # the reader serves the next read
    finally:
        locker.close()
        await remote.aclose()


async def test_a_read_waiting_for_the_connection_does_not_cancel_the_running_one(
        pg_url: str, pg_admin: psycopg.Connection[Any]) -> None:
    remote = await connect(pg_url, read_connections=1, application_name="patient")
    locker = psycopg.connect(pg_url)
    try:
        with trio.fail_after(20):
            await remote.push(SPACE, [live("the lantern is lit", 5)])
            await trio.to_thread.run_sync(
                locker.execute, "LOCK TABLE memories IN ACCESS EXCLUSIVE MODE")
            async with trio.open_nursery() as nursery:
                got: list[object] = []

                async def patient() -> None:
                    got.append(await remote.pull(SPACE, 0, 10))

                nursery.start_soon(patient)
                # The patient read is on the connection, blocked behind the lock.
                await wait_until(lambda: admin_waits_on_lock(pg_admin, "patient"), within=5)
                with trio.move_on_after(0.1):
                    await remote.pull(SPACE, 0, 10)  # queued behind it, then gives up
                await trio.sleep(0.2)
                await trio.to_thread.run_sync(locker.rollback)
            assert len(got) == 1  # not cancelled by the impatient caller's cancel request
    finally:
        locker.close()
        await remote.aclose()


# -- the server dies mid-push ---------------------------------------------------------------

async def test_server_killed_mid_push_is_transient_and_the_retry_applies_once(
        pg_control: PgServer, pg_url: str) -> None:
    killed: list[bool] = []

    def kill_once(space: str) -> None:  # in the push transaction, just before COMMIT
        if not killed:
            killed.append(True)
            pg_control.stop_immediate()

    remote = await connect(pg_url, before_commit=kill_once)
    batch = [live(f"batch item {i}", 50 + i, axis=i) for i in range(3)]
    try:
        with trio.fail_after(30):
            with pytest.raises(RemoteTransient):
                await remote.push(SPACE, batch)
            with pytest.raises(RemoteTransient):  # down: refused at once, not hanging
                await remote.pull(SPACE, 0, 10)

            await trio.to_thread.run_sync(pg_control.start)
            results = await remote.push(SPACE, batch)
            assert [r.status for r in results] == ["applied"] * 3
            page = await remote.pull(SPACE, 0, 10)
            assert page.versions == tuple(batch)

            again = await remote.push(SPACE, batch)  # a retry after a lost ack: no change
            assert [r.status for r in again] == ["applied"] * 3
            assert (await remote.pull(SPACE, page.next_seq, 10)).versions == ()
    finally:
        if not pg_control.running():
            pg_control.start()
        await remote.aclose()


# -- connection failures and refusals ---------------------------------------------------------

async def test_unreachable_server_is_transient() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with trio.fail_after(10), pytest.raises(RemoteTransient):
        await PostgresRemote.connect(url, dim=DIM)


async def test_unknown_role_and_missing_database_are_auth_errors(pg_server: PgServer) -> None:
    parts = urlsplit(pg_server.admin_url)
    no_role = urlunsplit(parts._replace(
        netloc=f"nobody:hunter2@{parts.hostname or ''}:{parts.port or 5432}"))
    with trio.fail_after(10):
        with pytest.raises(RemoteAuth) as caught:
            await PostgresRemote.connect(no_role, dim=DIM)
        assert "hunter2" not in str(caught.value)
        with pytest.raises(RemoteAuth):
            await PostgresRemote.connect(with_dbname(pg_server.admin_url, "no_such_db"),
                                         dim=DIM)


async def test_a_refused_value_is_permanent(pg_url: str) -> None:
    async with await connect(pg_url) as remote:
        bad = attrs.evolve(live("bad metadata", 1), metadata_json="{not json")
        with trio.fail_after(10), pytest.raises(RemotePermanent):
            await remote.push(SPACE, [bad])
        good = live("fine", 2)  # the connection survives the refusal
        assert [r.status for r in await remote.push(SPACE, [good])] == ["applied"]


async def test_versions_of_another_space_are_a_caller_bug(pg_url: str) -> None:
    async with await connect(pg_url) as remote:
        with pytest.raises(ValueError, match="another space"):
            await remote.push("team:other", [live("misfiled", 1)])


# -- embedding models and schema creation ----------------------------------------------------

async def test_a_client_with_another_model_replicates_without_vectors(pg_url: str) -> None:
    with trio.fail_after(15):
        async with await connect(pg_url) as owner:
            await owner.push(SPACE, [live("owner's memory about lanterns", 1, axis=2)])
        async with await PostgresRemote.connect(pg_url, dim=4, model="other-model") as guest:
            assert guest.layout is not None
            assert (guest.layout.dim, guest.layout.embedding_model) == (DIM, MODEL)
            foreign = version(new_id(), "guest's memory about lanterns", 2,
                              embedding=b"\x00" * 16, model="other-model")
            assert [r.status for r in await guest.push(SPACE, [foreign])] == ["applied"]
            pulled = (await guest.pull(SPACE, 0, 10)).versions
            assert pulled[0].embedding is not None  # the owner's vector, in the owner's model
            assert pulled[1].embedding is None and pulled[1].embedding_model is None
            hits = await guest.search(SPACE, "lanterns", b"\x00" * 16, 5)  # text leg only
            assert len(hits) == 2
            assert all(0.0 <= h.score < 1.0 for h in hits)


async def test_concurrent_first_connects_create_the_schema_once(pg_url: str) -> None:
    with trio.fail_after(15):
        remotes: list[PostgresRemote] = []

        async def open_one() -> None:
            remotes.append(await connect(pg_url))

        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(open_one)
        for remote in remotes:
            await remote.aclose()
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT count(*) FROM triomem_schema").fetchone()
        assert row == (1,)


def test_repr_and_errors_never_show_the_password() -> None:
    settings = PgSettings("postgresql://ann:s3cret@db.example:5432/mem?sslmode=require", dim=4)
    remote = PostgresRemote(settings)  # the constructor does no I/O
    assert "s3cret" not in repr(remote)
    assert "s3cret" not in repr(settings)
    assert "ann:***@db.example" in repr(remote)
    with pytest.raises(ValueError, match="postgresql://") as caught:
        PgSettings("mysql://ann:s3cret@db.example/mem", dim=4)
    assert "s3cret" not in str(caught.value)


async def test_calls_reconnect_transparently_after_a_server_restart(
        pg_control: PgServer, pg_url: str) -> None:
    remote = await connect(pg_url, read_connections=1)
    before = live("survives a restart", 1, axis=4)
    try:
        with trio.fail_after(30):
            await remote.push(SPACE, [before])
            assert (await remote.pull(SPACE, 0, 10)).versions == (before,)  # both connected
            await trio.to_thread.run_sync(pg_control.stop_immediate)
            await trio.to_thread.run_sync(pg_control.start)
            # Every connection is stale now: each call is retried once on a new one.
            assert (await remote.pull(SPACE, 0, 10)).versions == (before,)
            after = live("written after the restart", 2, axis=5)
            assert [r.status for r in await remote.push(SPACE, [after])] == ["applied"]
            hits = await remote.search(SPACE, "restart", None, 5)
            assert {h.version.id for h in hits} == {before.id, after.id}
    finally:
        if not pg_control.running():
            pg_control.start()
        await remote.aclose()


# -- cancellation of writes and of closing ---------------------------------------------------

async def test_a_cancelled_push_is_not_abandoned_it_commits(pg_url: str) -> None:
    def slow_commit(space: str) -> None:
        time.sleep(0.3)  # on the writer's thread, inside the push transaction

    remote = await connect(pg_url, before_commit=slow_commit)
    pushed = live("committed although the caller left", 1)
    try:
        with trio.fail_after(10):
            start = trio.current_time()
            with trio.move_on_after(0.05) as scope:
                await remote.push(SPACE, [pushed])
            assert scope.cancel_called
            assert trio.current_time() - start >= 0.3  # it waited for the commit
            assert (await remote.pull(SPACE, 0, 10)).versions == (pushed,)
    finally:
        await remote.aclose()


async def test_aclose_closes_every_connection_even_when_cancelled(
        pg_url: str, pg_admin: psycopg.Connection[Any]) -> None:
    remote = await connect(pg_url, application_name="closing", read_connections=2)
    with trio.fail_after(10):
        await remote.pull(SPACE, 0, 10)
        assert _backends(pg_admin, "closing") == 2  # writer and one reader
        with trio.CancelScope() as scope:
            scope.cancel()
            await remote.aclose()
        await wait_until(lambda: _backends(pg_admin, "closing") == 0, within=2.0)
        with pytest.raises(trio.ClosedResourceError):
            await remote.pull(SPACE, 0, 10)
