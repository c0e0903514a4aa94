"""Recall under a 200 ms deadline against a leg that never answers.

    .venv/bin/python -m bench.deadline [--recalls 200] [--json]

The engine runs with the production thread executor and a real clock; an extra recall leg
never answers. Every recall must come back by its deadline with a partial answer (the local
legs). Target: p99 answer time <= 220 ms.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import attrs
import trio

from bench._common import Latency, machine, make_texts, table
from triomem import EngineConfig, LegQuery, RecallConfig, open_engine


@attrs.define(eq=False)
class NeverLeg:
    name: str = "never"
    needs_vector: bool = True
    background: bool = False

    async def search(self, query: LegQuery) -> list[tuple[str, float]]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


async def run(recalls: int, deadline: float) -> dict[str, object]:
    texts = make_texts(2000, seed=11)
    config = EngineConfig(embedder="wordllama", extra_legs=(NeverLeg(),),
                          recall=RecallConfig(deadline=deadline))
    with tempfile.TemporaryDirectory() as tmp:
        async with open_engine(Path(tmp) / "d.db", config) as engine:
            async with trio.open_nursery() as nursery:
                for i in range(0, len(texts), 100):
                    for text in texts[i:i + 100]:
                        nursery.start_soon(engine.remember, text)
            times, partial, hits = [], 0, 0
            for i in range(recalls):
                start = time.perf_counter()
                result = await engine.recall(texts[(i * 7) % len(texts)][:40])
                times.append(time.perf_counter() - start)
                partial += result.partial
                hits += bool(result.hits)
    latency = Latency.of(times)
    return {"recalls": recalls, "deadline_ms": deadline * 1000, "partial": partial,
            "with_hits": hits, "p50_ms": latency.p50, "p99_ms": latency.p99,
            "max_ms": max(times) * 1000, "target_p99_ms": deadline * 1000 * 1.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--recalls", type=int, default=200)
    parser.add_argument("--deadline", type=float, default=0.2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = trio.run(run, args.recalls, args.deadline)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {machine()}")
    print(table(["recalls", "partial", "with hits", "p50 ms", "p99 ms", "max ms", "target"],
                [[str(result["recalls"]), str(result["partial"]), str(result["with_hits"]),
                  f"{result['p50_ms']:.1f}", f"{result['p99_ms']:.1f}",
                  f"{result['max_ms']:.1f}", f"p99 <= {result['target_p99_ms']:.0f}"]]))
    ok = float(result["p99_ms"]) <= float(result["target_p99_ms"])  # type: ignore[arg-type]
    print("ok" if ok else "MISSED")


if __name__ == "__main__":
    main()
