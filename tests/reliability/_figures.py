"""Figures the reliability tests report, and the resource readings behind them.

Each test that has figures calls ``emit`` once; when ``TRIOMEM_RELIABILITY_FIGURES`` names a
file, one JSON line is appended to it (``bench/reliability_report.py`` collects them into its
table), otherwise nothing happens. Keys the report knows: ``inputs``, ``faults``,
``acknowledged``, ``lost``, ``crashes``, ``peak_rss_mb``; any others are kept as details.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import time
from collections.abc import Iterator
from typing import Any

FIGURES_ENV = "TRIOMEM_RELIABILITY_FIGURES"


def emit(test: str, **figures: Any) -> None:
    """Record this test's figures under a readable name (and pytest's node id)."""
    path = os.environ.get(FIGURES_ENV)
    if not path:
        return
    node = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"test": test, "node": node, **figures}) + "\n")


def _status_kb(pid: int | str, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """The peak resident set size (VmHWM) of a process, in MiB; None when unreadable."""
    kb = _status_kb(pid, "VmHWM")
    if kb is None and pid == "self":
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    return None if kb is None else round(kb / 1024, 1)


def rss_mb(pid: int | str = "self") -> float | None:
    kb = _status_kb(pid, "VmRSS")
    return None if kb is None else round(kb / 1024, 1)


def reset_peak_rss() -> bool:
    """Restart this process's VmHWM from its current RSS (Linux >= 4.0), so a test measures
    its own peak rather than the pytest run's. False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def measured() -> Iterator[dict[str, Any]]:
    """Reset the peak RSS, then fill the dict with ``peak_rss_mb``, ``rss_growth_mb`` (peak
    minus the RSS at the start) and ``wall_s`` when the block ends."""
    reset_peak_rss()
    start_rss = rss_mb() or 0.0
    started = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        yield out
    finally:
        peak = peak_rss_mb()
        out["peak_rss_mb"] = peak
        out["rss_growth_mb"] = None if peak is None else round(peak - start_rss, 1)
        out["wall_s"] = round(time.perf_counter() - started, 2)


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (up to the hard limit); return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
