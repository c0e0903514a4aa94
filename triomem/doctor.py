"""``triomem doctor``: check what a working install needs and say how to fix what is not.

Every check is independent and read-only: it never creates, migrates or locks the database
(a daemon may own it). Each returns a ``Check`` with a status (ok, warn, fail), what was
found and, when not ok, the fix. ``run_checks`` runs the local ones; ``check_remote`` (async:
it opens a connection) tells whether the configured remote answers.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import urlsplit

import apsw
import attrs
import sqlite_vec
import trio

from .actors._db import read_meta, scalar
from .actors._schema import APPLICATION_ID, SCHEMA_VERSION, SQLITE_MAGIC
from .actors._sql_read import wal_size
from .settings import Settings, mask_url
from .transports.lockfile import DaemonPaths, probe

Status = Literal["ok", "warn", "fail"]
WAL_WARN_BYTES = 256 * 1024 * 1024
REMOTE_TIMEOUT = 3.0
DEFAULT_PORTS = {"postgresql": 5432, "postgres": 5432, "ws": 80, "wss": 443}


@attrs.frozen
class Check:
    name: str
    status: Status
    found: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _sqlite() -> list[Check]:
    checks = [Check("sqlite", "ok", f"SQLite {apsw.sqlite_lib_version()}, apsw "
                                    f"{apsw.apsw_version()}")]
    conn = apsw.Connection(":memory:")
    try:
        conn.execute("CREATE VIRTUAL TABLE f USING fts5(x, tokenize='porter unicode61')")
        checks.append(Check("fts5", "ok", "FTS5 with the porter tokenizer"))
    except apsw.Error as exc:
        checks.append(Check("fts5", "fail", str(exc), "install an apsw build with FTS5"))
    try:
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        version = conn.execute("SELECT vec_version()").fetchall()[0][0]
        checks.append(Check("sqlite-vec", "ok", f"sqlite-vec {version}"))
    except apsw.Error as exc:
        checks.append(Check("sqlite-vec", "fail", str(exc), "pip install --force-reinstall "
                                                            "sqlite-vec"))
    conn.close()
    return checks


def _model(embedder: str) -> Check:
    if embedder != "minilm":
        return Check("model", "ok", f"embedder {embedder} needs no installed weights")
    from .embedders import minilm

    try:
        minilm.verify_weights()
    except minilm.ModelMissing as exc:
        return Check("model", "fail", str(exc), "triomem models install")
    return Check("model", "ok", "all-MiniLM-L6-v2 weights present, sha256 verified")


def _database(path: str, embedder_id: str | None) -> list[Check]:
    if not os.path.exists(path):
        return [Check("database", "warn", f"{path} does not exist yet",
                      "it is created on first use")]
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head and head != SQLITE_MAGIC:
        return [Check("database", "fail", f"{path} is not a SQLite database",
                      "point --db at a triomem database or move this file away")]
    conn = apsw.Connection(f"file:{os.path.abspath(path)}?mode=ro",
                           flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
    checks = []
    try:
        app: int = scalar(conn, "PRAGMA application_id")
        version: int = scalar(conn, "PRAGMA user_version")
        if app != APPLICATION_ID and version:
            return [Check("database", "fail", f"{path} belongs to another application",
                          "point --db at a triomem database")]
        if version > SCHEMA_VERSION:
            checks.append(Check("schema", "fail", f"schema {version} is newer than this "
                                f"triomem ({SCHEMA_VERSION})", "upgrade triomem"))
        else:
            checks.append(Check("schema", "ok" if version == SCHEMA_VERSION else "warn",
                                f"schema {version} (this triomem: {SCHEMA_VERSION})",
                                "" if version == SCHEMA_VERSION else
                                "it is migrated when an engine next opens it"))
        stored = read_meta(conn) if version else {}
        bound = stored.get("embedder")
        if bound and embedder_id and bound != embedder_id:
            checks.append(Check("embedder", "fail", f"vectors made by {bound}, configured "
                                f"{embedder_id}", f"use --embedder matching {bound}, or "
                                "triomem reembed --embedder <name>"))
        else:
            checks.append(Check("embedder", "ok", f"vectors made by {bound or 'nothing yet'}"))
        quick = conn.execute("PRAGMA quick_check").fetchall()
        checks.append(Check("integrity", "ok" if quick == [("ok",)] else "fail",
                            str(quick[0][0]) if quick else "?",
                            "" if quick == [("ok",)] else
                            "restore the latest backup (triomem backup)"))
    except apsw.Error as exc:
        checks.append(Check("database", "fail", str(exc), "check the file and its directory"))
    finally:
        conn.close()
    wal = wal_size(path)
    checks.append(Check("wal", "ok" if wal < WAL_WARN_BYTES else "warn", f"{wal} bytes",
                        "" if wal < WAL_WARN_BYTES else
                        "close long-running readers; the next idle checkpoint truncates it"))
    return checks


def _daemon(path: str) -> Check:
    state = probe(DaemonPaths.for_database(path))
    if not state.held:
        return Check("daemon", "ok", "no server owns the database")
    if state.info is None:
        return Check("daemon", "warn", "a server is starting or stopping",
                     "wait a moment and run doctor again")
    return Check("daemon", "ok", f"served by pid {state.info.pid} at {state.info.url}")


def _embedder_id(name: str) -> str | None:
    return {"minilm": "minilm:all-MiniLM-L6-v2",
            "wordllama": "wordllama:l2_supercat_256"}.get(name)


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order; remote reachability is ``check_remote`` (it needs trio)."""
    path = settings.get("db")
    embedder = settings.get("embedder")
    return [*_sqlite(), _model(embedder), *_database(path, _embedder_id(embedder)),
            _daemon(path)]


async def check_remote(settings: Settings, within: float = REMOTE_TIMEOUT) -> Check:
    """Whether the configured remote (``remote.url``) accepts a TCP connection within
    ``within`` seconds. Checks reachability only; credentials are checked when the server
    syncs. Never raises."""
    url: str = settings.get("remote.url")
    if not url:
        return Check("remote", "ok", "no remote configured (local only)")
    shown = mask_url(url)
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or port is None:
        return Check("remote", "fail", f"{shown} is not a postgresql:// or ws(s):// URL with "
                     "a host", "set remote.url (TRIOMEM_REMOTE_URL) to the remote's URL")
    try:
        with trio.fail_after(within):
            stream = await trio.open_tcp_stream(parts.hostname, port)
            await stream.aclose()
    except (OSError, trio.TooSlowError) as exc:
        reason = "no answer" if isinstance(exc, trio.TooSlowError) else \
            (exc.strerror or str(exc))
        return Check("remote", "fail", f"{shown}: {reason}",
                     "check the address and the network; writes wait in the outbox meanwhile")
    return Check("remote", "ok", f"{shown} answers")


def render(checks: list[Check]) -> str:
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = []
    for check in checks:
        lines.append(f"[{marks[check.status]}] {check.name:11} {check.found}")
        if check.fix:
            lines.append(f"       fix: {check.fix}")
    return "\n".join(lines)
