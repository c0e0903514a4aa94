"""doctor: read-only checks with a fix for each problem."""

from __future__ import annotations

from pathlib import Path

import apsw

from tests.fakes import HashEmbedder
from triomem import EngineConfig, open_engine
from triomem.doctor import render, run_checks
from triomem.settings import Settings


def _settings(tmp_path: Path, db: Path, embedder: str = "wordllama") -> Settings:
    return Settings.load(flags={"db": str(db), "embedder": embedder},
                         environ={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})


async def test_a_healthy_database(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with open_engine(db, EngineConfig(embedder="wordllama")) as engine:
        await engine.remember("hello")
    checks = {c.name: c for c in run_checks(_settings(tmp_path, db))}
    assert {c.status for c in checks.values()} == {"ok"}, render(list(checks.values()))
    assert "wordllama" in checks["embedder"].found
    assert db.stat().st_size > 0


async def test_problems_come_with_fixes(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    async with open_engine(db, EngineConfig(embedder=HashEmbedder(), executor="inline")):
        pass
    before = db.read_bytes()
    checks = {c.name: c for c in run_checks(_settings(tmp_path, db, "minilm"))}
    assert checks["embedder"].status == "fail"
    assert "reembed" in checks["embedder"].fix
    assert db.read_bytes() == before  # read-only: nothing migrated, nothing written
    conn = apsw.Connection(str(db))
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    checks = {c.name: c for c in run_checks(_settings(tmp_path, db))}
    assert checks["schema"].status == "fail"
    assert checks["schema"].fix == "upgrade triomem"
    junk = tmp_path / "junk.db"
    junk.write_text("not a database")
    [*_, database, daemon] = run_checks(_settings(tmp_path, junk))
    assert database.status == "fail"
    assert daemon.status == "ok"
    assert "FAIL" in render([database])
