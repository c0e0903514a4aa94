"""The reliability suite's long variants, and one table of what they measured.

    .venv/bin/python -m bench.reliability_report [--short] [--markdown] [--figures FILE]
    .venv/bin/python -m bench.reliability_report --render --figures FILE [--markdown]

Runs ``pytest tests/reliability --runslow`` (every test: the long variants, and the CI ones
for the scenarios that have no long variant); each test appends one JSON line of figures to
the file named by ``TRIOMEM_RELIABILITY_FIGURES`` (``tests/reliability/_figures.py``). Then
prints one table: test, inputs, faults injected, writes acknowledged, writes lost, crashes,
peak RSS, wall time and pytest's outcome. ``--short`` runs the CI variants only (about a
minute and a half). ``--figures FILE`` keeps the figures (and pytest's JUnit report beside
them, ``FILE.junit.xml``); ``--render`` prints the table again from those files without
running anything. Exits 1 if a test failed.

Peak RSS: for the tests that serve in-process (many clients, hostile input, cancel storm over
the wire) it is the pytest process's VmHWM over the test (reset at its start through
``/proc/self/clear_refs``), server and clients together, with in brackets how far it rose
above the process's RSS at the start of the test (what the test itself cost; the rest is what
earlier tests left allocated). For the server crash test it is the largest ``triomem serve``
process. A dash means the test does not measure it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from bench._common import machine, table

ROOT = Path(__file__).resolve().parents[1]
FIGURES_ENV = "TRIOMEM_RELIABILITY_FIGURES"
COLUMNS = ["test", "inputs", "faults injected", "writes acked", "writes lost", "crashes",
           "peak RSS MiB (test's own)", "wall s", "outcome"]


def run_suite(short: bool, figures: Path, junit: Path, extra: list[str]) -> int:
    command = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider",
               f"--junit-xml={junit}", *([] if short else ["--runslow"]), *extra]
    env = {**os.environ, FIGURES_ENV: str(figures)}
    print("$ " + " ".join(command), file=sys.stderr, flush=True)
    # pytest's own output goes to stderr: stdout is the table.
    return subprocess.run(command, cwd=ROOT, env=env, check=False, stdout=sys.stderr
                          ).returncode


def outcomes(junit: Path) -> dict[str, tuple[str, float]]:
    """pytest node id -> (outcome, seconds), from the JUnit report."""
    found: dict[str, tuple[str, float]] = {}
    if not junit.exists():
        return found
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        node = f"{module}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "FAILED"
            elif child.tag == "skipped":
                outcome = "xfail" if child.get("type") == "pytest.xfail" else "skipped"
        found[node] = (outcome, float(case.get("time", 0)))
    return found


def _rss(figures: dict[str, Any]) -> str:
    peak, growth = figures.get("peak_rss_mb"), figures.get("rss_growth_mb")
    if peak is None:
        return "-"
    return f"{peak:.0f}" if growth is None else f"{peak:.0f} (+{max(growth, 0.0):.0f})"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def rows(figures: list[dict[str, Any]], results: dict[str, tuple[str, float]]
         ) -> list[list[str]]:
    out: list[list[str]] = []
    seen: set[str] = set()
    for f in figures:
        outcome, seconds = results.get(f.get("node", ""), ("?", f.get("wall_s", 0.0)))
        seen.add(f.get("node", ""))
        name = f["test"] + (" [long]" if f.get("variant") == "long" else "")
        out.append([name, _cell(f.get("inputs")), _cell(f.get("faults")),
                    _cell(f.get("acknowledged")), _cell(f.get("lost")), _cell(f.get("crashes")),
                    _rss(f), f"{seconds:.1f}", outcome])
    # Tests without figures of their own still get a line (parametrized cases together):
    # their outcome belongs in the table.
    grouped: dict[str, list[tuple[str, float]]] = {}
    for node, (outcome, seconds) in sorted(results.items()):
        if node not in seen and outcome != "skipped":
            grouped.setdefault(node.split("::", 1)[1].split("[", 1)[0], []).append(
                (outcome, seconds))
    for name, cases in grouped.items():
        outcomes_ = sorted({outcome for outcome, _ in cases})
        label = f"{name} ({len(cases)} cases)" if len(cases) > 1 else name
        out.append([label, "-", "-", "-", "-", "-", "-",
                    f"{sum(seconds for _, seconds in cases):.1f}", ", ".join(outcomes_)])
    return out


def markdown(headers: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="the CI variants only")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table")
    parser.add_argument("--figures", type=Path, default=None,
                        help="keep the raw JSON lines here (default: a temporary file)")
    parser.add_argument("--render", action="store_true",
                        help="print the table of an earlier run kept with --figures")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args()
    if args.render and args.figures is None:
        parser.error("--render needs --figures")
    with tempfile.TemporaryDirectory() as tmp:
        figures_path = args.figures or Path(tmp) / "figures.jsonl"
        junit = figures_path.with_name(figures_path.name + ".junit.xml")
        run_file = figures_path.with_name(figures_path.name + ".run.json")
        code = 0
        if args.render:
            run = json.loads(run_file.read_text())
        else:
            figures_path.unlink(missing_ok=True)
            run = {**machine(), "short": args.short}
            started = time.perf_counter()
            code = run_suite(args.short, figures_path, junit, args.pytest_args)
            run["minutes"] = round((time.perf_counter() - started) / 60, 1)
            run_file.write_text(json.dumps(run))
        figures = [json.loads(line) for line in figures_path.read_text().splitlines()
                   if line.strip()] if figures_path.exists() else []
        results = outcomes(junit)
    body = rows(figures, results)
    print(f"\nreliability suite, {'CI variants' if run['short'] else 'long variants'}: "
          f"{run['date']}, code {run['code']}, {run['cpus']} CPUs ({run['cpu_model']}), "
          f"Python {run['python']}, SQLite {run['sqlite']}; {run['minutes']} min in all\n")
    print(markdown(COLUMNS, body) if args.markdown else table(COLUMNS, body))
    details = {f["test"] + (" [long]" if f.get("variant") == "long" else ""):
               {k: v for k, v in f.items() if k not in ("test", "node", "variant")}
               for f in figures}
    print("\ndetails:")
    for name, values in details.items():
        print(f"- {name}: {json.dumps(values, sort_keys=True)}")
    failed = any(outcome == "FAILED" for outcome, _ in results.values())
    sys.exit(1 if code or failed else 0)


if __name__ == "__main__":
    main()
