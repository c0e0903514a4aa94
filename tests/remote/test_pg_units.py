"""The PostgreSQL remote's pure parts: error classification, DSN masking, connection string."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from triomem.actors._remote import RemoteAuth, RemotePermanent, RemoteTransient
from triomem.remotes._pg_errors import classify, mask_dsn
from triomem.remotes.postgres import PgSettings


@pytest.mark.parametrize(("error", "expected"), [
    (errors.SerializationFailure, RemoteTransient),  # 40001
    (errors.DeadlockDetected, RemoteTransient),  # 40P01
    (errors.QueryCanceled, RemoteTransient),  # 57014: statement_timeout
    (errors.AdminShutdown, RemoteTransient),  # 57P01
    (errors.TooManyConnections, RemoteTransient),  # 53300
    (errors.LockNotAvailable, RemoteTransient),  # 55P03
    (errors.ConnectionFailure, RemoteTransient),  # 08006
    (errors.InvalidPassword, RemoteAuth),  # 28P01
    (errors.InsufficientPrivilege, RemoteAuth),  # 42501
    (errors.InvalidCatalogName, RemoteAuth),  # 3D000: no such database
    (errors.InvalidTextRepresentation, RemotePermanent),  # 22P02
    (errors.NumericValueOutOfRange, RemotePermanent),  # 22003
    (errors.NotNullViolation, RemotePermanent),  # 23502
    (errors.UndefinedTable, RemotePermanent),  # 42P01
])
def test_sqlstate_classes_map_to_typed_errors(error: type[psycopg.Error],
                                              expected: type[Exception]) -> None:
    mapped = classify(error("boom"), "push")
    assert type(mapped) is expected
    assert error.sqlstate is not None and error.sqlstate in str(mapped)


@pytest.mark.parametrize(("message", "expected"), [
    ("connection failed: connection to server at \"127.0.0.1\", port 1 failed: Connection "
     "refused", RemoteTransient),
    ("consuming input failed: server closed the connection unexpectedly", RemoteTransient),
    ("connection failed: FATAL:  password authentication failed for user \"ann\"", RemoteAuth),
    ("connection failed: FATAL:  role \"nobody\" does not exist", RemoteAuth),
    ("connection failed: FATAL:  no pg_hba.conf entry for host \"10.0.0.2\"", RemoteAuth),
    ("connection failed: FATAL:  database \"mem\" does not exist", RemoteAuth),
])
def test_connection_failures_without_sqlstate(message: str, expected: type[Exception]) -> None:
    assert type(classify(psycopg.OperationalError(message), "connect")) is expected


def test_client_side_adaptation_errors_are_permanent() -> None:
    assert type(classify(psycopg.ProgrammingError("cannot adapt"), "push")) is RemotePermanent


@pytest.mark.parametrize(("dsn", "shown"), [
    ("postgresql://ann:s3cret@db:5432/mem", "postgresql://ann:***@db:5432/mem"),
    ("postgresql://ann@db/mem", "postgresql://ann@db/mem"),
    ("postgresql://db/mem?password=s3cret&sslmode=require",
     "postgresql://db/mem?password=***&sslmode=require"),
    ("host=db password='s 3cret' user=ann", "host=db password=*** user=ann"),
])
def test_mask_dsn(dsn: str, shown: str) -> None:
    assert mask_dsn(dsn) == shown


def test_conninfo_keeps_the_url_and_adds_timeouts() -> None:
    settings = PgSettings("postgresql://ann:pw@db:6543/mem?options=-c%20search_path%3Dx",
                          dim=4, statement_timeout_s=2.5)
    info = psycopg.conninfo.conninfo_to_dict(settings.conninfo())
    assert (info["host"], info["port"], info["dbname"], info["user"]) == ("db", "6543", "mem",
                                                                          "ann")
    assert info["application_name"] == "triomem"
    options = str(info["options"])
    assert "-c search_path=x" in options
    assert "-c statement_timeout=2500" in options
