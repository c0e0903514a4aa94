"""Settings: one TOML file, environment variables and command-line flags, in that order of
precedence from lowest to highest (a flag beats the environment, which beats the file, which
beats the built-in default).

The file is ``$TRIOMEM_CONFIG``, else ``$XDG_CONFIG_HOME/triomem/config.toml`` (usually
``~/.config/triomem/config.toml``); a missing default file is fine, a missing named one is an
error. Every key can be set in the environment as ``TRIOMEM_<SECTION>_<KEY>`` (upper case;
top-level keys as ``TRIOMEM_<KEY>``), for example ``TRIOMEM_DB``, ``TRIOMEM_SERVER_PORT`` or
``TRIOMEM_RETRY_MAX_RETRIES``. Secrets (tokens, passwords in URLs) are masked by ``show``.

    db = "~/.local/share/triomem/memories.db"
    embedder = "minilm"

    [server]
    host = "127.0.0.1"
    port = 8765

    [retry]
    max_retries = 50
    fail_mode = "raise"

Every key, its type and default is in ``SCHEMA``; README.md has the table.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .actors._errors import InvalidMemory
from .actors._recall import RecallConfig
from .actors._store import RetryPolicy
from .actors._values import Limits
from .embedders import EMBEDDERS
from .engine import EngineConfig

# section -> key -> (type, default). The single table of every setting.
SCHEMA: dict[str, dict[str, tuple[type, Any]]] = {
    "": {"db": (str, ""), "embedder": (str, "minilm"), "log_level": (str, "warning"),
         "log_format": (str, "logfmt")},
    "server": {"host": (str, "127.0.0.1"), "port": (int, 8765), "token": (str, ""),
               "idle_exit": (float, 900.0), "hub": (bool, False)},
    "store": {"synchronous": (str, "FULL"), "busy_timeout_ms": (int, 50),
              "max_batch": (int, 256), "commit_delay": (float, 0.002),
              "idle_checkpoint_after": (float, 1.0),
              "wal_autocheckpoint_pages": (int, 1000),
              "journal_size_limit_bytes": (int, 64 * 1024 * 1024)},
    "retry": {"interval": (float, 0.05), "backoff": (float, 2.0), "max_interval": (float, 1.0),
              "max_retries": (int, 50), "total_timeout": (float, 30.0),
              "fail_mode": (str, "raise")},
    "limits": {"max_content_bytes": (int, 64 * 1024), "max_tags": (int, 32),
               "max_tag_chars": (int, 64), "max_metadata_bytes": (int, 16 * 1024)},
    "recall": {"deadline": (float, 5.0), "concurrency": (int, 8)},
    "remote": {"url": (str, ""), "token": (str, "")},
    "backup": {"directory": (str, ""), "every_hours": (float, 0.0), "keep": (int, 7)},
    "metrics": {"enabled": (bool, False), "host": (str, "127.0.0.1"), "port": (int, 9464)},
}
SECRET_KEYS = {("server", "token"), ("remote", "token")}
# Keys whose value must be one of a few words (checked on load, naming the key).
CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "embedder"): EMBEDDERS,
    ("", "log_level"): ("debug", "info", "warning", "error"),
    ("", "log_format"): ("logfmt", "json"),
}
ALIASES = {"TRIOMEM_TOKEN": ("server", "token")}  # older names still honoured
_URL_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+(@)")


def mask_url(text: str) -> str:
    """``text`` with any password in a URL (``scheme://user:secret@host``) replaced by stars."""
    return _URL_PASSWORD.sub(r"\1********\2", text)


def default_config_path(environ: Mapping[str, str] = os.environ) -> Path:
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "triomem" / "config.toml"


def default_db_path(environ: Mapping[str, str] = os.environ) -> str:
    data = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                        "share")
    return os.path.join(data, "triomem", "memories.db")


def _coerce(section: str, key: str, value: Any, source: str) -> Any:
    kind = SCHEMA[section][key][0]
    name = f"{section}.{key}" if section else key
    choices = CHOICES.get((section, key))
    if choices is not None:
        text = str(value).lower()
        if text not in choices:
            raise InvalidMemory(name, f"expected one of {', '.join(choices)}, got {value!r} "
                                      f"({source})")
        return text
    if kind is bool and isinstance(value, str):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind in (int, float) and isinstance(value, bool):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise InvalidMemory(name, f"expected {kind.__name__}, got {value!r} ({source})") from None


@attrs.frozen
class Settings:
    """The effective settings and where each value came from."""

    values: Mapping[str, Mapping[str, Any]]
    sources: Mapping[str, str]  # "section.key" -> "default" | "file" | "env" | "flag"
    file: Path | None

    @classmethod
    def load(cls, *, flags: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Merge defaults, the file, the environment and ``flags`` (``{"server.port": 9000}``,
        ``None`` values ignored). Raises InvalidMemory naming the bad key."""
        environ = os.environ if environ is None else environ
        values = {s: {k: d for k, (_, d) in keys.items()} for s, keys in SCHEMA.items()}
        sources = {f"{s}.{k}".lstrip("."): "default" for s, keys in SCHEMA.items() for k in keys}
        named = environ.get("TRIOMEM_CONFIG")
        path = Path(named).expanduser() if named else default_config_path(environ)
        if named and not path.is_file():
            raise InvalidMemory("TRIOMEM_CONFIG", f"{path} does not exist")
        loaded: Path | None = None
        if path.is_file():
            loaded = path
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise InvalidMemory("config", f"{path}: {exc}") from None
            for key, value in data.items():
                if isinstance(value, dict):
                    if key not in SCHEMA or not key:
                        raise InvalidMemory(key, f"unknown section [{key}] in {path}")
                    for sub, subvalue in value.items():
                        cls._set(values, sources, key, sub, subvalue, "file", path)
                else:
                    cls._set(values, sources, "", key, value, "file", path)
        for alias, (section, key) in ALIASES.items():
            if alias in environ:
                cls._set(values, sources, section, key, environ[alias], "env", None)
        for section, keys in SCHEMA.items():
            for key in keys:
                name = "_".join(p for p in ("TRIOMEM", section.upper(), key.upper()) if p)
                if name in environ:
                    cls._set(values, sources, section, key, environ[name], "env", None)
        for dotted, value in (flags or {}).items():
            if value is None:
                continue
            section, _, key = dotted.rpartition(".")
            cls._set(values, sources, section, key, value, "flag", None)
        if not values[""]["db"]:
            values[""]["db"] = default_db_path(environ)
        values[""]["db"] = os.path.expanduser(values[""]["db"])
        return cls(values, sources, loaded)

    @staticmethod
    def _set(values: dict[str, dict[str, Any]], sources: dict[str, str], section: str,
             key: str, value: Any, source: str, path: Path | None) -> None:
        if key not in SCHEMA.get(section, {}):
            where = f" in {path}" if path else ""
            name = f"{section}.{key}" if section else key
            raise InvalidMemory(name, f"unknown setting{where}")
        values[section][key] = _coerce(section, key, value, source)
        sources[f"{section}.{key}".lstrip(".")] = source

    def get(self, dotted: str) -> Any:
        """The value of ``"section.key"`` (or a top-level ``"key"``). Raises KeyError."""
        section, _, key = dotted.rpartition(".")
        return self.values[section][key]

    def given(self, dotted: str) -> bool:
        """True when ``dotted`` was set by a file, the environment or a flag (not defaulted)."""
        return self.sources[dotted] != "default"

    def engine_config(self, *, with_remote: bool = True) -> EngineConfig:
        """An EngineConfig from these settings. With ``with_remote`` (and ``remote.url`` set)
        the engine replicates to that remote (``remote.token`` authenticates); without, its
        writes wait in the durable outbox for the next engine that has the remote (the
        server). Raises InvalidMemory("config") for values the engine refuses."""
        store, retry, limits, recall = (self.values[s] for s in
                                        ("store", "retry", "limits", "recall"))
        try:
            return EngineConfig(
                embedder=self.get("embedder"), synchronous=store["synchronous"],
                busy_timeout_ms=store["busy_timeout_ms"], max_batch=store["max_batch"],
                commit_delay=store["commit_delay"],
                idle_checkpoint_after=store["idle_checkpoint_after"],
                wal_autocheckpoint_pages=store["wal_autocheckpoint_pages"],
                journal_size_limit_bytes=store["journal_size_limit_bytes"],
                retry=RetryPolicy(**retry), limits=Limits(**limits),
                recall=RecallConfig(deadline=recall["deadline"],
                                    concurrency=recall["concurrency"]),
                remote_url=(self.get("remote.url") or None) if with_remote else None,
                remote_token=(self.get("remote.token") or None) if with_remote else None,
            )
        except (TypeError, ValueError) as exc:
            raise InvalidMemory("config", str(exc)) from None

    def masked(self) -> dict[str, Any]:
        """Every effective value by dotted key, secrets (tokens, URL passwords) masked."""
        out: dict[str, Any] = {}
        for section, keys in SCHEMA.items():
            for key in keys:
                value = self.values[section][key]
                if (section, key) in SECRET_KEYS and value:
                    value = "********"
                elif isinstance(value, str):
                    value = mask_url(value)
                out[f"{section}.{key}".lstrip(".")] = value
        return out

    def show(self) -> str:
        """The effective settings as TOML, secrets masked, each line noting its source."""
        masked = self.masked()
        lines = [f"# file: {self.file or 'none'}"]
        for section, keys in SCHEMA.items():
            if section:
                lines.append(f"\n[{section}]")
            for key in keys:
                dotted = f"{section}.{key}".lstrip(".")
                value = masked[dotted]
                rendered = ("true" if value else "false") if isinstance(value, bool) else \
                    json.dumps(value) if isinstance(value, str) else repr(value)
                lines.append(f"{key} = {rendered}  # {self.sources[dotted]}")
        return "\n".join(lines) + "\n"
