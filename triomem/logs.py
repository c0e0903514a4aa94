"""Structured logs on stderr: one line per record, as logfmt (default) or JSON.

    ts=2025-06-01T12:30:00.123Z level=info logger=triomem.serve msg="database closed"
    {"ts": "2025-06-01T12:30:00.123Z", "level": "info", "logger": "triomem.serve", ...}

Fields passed with ``logger.info("...", extra={"path": p})`` follow ``msg``; an exception's
traceback goes in ``exc``. stdout is never written (it carries command output and, for
``triomem stdio``, protocol messages).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
from typing import Any, TextIO

# What every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message",
                                                                              "asctime"}
_BARE = re.compile(r"[A-Za-z0-9_./:@+-]+")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = value
    if record.exc_info:
        fields["exc"] = logging.Formatter().formatException(record.exc_info)
    return fields


def _logfmt_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and _BARE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class LogfmtFormatter(logging.Formatter):
    """``key=value`` pairs, values quoted when they hold spaces or quotes."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str, ensure_ascii=False)


def configure(level: str, fmt: str = "logfmt", stream: TextIO | None = None) -> None:
    """Send every ``triomem`` (and library) record at ``level`` or above to ``stream``
    (stderr), formatted as ``fmt`` (``logfmt`` or ``json``). Replaces earlier handlers, so
    calling it again is safe. Raises ValueError for an unknown level or format."""
    formatters: dict[str, type[logging.Formatter]] = {"logfmt": LogfmtFormatter,
                                                      "json": JsonFormatter}
    if fmt not in formatters:
        raise ValueError(f"unknown log format {fmt!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatters[fmt]())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
