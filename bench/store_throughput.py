"""Store throughput: the engine's write path against its own ceilings, side by side, one run.

Two figures (see design/performance.md):

- storage path: N concurrent in-process writers through the engine (``synchronous=FULL``,
  ``wordllama`` embedder) against the raw group-commit ceiling: the project's own schema and
  write code (``connect`` + ``bind_embedder`` + ``_apply_batch``) on one APSW connection, batches
  of 64, precomputed vectors, no actor, no trio. Target: engine >= 60% of raw.
- default path: the same load with ``minilm`` against that embedder's own batch throughput
  (``embed(batch_of_64)`` over the same texts, same process). Target: engine >= 80% of it.
  Also single-text embedding latency and texts/s.

Each engine case runs with 64, 8 and 1 writers (8-vs-1 is the scaling figure); each case runs on
a fresh file in one temporary directory, and the cases are interleaved ``--repeat`` times; the
median run (by throughput) is reported, with the same-repetition ratios beside it. The share of
the machine other processes used during each timed part is measured from /proc/stat; a case
they disturbed is run again (``--retries``) and left out of the median when a clean run exists.

    .venv/bin/python -m bench.store_throughput                  # full run, 1.5-2 minutes
    .venv/bin/python -m bench.store_throughput --wait-quiet 60  # on a shared machine
    .venv/bin/python -m bench.store_throughput --quick          # smoke run, a few seconds
    .venv/bin/python -m bench.store_throughput --json           # machine-readable output
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import numpy as np
import outcome
import trio

from bench._common import (
    CpuSample,
    Latency,
    emit,
    machine,
    make_tags,
    make_texts,
    median_by,
    progress,
    remember_in_shares,
    run_parser,
    run_settings,
    table,
    wait_for_quiet,
)
from triomem import EngineConfig, open_engine
from triomem.actors._schema import Pragmas, connect, immediate
from triomem.actors._sql_read import bind_embedder
from triomem.actors._sql_write import PutMemory
from triomem.actors._stamps import UuidV7Source
from triomem.actors._store import _apply_batch
from triomem.actors._values import DEFAULT_SPACE, DEFAULT_TYPE, content_hash
from triomem.embedders import Embedder, load_embedder

SEED = 20240611
RAW_BATCH = 64
STORAGE_TARGET = 0.60
DEFAULT_TARGET = 0.80
QUIET_SHARE = 0.05
QUIET_WINDOW_S = 0.5
# A run during which other processes used more of the machine is disturbed: with 2 cores, a
# busy neighbour slows numpy's multi-threaded BLAS (minilm) far more than its share.
BUSY_SHARE = 0.05


@attrs.frozen
class Plan:
    repeat: int
    wl_writers: int
    wl_per_writer: int
    wl_scale_writes: int  # 1 writer x this vs 8 writers x this/8
    ml_writers: int
    ml_per_writer: int
    ml_scale_writes: int
    single_texts: int  # single-text embedding latency samples
    quiet_timeout: float = 0.0  # before each case, wait up to this long for a quiet machine
    retries: int = 0  # re-runs of a case that other processes disturbed

    @classmethod
    def full(cls, repeat: int) -> Plan:
        return cls(repeat, 64, 100, 1600, 64, 16, 128, 64)

    @classmethod
    def quick(cls, repeat: int) -> Plan:
        return cls(repeat, 64, 10, 160, 64, 2, 32, 16)


@attrs.frozen
class Run:
    """One measured case. ``latency`` is per call (engine: one remember; raw: one batch commit,
    which is when each of its writes is acknowledged; embedder: one embed call)."""

    path: str
    case: str
    writers: int | None
    items: int
    wall_s: float
    latency: Latency
    commits: int | None = None
    embed_calls: int | None = None
    other_cpu: float | None = None  # share of the machine other processes used meanwhile
    rep: int = 0  # which repetition

    @property
    def per_s(self) -> float:
        return self.items / self.wall_s

    def to_json(self) -> dict[str, Any]:
        return {**attrs.asdict(self), "per_s": self.per_s}


# -- measurements ------------------------------------------------------------------------------


@contextlib.contextmanager
def _fresh(directory: str, name: str) -> Iterator[str]:
    path = os.path.join(directory, name)
    try:
        yield path
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)


def raw_ceiling(directory: str, name: str, embedder: Embedder, texts: Sequence[str],
                tags: Sequence[tuple[str, ...]], vectors: np.ndarray[Any, Any]) -> Run:
    """The project's schema and write code at batches of RAW_BATCH, no actor, FULL sync."""
    requests = [
        PutMemory(space=DEFAULT_SPACE, content=t, content_hash=content_hash(t),
                  type=DEFAULT_TYPE, tags=tg, metadata_json="{}",
                  vector=np.ascontiguousarray(v, dtype="<f4").tobytes())
        for t, tg, v in zip(texts, tags, vectors, strict=True)
    ]
    warm = _put(f"warm-up memory for {name}, not part of the measured load.", vectors[0])
    with _fresh(directory, name) as path:
        conn = connect(path, Pragmas(synchronous="FULL"))
        try:
            with immediate(conn):
                bind_embedder(conn, embedder.model_id, embedder.dim)
            ids = UuidV7Source()
            _apply_batch(conn, [warm], embedder=embedder.model_id, ids=ids)
            batch_times: list[float] = []
            created = 0
            cpu = CpuSample.now()
            start = time.perf_counter()
            for i in range(0, len(requests), RAW_BATCH):
                t0 = time.perf_counter()
                results = _apply_batch(conn, list(requests[i:i + RAW_BATCH]),
                                       embedder=embedder.model_id, ids=ids)
                batch_times.append(time.perf_counter() - t0)
                created += sum(isinstance(r, outcome.Value) and r.value.created
                               for r in results)
            wall = time.perf_counter() - start
            other = cpu.other_share(CpuSample.now())
        finally:
            conn.close()
    _check(created, len(requests), "raw ceiling")
    return Run("", f"raw APSW ceiling (batch {RAW_BATCH})", None, len(requests), wall,
               Latency.of(batch_times), commits=len(batch_times), other_cpu=other)


def _put(text: str, vector: np.ndarray[Any, Any]) -> PutMemory:
    return PutMemory(space=DEFAULT_SPACE, content=text, content_hash=content_hash(text),
                     type=DEFAULT_TYPE, tags=(), metadata_json="{}",
                     vector=np.ascontiguousarray(vector, dtype="<f4").tobytes())


def embedder_alone(embedder: Embedder, texts: Sequence[str], batch: int
                   ) -> tuple[Run, np.ndarray[Any, Any]]:
    """``embed`` over ``texts`` in batches, on this thread; returns the run and the vectors."""
    embedder.embed(list(texts[:batch]))  # warm-up: BLAS threads, tokenizer caches
    out: list[np.ndarray[Any, Any]] = []
    times: list[float] = []
    cpu = CpuSample.now()
    start = time.perf_counter()
    for i in range(0, len(texts), batch):
        t0 = time.perf_counter()
        out.append(embedder.embed(list(texts[i:i + batch])))
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    other = cpu.other_share(CpuSample.now())
    case = f"{embedder.model_id.split(':')[0]} alone, embed(batch of {batch})"
    return (Run("", case, None, len(texts), wall, Latency.of(times), embed_calls=len(times),
                other_cpu=other), np.concatenate(out))


async def engine_load(directory: str, name: str, embedder: str, texts: Sequence[str],
                      tags: Sequence[tuple[str, ...]], writers: int) -> Run:
    """``writers`` tasks, each awaiting ``engine.remember`` over its share of ``texts``."""
    per_writer = len(texts) // writers
    config = EngineConfig(embedder=embedder, synchronous="FULL")
    with _fresh(directory, name) as path:
        async with open_engine(path, config) as engine:
            await engine.remember(f"warm-up memory for {name}, not part of the measured load.")
            before = await engine.statistics()
            cpu = CpuSample.now()
            start = time.perf_counter()
            latencies, created = await remember_in_shares(engine, texts, tags, writers)
            wall = time.perf_counter() - start
            other = cpu.other_share(CpuSample.now())
            after = await engine.statistics()
    _check(created, per_writer * writers, name)
    return Run("", f"engine, {embedder}", writers, per_writer * writers, wall,
               Latency.of(latencies), commits=after.store.batches - before.store.batches,
               embed_calls=after.embed.batches - before.embed.batches, other_cpu=other)


def single_text(embedder: Embedder, texts: Sequence[str]) -> Run:
    embedder.embed([texts[0]])
    times: list[float] = []
    cpu = CpuSample.now()
    start = time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        embedder.embed([text])
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    other = cpu.other_share(CpuSample.now())
    case = f"{embedder.model_id.split(':')[0]} alone, embed(1 text)"
    return Run("", case, None, len(texts), wall, Latency.of(times), embed_calls=len(texts),
               other_cpu=other)


def _check(created: int, expected: int, what: str) -> None:
    if created != expected:
        raise RuntimeError(f"{what}: {created} of {expected} writes created a memory")


# -- the run -----------------------------------------------------------------------------------


@attrs.define
class Results:
    runs: dict[str, list[Run]] = attrs.field(factory=dict)

    def add(self, key: str, path: str, rep: int, run: Run) -> None:
        self.runs.setdefault(key, []).append(attrs.evolve(run, path=path, rep=rep))
        progress(f"  {key:<14} {run.items:>6} in {run.wall_s:7.3f} s = {run.per_s:9.1f}/s  "
                 f"p50 {run.latency.p50:8.2f} ms  p99 {run.latency.p99:8.2f} ms  "
                 f"other processes {_share(run.other_cpu)}")

    def paired(self, a: str, b: str) -> list[float]:
        """Per repetition, throughput of ``a`` over ``b`` (each case's last attempt in that
        repetition): two figures measured close together, under the same conditions."""
        last_a = {r.rep: r for r in self.runs[a]}
        last_b = {r.rep: r for r in self.runs[b]}
        return [last_a[i].per_s / last_b[i].per_s for i in sorted(last_a) if i in last_b]

    def median(self, key: str) -> Run:
        """The median run by throughput, among the runs no other process disturbed (more than
        BUSY_SHARE of the machine) if there are any."""
        runs = [r for r in self.runs[key] if not _disturbed(r)] or self.runs[key]
        return runs[median_by([r.per_s for r in runs])]


def _disturbed(run: Run) -> bool:
    return run.other_cpu is not None and run.other_cpu > BUSY_SHARE


def measure(plan: Plan, directory: str) -> Results:
    results = Results()
    wl_n = plan.wl_writers * plan.wl_per_writer
    ml_n = plan.ml_writers * plan.ml_per_writer
    texts = make_texts(max(wl_n, ml_n, plan.wl_scale_writes, plan.ml_scale_writes)
                       + plan.single_texts, SEED)
    tags = make_tags(len(texts), SEED)
    progress("loading embedders for the stand-alone figures")
    wordllama = load_embedder("wordllama")
    minilm = load_embedder("minilm")

    def settle() -> None:
        gc.collect()
        if plan.quiet_timeout > 0:
            share = wait_for_quiet(QUIET_SHARE, QUIET_WINDOW_S, plan.quiet_timeout)
            if share is not None and share > QUIET_SHARE:
                progress(f"  (machine still busy: other processes at {share:.0%})")

    rep = 0  # the repetition under way; the loop below advances it

    def case(key: str, path: str, fn: Callable[[], Run]) -> None:
        """Run one case; re-run it (up to plan.retries times) while other processes disturb
        it. Every attempt is kept; the median prefers undisturbed ones."""
        for attempt in range(plan.retries + 1):
            settle()
            run = fn()
            results.add(key, path, rep, run)
            if not _disturbed(run):
                break
            if attempt < plan.retries:
                progress(f"  ({key} disturbed by other processes; running it again)")

    def engine(key: str, path: str, name: str, n: int, writers: int) -> None:
        case(key, path, lambda: trio.run(engine_load, directory, f"{key}.db", name,
                                         texts[:n], tags[:n], writers))

    vectors: dict[str, np.ndarray[Any, Any]] = {}

    def alone(key: str, embedder: Embedder, n: int) -> Run:
        run, vectors[key] = embedder_alone(embedder, texts[:n], RAW_BATCH)
        return run

    storage, default = "storage", "default"
    for rep in range(plan.repeat):
        progress(f"repetition {rep + 1}/{plan.repeat}: storage path (wordllama)")
        case("wl_alone", storage, lambda: alone("wl", wordllama, wl_n))
        case("wl_raw", storage, lambda: raw_ceiling(
            directory, "wl-raw.db", wordllama, texts[:wl_n], tags[:wl_n], vectors["wl"]))
        engine("wl_engine", storage, "wordllama", wl_n, plan.wl_writers)
        engine("wl_8", storage, "wordllama", plan.wl_scale_writes, 8)
        engine("wl_1", storage, "wordllama", plan.wl_scale_writes, 1)

        progress(f"repetition {rep + 1}/{plan.repeat}: default path (minilm)")
        case("ml_alone", default, lambda: alone("ml", minilm, ml_n))
        case("ml_single", default, lambda: single_text(minilm, texts[-plan.single_texts:]))
        case("ml_raw", default, lambda: raw_ceiling(
            directory, "ml-raw.db", minilm, texts[:ml_n], tags[:ml_n], vectors["ml"]))
        engine("ml_engine", default, "minilm", ml_n, plan.ml_writers)
        engine("ml_8", default, "minilm", plan.ml_scale_writes, 8)
        engine("ml_1", default, "minilm", plan.ml_scale_writes, 1)
    return results


ROW_ORDER = ("wl_raw", "wl_alone", "wl_engine", "wl_8", "wl_1",
             "ml_alone", "ml_single", "ml_raw", "ml_engine", "ml_8", "ml_1")


def summary(results: Results, plan: Plan) -> dict[str, Any]:
    med = {key: results.median(key) for key in ROW_ORDER}

    def ratio(a: str, b: str) -> float:
        return med[a].per_s / med[b].per_s

    return {
        "plan": attrs.asdict(plan),
        "median": {key: run.to_json() for key, run in med.items()},
        "runs": {key: [{**r.to_json(), "disturbed": _disturbed(r)} for r in runs]
                 for key, runs in results.runs.items()},
        "ratios": {
            "storage_engine_vs_raw": ratio("wl_engine", "wl_raw"),
            "storage_target": STORAGE_TARGET,
            "default_engine_vs_embedder": ratio("ml_engine", "ml_alone"),
            "default_target": DEFAULT_TARGET,
            "default_engine_vs_best_alone": med["ml_engine"].per_s / max(
                med["ml_alone"].per_s, med["ml_single"].per_s),
            "default_engine_vs_raw": ratio("ml_engine", "ml_raw"),
            "storage_per_repetition": results.paired("wl_engine", "wl_raw"),
            "default_per_repetition": results.paired("ml_engine", "ml_alone"),
            "wordllama_8_vs_1": ratio("wl_8", "wl_1"),
            "minilm_8_vs_1": ratio("ml_8", "ml_1"),
            "wordllama_64_vs_1": ratio("wl_engine", "wl_1"),
            "minilm_64_vs_1": ratio("ml_engine", "ml_1"),
        },
    }


def render(report: dict[str, Any]) -> str:
    env, med, ratios = report["machine"], report["median"], report["ratios"]
    rows = []
    for key in ROW_ORDER:
        r = med[key]
        per_commit = (f"{r['items'] / r['commits']:.1f}" if r["commits"] and
                      r["case"].startswith("engine") else "-")
        per_embed = (f"{r['items'] / r['embed_calls']:.1f}" if r["embed_calls"] and
                     r["case"].startswith("engine") else "-")
        rows.append([
            r["path"], r["case"], "-" if r["writers"] is None else str(r["writers"]),
            str(r["items"]), f"{r['per_s']:,.0f}", f"{r['latency']['p50']:.2f}",
            f"{r['latency']['p99']:.2f}", per_commit, per_embed, _share(r["other_cpu"]),
        ])
    out = [
        f"store throughput: {env['date']}, {env['cpus']} cores ({env['cpu_model']}), "
        f"Python {env['python']}, SQLite {env['sqlite']}, synchronous=FULL, "
        f"median of {report['plan']['repeat']} run(s)",
        "",
        table(["path", "case", "writers", "items", "items/s", "p50 ms", "p99 ms",
               "writes/commit", "texts/embed", "other cpu"], rows),
        "",
        "latency: engine = one remember() call; raw = one batch commit (when its writes are "
        "acknowledged); alone = one embed() call",
        "other cpu: share of the machine's cores used by other processes during the timed part",
        "",
    ]

    def verdict(value: float, target: float) -> str:
        return "met" if value >= target else "MISSED"

    s, d = ratios["storage_engine_vs_raw"], ratios["default_engine_vs_embedder"]
    single = med["ml_single"]
    out += [
        f"storage path: engine/raw ceiling          = {s:6.1%}  (target >= "
        f"{ratios['storage_target']:.0%}: {verdict(s, ratios['storage_target'])})",
        f"default path: engine/minilm alone         = {d:6.1%}  (target >= "
        f"{ratios['default_target']:.0%}: {verdict(d, ratios['default_target'])})",
        "  per repetition (same-repetition pairs): storage "
        + ", ".join(f"{v:.1%}" for v in ratios["storage_per_repetition"]) + "; default "
        + ", ".join(f"{v:.1%}" for v in ratios["default_per_repetition"]),
        f"default path: engine/best minilm alone    = "
        f"{ratios['default_engine_vs_best_alone']:6.1%}  (best of embed(64) and embed(1))",
        f"default path: engine/raw ceiling (384-d)  = {ratios['default_engine_vs_raw']:6.1%}",
        f"scaling 8 vs 1 writer:  wordllama {ratios['wordllama_8_vs_1']:.2f}x, "
        f"minilm {ratios['minilm_8_vs_1']:.2f}x",
        f"scaling 64 vs 1 writer: wordllama {ratios['wordllama_64_vs_1']:.2f}x, "
        f"minilm {ratios['minilm_64_vs_1']:.2f}x",
        f"minilm single text: p50 {single['latency']['p50']:.2f} ms, p99 "
        f"{single['latency']['p99']:.2f} ms, {single['per_s']:.0f} texts/s; batched: "
        f"{med['ml_alone']['per_s']:.0f} texts/s ({env['cpus']} cores)",
    ]
    busy = [k for k in ROW_ORDER if (med[k]["other_cpu"] or 0.0) > BUSY_SHARE]
    if busy:
        out += ["", f"WARNING: other processes used more than {BUSY_SHARE:.0%} of the machine "
                f"during: {', '.join(busy)}; these figures are not from a quiet machine."]
    if report["plan"]["repeat"] > 1:
        out += ["", "items/s of every run (* = disturbed by other processes, not used for the "
                "median unless all were):"]
        out += [f"  {key:<10} " + " ".join(f"{r['per_s']:.0f}" + ("*" if r["disturbed"] else "")
                                           for r in runs)
                for key, runs in report["runs"].items()]
    return "\n".join(out)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = run_parser(__doc__, quick="small smoke run (a few seconds)",
                        repeat="interleaved repetitions", retries=2,
                        quiet_share=QUIET_SHARE, busy_share=BUSY_SHARE)
    run = run_settings(parser, parser.parse_args(argv))
    plan = attrs.evolve(Plan.quick(run.repeat) if run.quick else Plan.full(run.repeat),
                        quiet_timeout=run.quiet_timeout, retries=run.retries)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="triomem-bench-", dir=run.directory) as directory:
        results = measure(plan, directory)
    report = {"machine": machine(), **summary(results, plan),
              "elapsed_s": time.perf_counter() - started}
    emit(report, run.as_json, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
