"""The CLI beside a running server: commands go through it; the server's metrics endpoint and
periodic backups. Every server is a ``triomem serve`` subprocess stopped by its pid."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import apsw
import httpx
import trio
from trio_websocket import open_websocket_url

from tests.cli._run import ok, served, triomem
from tests.transports._ws import WsClient
from triomem.transports.lockfile import DaemonPaths, probe


async def _daemon_call(url: str, tool: str, arguments: dict[str, Any] | None = None
                       ) -> dict[str, Any]:
    async with open_websocket_url(url, subprotocols=["mcp"]) as ws:
        client = WsClient(ws)
        await client.handshake()
        result = await client.call(tool, arguments)
        structured: dict[str, Any] = result["structuredContent"]
        return structured


def daemon_call(url: str, tool: str, arguments: dict[str, Any] | None = None
                ) -> dict[str, Any]:
    return trio.run(_daemon_call, url, tool, arguments)


def test_commands_go_through_the_server_that_owns_the_database(tmp_path: Path) -> None:
    db = tmp_path / "served.db"
    with served(tmp_path, db) as (process, announcement):
        url = announcement["url"]
        state = probe(DaemonPaths.for_database(db))
        assert state.info is not None and state.info.pid == process.pid
        # No --embedder: the CLI never loads a model when a server answers.
        stored = json.loads(ok(triomem(tmp_path, "remember", "Deploys happen on Tuesdays",
                                       "--tag", "ops", "--json", db=db, embedder=None,
                                       env={"TRIOMEM_LOG_LEVEL": "info"})))
        memory_id = stored["memory"]["id"]
        # The server's own statistics count the write: it was made in the server's process.
        stats = daemon_call(url, "memory_stats")
        assert stats["store"]["writes_committed"] == 1
        assert daemon_call(url, "memory_get", {"id": memory_id})["memory"]["content"] == \
            "Deploys happen on Tuesdays"
        recalled = json.loads(ok(triomem(tmp_path, "recall", "when do we deploy?",
                                         "--tag-any", "ops", "--json", db=db, embedder=None)))
        assert recalled["hits"][0]["memory"]["id"] == memory_id
        listed = json.loads(ok(triomem(tmp_path, "list", "--json", db=db, embedder=None)))
        assert [m["id"] for m in listed["memories"]] == [memory_id]
        got = json.loads(ok(triomem(tmp_path, "get", memory_id, "--json", db=db,
                                    embedder=None)))
        assert got["memory"]["tags"] == ["ops"]
        cli_stats = json.loads(ok(triomem(tmp_path, "stats", "--json", db=db, embedder=None)))
        assert cli_stats["store"]["writes_committed"] == 1  # the server's counters
        assert cli_stats["recall"]["served"] == 1
        missing = triomem(tmp_path, "forget", "01234567-0000-7000-8000-000000000000", db=db,
                          embedder=None)
        assert missing.returncode == 1 and "not_found" in missing.stderr
        ok(triomem(tmp_path, "forget", memory_id, db=db, embedder=None))
        stats = daemon_call(url, "memory_stats")
        assert stats["store"]["writes_committed"] == 2
        assert stats["database"]["forgotten_memories"] == 1
        # The server still owns the database: no command took its lock.
        assert probe(DaemonPaths.for_database(db)).info.pid == process.pid  # type: ignore[union-attr]
        # File commands open the database beside the server (multi-process safe).
        ok(triomem(tmp_path, "remember", "another", db=db, embedder=None))
        backup = tmp_path / "beside.db"
        ok(triomem(tmp_path, "backup", "--to", str(backup), db=db, embedder=None))
        assert backup.exists()
        exported = ok(triomem(tmp_path, "export", "--include-forgotten", db=db, embedder=None))
        assert len(exported.splitlines()) == 2


def test_metrics_endpoint_serves_prometheus_text_when_enabled(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with served(tmp_path, db) as (_, announcement):
        assert "metrics" not in announcement  # opt-in
    with served(tmp_path, db, "--metrics-port", "0",
                env={"TRIOMEM_METRICS_ENABLED": "true"}) as (_, announcement):
        url = announcement["metrics"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        ok(triomem(tmp_path, "remember", "counted", db=db, embedder=None))
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.text
        for name in ("triomem_memories", "triomem_database_bytes", "triomem_wal_bytes",
                     "triomem_writes_committed_total", "triomem_writes_failed_total",
                     "triomem_busy_retries_total", "triomem_busy_give_ups_total",
                     "triomem_recalls_served_total", "triomem_recalls_partial_total",
                     "triomem_recall_timeouts_total", "triomem_embed_batches_total"):
            assert f"# TYPE {name} " in text, name
        assert 'triomem_memories{state="live"} 1' in text
        assert "triomem_writes_committed_total 1" in text
        assert "triomem_sync_outbox" not in text  # no remote configured
        assert httpx.get(url.replace("/metrics", "/other"), timeout=10).status_code == 404
        assert httpx.post(url, timeout=10).status_code == 405


def test_periodic_backups_keep_only_the_newest(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    backups = tmp_path / "backups"
    ok(triomem(tmp_path, "remember", "backed up on schedule", db=db))
    env = {"TRIOMEM_BACKUP_EVERY_HOURS": "0.0002",  # 0.72 s
           "TRIOMEM_BACKUP_KEEP": "2", "TRIOMEM_BACKUP_DIRECTORY": str(backups)}
    seen: set[str] = set()
    with served(tmp_path, db, env=env):
        deadline = time.monotonic() + 30
        while len(seen) < 4:
            assert time.monotonic() < deadline, f"only {sorted(seen)}"
            present = {p.name for p in backups.glob("m-*.db")} if backups.exists() else set()
            assert len(present) <= 2 + 1  # keep 2 (a third only between write and prune)
            seen |= present
            time.sleep(0.1)
    kept = sorted(backups.glob("m-*.db"))
    assert len(kept) == 2
    assert [p.name for p in kept] == sorted(seen)[-2:]  # the newest are the ones kept
    conn = apsw.Connection(str(kept[-1]))
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("SELECT content FROM memories").fetchall() == [
        ("backed up on schedule",)]
    conn.close()


def test_serve_remote_replicates_to_a_hub_served_by_another_triomem(tmp_path: Path) -> None:
    hub_db, device_db = tmp_path / "hub.db", tmp_path / "device.db"
    with served(tmp_path, hub_db, "--hub") as (_, hub):
        hub_url = hub["url"].removesuffix("/mcp") + "/hub"
        with served(tmp_path, device_db, "--remote", hub_url, "--metrics-port", "0",
                    env={"TRIOMEM_METRICS_ENABLED": "1"}) as (_, device):
            stored = json.loads(ok(triomem(tmp_path, "remember", "synced through the hub",
                                           "--json", db=device_db, embedder=None)))
            deadline = time.monotonic() + 30
            while True:
                listed = json.loads(ok(triomem(tmp_path, "list", "--json", db=hub_db,
                                               embedder=None)))
                if listed["memories"]:
                    break
                assert time.monotonic() < deadline, "never reached the hub"
                time.sleep(0.2)
            assert listed["memories"][0]["id"] == stored["memory"]["id"]
            while "triomem_sync_pushed_total 1\n" not in (
                    metrics := httpx.get(device["metrics"], timeout=10).text):
                assert time.monotonic() < deadline, metrics  # the ack is counted just after
                time.sleep(0.1)
            assert "triomem_sync_outbox 0\n" in metrics
            stats = json.loads(ok(triomem(tmp_path, "stats", "--json", db=device_db,
                                          embedder=None,
                                          env={"TRIOMEM_REMOTE_URL": hub_url})))
            assert stats["sync"] == {"outbox": 0, "dead_letters": 0, "conflicts": 0}
