"""Shared helpers for the benchmarks: deterministic texts, latency summaries, tables, and the
closed-loop writers that drive an engine.

The benchmarks import it for the boring parts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

MIN_ACCOUNTED_S = 0.25
MIN_CHARS = 60
MAX_CHARS = 200

_SUBJECTS = (
    "The user", "Alice", "Bob from the platform team", "The customer", "Priya",
    "The on-call engineer", "The product manager", "Marco", "The design team",
    "Our biggest client", "The intern", "Dana in finance", "The support lead", "Kenji",
    "The security reviewer", "Lena", "The data team", "The CTO", "Sam", "The QA engineer",
)
_VERBS = (
    "prefers", "asked for", "reported a problem with", "decided to use", "is blocked on",
    "wants to avoid", "mentioned", "agreed to try", "complained about", "is responsible for",
    "needs a reminder about", "approved", "is sceptical of", "suggested", "keeps forgetting",
)
_OBJECTS = (
    "dark mode in the editor", "tabs instead of spaces", "weekly summaries by email",
    "the Postgres 16 upgrade", "the new billing dashboard", "short stand-up meetings",
    "the flaky integration tests", "SSO through Okta", "the Kubernetes migration",
    "metric units in every report", "the quarterly roadmap review", "the staging database",
    "pair programming on Fridays", "the onboarding checklist", "Rust for the parser rewrite",
    "the rate limiter on the public API", "vegetarian options at the offsite",
    "the backup retention policy", "the mobile release train", "async code reviews",
    "the customer churn analysis", "the on-call rotation", "Grafana alerts on disk usage",
    "the API deprecation notice", "the search relevance tuning",
)
_TAILS = (
    "before the Q3 planning meeting", "because the old setup kept timing out",
    "for the Berlin office", "until the migration is finished", "after last week's incident",
    "as long as it does not slow down deploys", "for all new projects",
    "since the budget review", "when working late", "in the shared workspace",
    "and wants a follow-up next sprint", "but only for internal tools",
    "according to the retro notes", "and said it is a high priority", "",
)
_TAGS = ("preference", "project", "bug", "decision", "person", "infra", "meeting", "todo")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")


def make_texts(n: int, seed: int) -> list[str]:
    """``n`` distinct, realistic memory texts of 60-200 characters, the same for a seed."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    while len(seen) < n:
        parts = [rng.choice(_SUBJECTS), rng.choice(_VERBS), rng.choice(_OBJECTS)]
        tail = rng.choice(_TAILS)
        if tail:
            parts.append(tail)
        text = " ".join(parts)
        roll = rng.random()
        if roll < 0.35:
            day = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(730))
            text += f" (noted {day.isoformat()})"
        elif roll < 0.6:
            text += f"; see ticket {rng.choice(('OPS', 'WEB', 'DATA', 'SEC'))}-{rng.randrange(10000)}"
        elif roll < 0.8:
            text += f", confirmed on {rng.choice(_WEEKDAYS)} at {rng.randrange(8, 19)}:" \
                    f"{rng.choice(('00', '15', '30', '45'))}"
        text += "."
        if MIN_CHARS <= len(text) <= MAX_CHARS:
            seen[text] = None
    return list(seen)


def make_tags(n: int, seed: int) -> list[tuple[str, ...]]:
    """0-3 distinct tags per text, deterministic."""
    rng = random.Random(seed + 1)
    return [tuple(rng.sample(_TAGS, rng.randrange(4))) for _ in range(n)]


@attrs.frozen
class Latency:
    """Milliseconds."""

    p50: float
    p99: float
    mean: float
    count: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if not seconds:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        ms = sorted(s * 1000.0 for s in seconds)
        return cls(percentile(ms, 50), percentile(ms, 99), statistics.fmean(ms), len(ms))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted input."""
    if not sorted_values:
        return float("nan")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_by(runs: Sequence[float]) -> int:
    """Index of the median value (the lower median for an even count)."""
    order = sorted(range(len(runs)), key=lambda i: runs[i])
    return order[(len(order) - 1) // 2]


def machine() -> dict[str, str]:
    import apsw
    import numpy as np

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "code": code_version(),
        "cpus": str(cpu_count()),
        "load_average": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "sqlite": apsw.sqlite_lib_version(),
        "apsw": apsw.apsw_version(),
        "numpy": np.__version__,
    }


def code_version() -> str:
    """The commit of the triomem being measured, ``+dirty`` if its tracked files changed."""
    import triomem

    where = os.path.dirname(os.path.dirname(os.path.abspath(triomem.__file__)))
    try:
        head = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", where, "status", "--porcelain",
                                "--untracked-files=no", "--", "triomem"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{where} (not a git checkout)"
    return head + ("+dirty" if dirty else "")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain aligned text table: first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        out = [str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i])
               for i, c in enumerate(cells)]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


@attrs.frozen
class CpuSample:
    """Wall clock, CPU seconds used by the whole machine and by this process, at one moment.

    The difference between two samples tells how much of the machine *other* processes used
    in between: a benchmark on a shared 2-core box should say when it was not alone.
    """

    wall: float
    machine_busy: float
    own: float

    @classmethod
    def now(cls) -> CpuSample:
        times = os.times()
        return cls(time.perf_counter(), _machine_busy(), times.user + times.system)

    def other_share(self, later: CpuSample) -> float | None:
        """Fraction of all cores' time used by other processes (and kernel threads, which
        includes some of this process's own I/O); None when the interval is too short for the
        kernel's 10 ms accounting ticks to say anything."""
        wall = later.wall - self.wall
        if wall < MIN_ACCOUNTED_S:
            return None
        other = (later.machine_busy - self.machine_busy) - (later.own - self.own)
        return max(0.0, other / (wall * cpu_count()))


def wait_for_quiet(max_other: float, window: float, timeout: float) -> float | None:
    """Block until other processes used at most ``max_other`` of the machine over ``window``
    seconds, or ``timeout`` passed; returns the last share seen (None if /proc is missing)."""
    deadline = time.perf_counter() + timeout
    while True:
        before = CpuSample.now()
        time.sleep(window)
        share = before.other_share(CpuSample.now())
        if share is None or share <= max_other or time.perf_counter() >= deadline:
            return share


def _machine_busy() -> float:
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already
    # included in user and nice
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(report: dict[str, Any], as_json: bool, render: Callable[[dict[str, Any]], str]) -> None:
    """Print a benchmark's report: JSON for machines, else its table and the total time."""
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(render(report))
        print(f"\n(total {report['elapsed_s']:.0f} s)")


@attrs.frozen
class RunSettings:
    """How a side-by-side benchmark repeats and guards its cases (see ``run_parser``)."""

    quick: bool
    as_json: bool
    repeat: int
    quiet_timeout: float
    retries: int
    directory: str | None


def run_parser(doc: str | None, *, quick: str, repeat: str, retries: int, quiet_share: float,
               busy_share: float) -> argparse.ArgumentParser:
    """The options every side-by-side benchmark takes: --quick, --json, --repeat,
    --wait-quiet, --retries and --dir. Add a benchmark's own options to what it returns."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0] if doc else None)
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the tables")
    parser.add_argument("--repeat", type=int, default=None,
                        help=f"{repeat}; the median is reported (default 3, 1 with --quick)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each case, wait up to SECONDS for other processes to use "
                             f"under {quiet_share:.0%} of the machine (default: do not wait)"
                        .replace("%", "%%"))
    parser.add_argument("--retries", type=int, default=None,
                        help="re-run a case up to this many times while other processes use "
                             f"more than {busy_share:.0%} of the machine during it (default "
                             f"{retries}, 0 with --quick)".replace("%", "%%"))
    parser.add_argument("--dir", default=None,
                        help="where the temporary database files go (default: the system "
                             "temporary directory)")
    parser.set_defaults(default_retries=retries)
    return parser


def run_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> RunSettings:
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    retries = args.retries if args.retries is not None else \
        (0 if args.quick else args.default_retries)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return RunSettings(args.quick, args.json, repeat, max(0.0, args.wait_quiet),
                       max(0, retries), args.dir)


async def remember_in_shares(engine: Any, texts: Sequence[str],
                             tags: Sequence[tuple[str, ...]], writers: int
                             ) -> tuple[list[float], int]:
    """``writers`` tasks, each awaiting ``engine.remember`` over its share of ``texts`` one
    at a time; returns each call's latency (seconds) and how many memories were created."""
    per_writer = len(texts) // writers
    latencies: list[float] = []
    created = 0

    async def writer(index: int) -> None:
        nonlocal created
        lo = index * per_writer
        for text, tg in zip(texts[lo:lo + per_writer], tags[lo:lo + per_writer], strict=True):
            t0 = time.perf_counter()
            result = await engine.remember(text, tags=tg)
            latencies.append(time.perf_counter() - t0)
            created += result.created

    async with trio.open_nursery() as nursery:
        for i in range(writers):
            nursery.start_soon(writer, i)
    return latencies, created
