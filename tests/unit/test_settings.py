"""Settings precedence: flag > environment > file > default; typed errors; masked secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from triomem import InvalidMemory, RetryPolicy
from triomem.settings import Settings


def _file(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return {"TRIOMEM_CONFIG": str(path)}


def test_precedence_flag_env_file_default(tmp_path: Path) -> None:
    env = _file(tmp_path, 'embedder = "wordllama"\n[server]\nport = 9001\nhost = "127.0.0.2"\n'
                          '[retry]\nmax_retries = 3\nfail_mode = "queue"\n')
    env["TRIOMEM_SERVER_PORT"] = "9002"
    env["TRIOMEM_STORE_COMMIT_DELAY"] = "0"
    settings = Settings.load(flags={"server.host": "127.0.0.3", "server.token": None},
                             environ=env)
    assert settings.get("embedder") == "wordllama"  # file
    assert settings.get("server.port") == 9002  # env beats file
    assert settings.get("server.host") == "127.0.0.3"  # flag beats file
    assert settings.get("server.token") == ""  # a None flag changes nothing
    assert settings.sources["server.port"] == "env"
    assert settings.sources["recall.deadline"] == "default"
    config = settings.engine_config()
    assert config.retry == RetryPolicy(max_retries=3, fail_mode="queue")
    assert config.embedder == "wordllama"
    assert config.commit_delay == 0  # env; the store then never waits before a commit


def test_defaults_without_a_file(tmp_path: Path) -> None:
    settings = Settings.load(environ={"XDG_CONFIG_HOME": str(tmp_path / "none"),
                                      "XDG_DATA_HOME": str(tmp_path / "data")})
    assert settings.file is None
    assert settings.get("db") == str(tmp_path / "data" / "triomem" / "memories.db")
    assert settings.engine_config().synchronous == "FULL"


@pytest.mark.parametrize(
    ("text", "env", "field"),
    [("[server]\nport = \"eighty\"\n", {}, "server.port"),
     ("[nonsense]\nx = 1\n", {}, "nonsense"),
     ("[server]\nporte = 1\n", {}, "server.porte"),
     ("port = [\n", {}, "config"),
     ("", {"TRIOMEM_METRICS_ENABLED": "maybe"}, "metrics.enabled"),
     ("[retry]\nfail_mode = \"sometimes\"\n", {}, "config")],
)
def test_bad_settings_name_the_key(tmp_path: Path, text: str, env: dict[str, str],
                                   field: str) -> None:
    environ = {**_file(tmp_path, text), **env}
    with pytest.raises(InvalidMemory) as info:
        Settings.load(environ=environ).engine_config()
    assert info.value.field == field


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InvalidMemory) as info:
        Settings.load(environ={"TRIOMEM_CONFIG": str(tmp_path / "missing.toml")})
    assert info.value.field == "TRIOMEM_CONFIG"


def test_show_masks_secrets(tmp_path: Path) -> None:
    env = _file(tmp_path, '[remote]\nurl = "postgresql://me:hunter2@db.example/mem"\n'
                          'token = "abc"\n')
    env["TRIOMEM_TOKEN"] = "s3cret-token"
    shown = Settings.load(environ=env).show()
    assert "hunter2" not in shown
    assert "s3cret-token" not in shown
    assert "abc" not in shown
    assert 'url = "postgresql://me:********@db.example/mem"  # file' in shown
    assert 'token = "********"  # env' in shown
