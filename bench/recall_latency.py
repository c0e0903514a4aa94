"""Hybrid recall latency at 10k and 100k memories against a numpy brute-force scan.

    .venv/bin/python -m bench.recall_latency [--sizes 10000,100000] [--queries 200] [--json]

Both sides run in this process on the same vectors (the wordllama embedder, so building 100k
memories takes seconds, not an hour): the engine's full hybrid recall (embed the query, vector
index + FTS5, fuse, fetch the winners) and a bare numpy scan (embed the query, one matrix-vector
product, top 10). Recall@10 compares the engine's vector leg with the exact numpy top 10.
Targets (recall issue) at 100k: hybrid p50 <= 2x numpy brute force, recall@10 >= 0.95.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import trio

from bench._common import Latency, machine, make_tags, make_texts, table
from triomem import EngineConfig, open_engine
from triomem.embedders import load_embedder


async def measure(size: int, queries: int) -> dict[str, float]:
    texts = make_texts(size, seed=size)
    tags = make_tags(size, seed=size)
    asks = make_texts(queries, seed=size + 1)
    embedder = load_embedder("wordllama")
    matrix = np.concatenate([embedder.embed(texts[i:i + 4096])
                             for i in range(0, size, 4096)])
    with tempfile.TemporaryDirectory() as tmp:
        config = EngineConfig(embedder=embedder, synchronous="NORMAL")
        async with open_engine(Path(tmp) / "r.db", config) as engine:
            build = time.perf_counter()

            async def store(i: int) -> None:
                await engine.remember(texts[i], tags=tags[i], vector=matrix[i])

            for start in range(0, size, 512):
                async with trio.open_nursery() as nursery:
                    for i in range(start, min(start + 512, size)):
                        nursery.start_soon(store, i)
            build = time.perf_counter() - build
            await engine.recall("warm up the index")  # loads the matrix once
            hybrid, vector_ids = [], []
            for ask in asks:
                began = time.perf_counter()
                await engine.recall(ask, limit=10)
                hybrid.append(time.perf_counter() - began)
            for ask in asks:
                result = await engine.recall(ask, limit=10, legs=["vector"])
                vector_ids.append({h.memory.content for h in result.hits})
    brute, overlap = [], []
    for ask, got in zip(asks, vector_ids, strict=True):
        began = time.perf_counter()
        query = embedder.embed([ask])[0]
        scores = matrix @ query
        top = np.argpartition(-scores, 10)[:10]
        top = top[np.argsort(-scores[top])]
        brute.append(time.perf_counter() - began)
        overlap.append(len({texts[i] for i in top} & got) / 10)
    h, b = Latency.of(hybrid), Latency.of(brute)
    return {"size": size, "build_s": build, "hybrid_p50_ms": h.p50, "hybrid_p99_ms": h.p99,
            "numpy_p50_ms": b.p50, "numpy_p99_ms": b.p99, "ratio_p50": h.p50 / b.p50,
            "recall_at_10": float(np.mean(overlap))}


async def run(sizes: list[int], queries: int) -> list[dict[str, float]]:
    return [await measure(size, queries) for size in sizes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = trio.run(run, [int(s) for s in args.sizes.split(",")], args.queries)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"machine: {machine()}")
    print(table(
        ["memories", "build s", "hybrid p50", "hybrid p99", "numpy p50", "numpy p99",
         "p50 ratio", "recall@10"],
        [[f"{r['size']:,.0f}", f"{r['build_s']:.1f}", f"{r['hybrid_p50_ms']:.2f} ms",
          f"{r['hybrid_p99_ms']:.2f} ms", f"{r['numpy_p50_ms']:.2f} ms",
          f"{r['numpy_p99_ms']:.2f} ms", f"{r['ratio_p50']:.2f}x",
          f"{r['recall_at_10']:.3f}"] for r in results]))
    last = results[-1]
    ok = last["ratio_p50"] <= 2.0 and last["recall_at_10"] >= 0.95
    print(f"at {last['size']:,.0f}: p50 ratio {last['ratio_p50']:.2f}x (target <= 2x), "
          f"recall@10 {last['recall_at_10']:.3f} (target >= 0.95) -> "
          f"{'ok' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
