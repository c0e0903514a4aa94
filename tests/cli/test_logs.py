"""Structured logs: logfmt or JSON lines on stderr, at the configured level."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from tests.cli._run import ok, served, triomem
from triomem import logs


@pytest.fixture
def restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_logfmt_and_json_lines(restore_logging: object) -> None:
    stream = io.StringIO()
    logs.configure("info", "logfmt", stream)
    log = logging.getLogger("triomem.test")
    log.debug("hidden below the level")
    log.info('backup "written"', extra={"bytes": 4096, "path": "/tmp/a b.db"})
    line = stream.getvalue().strip()
    assert "hidden" not in line
    assert line.startswith("ts=") and " level=info logger=triomem.test " in line
    assert 'msg="backup \\"written\\""' in line
    assert 'bytes=4096 path="/tmp/a b.db"' in line
    stream = io.StringIO()
    logs.configure("warning", "json", stream)
    log.info("hidden")
    log.warning("careful", extra={"retry_in": 1.5})
    record = json.loads(stream.getvalue())
    assert (record["level"], record["logger"], record["msg"], record["retry_in"]) == \
        ("warning", "triomem.test", "careful", 1.5)
    with pytest.raises(ValueError, match="log format"):
        logs.configure("info", "xml")


def test_the_level_flag_and_setting_reach_the_command(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with served(tmp_path, db):
        quiet = triomem(tmp_path, "list", db=db, embedder=None)
        ok(quiet)
        assert quiet.stderr == ""  # warning by default: nothing to say
        chatty = triomem(tmp_path, "list", "--log-level", "info", db=db, embedder=None)
        ok(chatty)
        assert 'level=info logger=triomem.cli msg="through the server"' in chatty.stderr
        as_json = triomem(tmp_path, "--log-format", "json", "list", db=db, embedder=None,
                          env={"TRIOMEM_LOG_LEVEL": "info"})
        ok(as_json)
        lines = [json.loads(line) for line in as_json.stderr.splitlines()]
        assert any(line["msg"] == "through the server" for line in lines)
    bad = triomem(tmp_path, "list", db=db, env={"TRIOMEM_LOG_LEVEL": "loud"})
    assert bad.returncode == 1 and "log_level" in bad.stderr
