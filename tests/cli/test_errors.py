"""Bad input: unknown flags, missing files, a newer schema. A clear message, the documented
exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from tests.cli._run import ok, triomem


@pytest.mark.parametrize("args", [
    ("remember", "x", "--frobnicate"),
    ("recall", "x", "--limit", "many"),
    ("import", "f.jsonl", "--format", "csv"),
    ("backup",),  # --to is required
    ("remember", "x", "--metadata", "[1, 2]"),
    ("config", "vscode"),
])
def test_usage_errors_exit_two(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = triomem(tmp_path, *args, db=tmp_path / "m.db")
    assert result.returncode == 2, result.stderr
    assert "usage:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("import", "{tmp}/missing.jsonl"), "missing.jsonl: no such file"),
    (("import", "{tmp}"), "is a directory"),
    (("restore", "--from", "{tmp}/missing.db", "--force"), "missing.db: no such file"),
    (("backup", "--to", "{tmp}/b.db"), "no such database"),
    (("reembed",), "no such database"),
])
def test_missing_files_exit_one_with_a_clear_message(tmp_path: Path, args: tuple[str, ...],
                                                     message: str) -> None:
    db = tmp_path / "absent.db"
    result = triomem(tmp_path, *(a.format(tmp=tmp_path) for a in args), db=db)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("triomem: ")
    assert "Traceback" not in result.stderr


def test_a_database_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    ok(triomem(tmp_path, "remember", "written by an older triomem", db=db))
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    before = db.read_bytes()
    for args in (("list",), ("remember", "x"), ("export",), ("stats",)):
        result = triomem(tmp_path, *args, db=db)
        assert result.returncode == 1, result.stderr
        assert "schema_too_new" in result.stderr
        assert "Traceback" not in result.stderr
    assert db.read_bytes() == before
    doctor = triomem(tmp_path, "doctor", db=db)
    assert doctor.returncode == 1
    assert "upgrade triomem" in doctor.stdout


def test_a_bad_setting_names_its_key(tmp_path: Path) -> None:
    result = triomem(tmp_path, "list", db=tmp_path / "m.db",
                     env={"TRIOMEM_SERVER_PORT": "eighty"})
    assert result.returncode == 1
    assert "server.port" in result.stderr and "Traceback" not in result.stderr
    config = tmp_path / "config.toml"
    config.write_text("[nonsense]\nx = 1\n")
    result = triomem(tmp_path, "list", db=tmp_path / "m.db",
                     env={"TRIOMEM_CONFIG": str(config)})
    assert result.returncode == 1 and "unknown section [nonsense]" in result.stderr
