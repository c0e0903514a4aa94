"""Settings reach every command (flag > environment > file); ``config show`` masks secrets;
``doctor`` passes on a healthy database and fails with a fix on a wrong embedder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli._run import ok, triomem


def test_config_show_masks_tokens_from_the_environment(tmp_path: Path) -> None:
    env = {"TRIOMEM_TOKEN": "s3cret-server-token", "TRIOMEM_REMOTE_TOKEN": "s3cret-remote",
           "TRIOMEM_REMOTE_URL": "postgresql://me:hunter2@db.example/memories"}
    result = triomem(tmp_path, "config", "show", db=tmp_path / "m.db", embedder=None, env=env)
    shown = ok(result)
    for secret in ("s3cret-server-token", "s3cret-remote", "hunter2"):
        assert secret not in shown
    assert 'token = "********"  # env' in shown
    assert 'url = "postgresql://me:********@db.example/memories"  # env' in shown
    assert f'db = "{tmp_path / "m.db"}"  # flag' in shown
    as_json = json.loads(ok(triomem(tmp_path, "config", "show", "--json", embedder=None,
                                    env=env)))
    assert as_json["settings"]["server.token"] == "********"
    assert as_json["sources"]["server.token"] == "env"


def test_flag_beats_environment_beats_file_for_every_command(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    file_db, env_db, flag_db = (tmp_path / f"{n}.db" for n in ("file", "env", "flag"))
    config.write_text(f'db = "{file_db}"\nembedder = "wordllama"\n')
    env = {"TRIOMEM_CONFIG": str(config)}
    ok(triomem(tmp_path, "remember", "from the file", embedder=None, env=env))
    assert file_db.exists()
    ok(triomem(tmp_path, "remember", "from the environment", embedder=None,
               env={**env, "TRIOMEM_DB": str(env_db)}))
    ok(triomem(tmp_path, "remember", "from the flag", db=flag_db, embedder=None,
               env={**env, "TRIOMEM_DB": str(env_db)}))
    for db, content in ((file_db, "from the file"), (env_db, "from the environment"),
                        (flag_db, "from the flag")):
        listed = json.loads(ok(triomem(tmp_path, "list", "--json", db=db, embedder=None,
                                       env=env)))
        assert [m["content"] for m in listed["memories"]] == [content]
        stats = json.loads(ok(triomem(tmp_path, "stats", "--json", db=db, embedder=None,
                                      env=env)))
        assert stats["embedder"].startswith("wordllama")  # the file's embedder everywhere


def test_doctor_passes_when_healthy_and_fails_with_a_fix(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    ok(triomem(tmp_path, "remember", "made with wordllama", db=db))
    healthy = triomem(tmp_path, "doctor", db=db)
    assert "FAIL" not in ok(healthy)
    assert "[ok  ] embedder" in healthy.stdout
    checks = json.loads(ok(triomem(tmp_path, "doctor", "--json", db=db)))["checks"]
    assert {c["name"] for c in checks} >= {"sqlite", "fts5", "sqlite-vec", "schema",
                                          "embedder", "integrity", "wal", "daemon", "remote"}
    wrong = triomem(tmp_path, "doctor", db=db, embedder="minilm")
    assert wrong.returncode == 1
    assert "[FAIL] embedder" in wrong.stdout
    assert "reembed" in wrong.stdout  # the fix
    assert "check(s) failed" in wrong.stderr and "embedder" in wrong.stderr
    unreachable = triomem(tmp_path, "doctor", db=db,
                          env={"TRIOMEM_REMOTE_URL": "postgresql://u:pw@127.0.0.1:1/x"})
    assert unreachable.returncode == 1
    assert "[FAIL] remote" in unreachable.stdout and "pw@" not in unreachable.stdout
