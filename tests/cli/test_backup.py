"""``triomem backup`` while another process writes; ``--force``; restore."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import apsw

from tests.cli._run import clean_env, ok, triomem


def _ids(db: Path) -> set[str]:
    conn = apsw.Connection(f"file:{db}?mode=ro", flags=apsw.SQLITE_OPEN_READONLY |
                           apsw.SQLITE_OPEN_URI)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM memories WHERE deleted_at IS "
                                               "NULL")}
    finally:
        conn.close()


def test_backup_while_eight_writers_run_in_another_process(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    for i in range(3):
        ok(triomem(tmp_path, "remember", f"seed {i} " + "padding " * 200, db=db))
    writer = subprocess.Popen([sys.executable, "-m", "tests.cli._writer", str(db)],
                              stdout=subprocess.PIPE, text=True, env=clean_env(tmp_path),
                              cwd=Path(__file__).resolve().parents[2])
    acked: list[str] = []

    def read() -> None:
        assert writer.stdout is not None
        for line in writer.stdout:
            acked.append(line.strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while len(acked) < 200:  # the writers are well under way
            assert writer.poll() is None and time.monotonic() < deadline, "writer stalled"
            time.sleep(0.05)
        before = set(acked)  # acknowledged before the backup began
        backup = tmp_path / "backup.db"
        result = json.loads(ok(triomem(tmp_path, "backup", "--to", str(backup), "--json",
                                       db=db)))
        assert len(acked) > len(before)  # the writers kept going while it ran
        assert writer.poll() is None
    finally:
        writer.terminate()
        writer.wait(30)
    assert result["destination"] == str(backup)
    assert result["steps"] > 1  # in steps, between the writers' commits
    conn = apsw.Connection(str(backup))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    conn.close()
    assert before <= _ids(backup)
    assert not Path(str(backup) + ".partial").exists()


def test_an_existing_target_is_refused_unless_forced(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    ok(triomem(tmp_path, "remember", "worth keeping", db=db))
    target = tmp_path / "exists.db"
    target.write_bytes(b"not to be lost")
    refused = triomem(tmp_path, "backup", "--to", str(target), db=db)
    assert refused.returncode == 1
    assert "exists" in refused.stderr and "--force" in refused.stderr
    assert target.read_bytes() == b"not to be lost"
    ok(triomem(tmp_path, "backup", "--to", str(target), "--force", db=db))
    assert target.read_bytes()[:16] == b"SQLite format 3\x00"
    missing_dir = triomem(tmp_path, "backup", "--to", str(tmp_path / "no" / "b.db"), db=db)
    assert missing_dir.returncode == 1 and "no such directory" in missing_dir.stderr


def test_restore_puts_every_memory_back(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    ids = {json.loads(ok(triomem(tmp_path, "remember", f"memory {i}", "--json", db=db)))
           ["memory"]["id"] for i in range(5)}
    backup = tmp_path / "backup.db"
    ok(triomem(tmp_path, "backup", "--to", str(backup), db=db))
    ok(triomem(tmp_path, "forget", sorted(ids)[0], db=db))
    ok(triomem(tmp_path, "remember", "after the backup", db=db))

    # The documented way: with no server running, copy the backup over the database.
    manual = tmp_path / "manual.db"
    shutil.copyfile(backup, manual)
    listed = json.loads(ok(triomem(tmp_path, "list", "--json", db=manual)))
    assert {m["id"] for m in listed["memories"]} == ids

    # The command: checks the backup, refuses to replace without --force.
    refused = triomem(tmp_path, "restore", "--from", str(backup), db=db, embedder=None)
    assert refused.returncode == 1 and "--force" in refused.stderr
    ok(triomem(tmp_path, "restore", "--from", str(backup), "--force", db=db, embedder=None))
    listed = json.loads(ok(triomem(tmp_path, "list", "--json", db=db)))
    assert {m["id"] for m in listed["memories"]} == ids
    recalled = json.loads(ok(triomem(tmp_path, "recall", "memory 3", "--json", db=db)))
    assert recalled["hits"][0]["memory"]["content"] == "memory 3"
    junk = tmp_path / "junk.db"
    junk.write_text("not a backup")
    bad = triomem(tmp_path, "restore", "--from", str(junk), "--force", db=db, embedder=None)
    assert bad.returncode == 1 and "not a SQLite database" in bad.stderr
