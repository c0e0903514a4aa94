"""A stepped backup finishes while another connection (another process, to SQLite) writes."""

from __future__ import annotations

from pathlib import Path

import apsw

from triomem.actors._backup import BackupJob, BackupRequest


def _database(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x TEXT)")
    with conn:
        conn.executemany("INSERT INTO t VALUES(?)", [(f"row {i} " * 40,) for i in range(2000)])
    return conn


def test_commits_by_another_connection_restart_the_copy_but_it_still_finishes(
        tmp_path: Path) -> None:
    source = _database(tmp_path / "live.db")
    other = apsw.Connection(str(tmp_path / "live.db"))
    job = BackupJob.start(source, BackupRequest(str(tmp_path / "copy.db"), pages_per_step=8))
    written = 0
    for _ in range(40):  # bounded: with a fixed step size this would restart for ever
        if job.step():
            break
        other.execute("INSERT INTO t VALUES('written meanwhile')")  # each commit restarts it
        written += 1
    else:
        raise AssertionError("the backup never finished")
    result = job.finish()
    assert result.restarts >= 3 and result.steps > 1
    copy = apsw.Connection(result.destination)
    count = int(copy.execute("SELECT count(*) FROM t").fetchall()[0][0])  # type: ignore[arg-type]
    assert 2000 + written - 1 <= count <= 2000 + written  # a consistent snapshot


def test_without_other_writers_the_step_size_stays_as_asked(tmp_path: Path) -> None:
    source = _database(tmp_path / "live.db")
    job = BackupJob.start(source, BackupRequest(str(tmp_path / "copy.db"), pages_per_step=8))
    while not job.step():
        pass
    result = job.finish()
    assert result.restarts == 0 and result.steps == -(-result.pages // 8)
