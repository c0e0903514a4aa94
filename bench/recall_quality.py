"""Retrieval quality of vector-only, FTS5-only and hybrid recall on the labelled sets.

    .venv/bin/python -m bench.recall_quality [--embedder minilm] [--json]

Targets (recall issue): hybrid >= the better single leg on every set; R@5 >= 0.90 on a
paraphrase set with the default embedder. Two paraphrase sets: ``paraphrase`` (one of the three
the fusion was tuned on; its questions share almost no content word with their facts) and
``paraphrase_b`` (held out: written blind after the fusion was fixed).
"""

from __future__ import annotations

import argparse
import json

import attrs
import trio

from bench._common import machine, table
from bench._quality import SET_NAMES, evaluate
from triomem import EngineConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = trio.run(evaluate, EngineConfig(embedder=args.embedder))
    if args.json:
        print(json.dumps({n: {m: attrs.asdict(s) for m, s in modes.items()}
                          for n, modes in results.items()}, indent=2))
        return
    print(f"machine: {machine()}  embedder: {args.embedder}")
    rows = []
    for name in SET_NAMES:
        for mode, s in results[name].items():
            rows.append([f"{name} / {mode}", str(s.queries), f"{s.recall_at_1:.3f}",
                         f"{s.recall_at_5:.3f}", f"{s.mrr:.3f}"])
    print(table(["set / mode", "queries", "R@1", "R@5", "MRR"], rows))
    print()
    for name in SET_NAMES:
        modes = results[name]
        best = max(modes["vector"].mrr, modes["text"].mrr)
        verdict = "ok" if modes["hybrid"].mrr >= best - 1e-9 else "MISSED"
        print(f"{name}: hybrid MRR {modes['hybrid'].mrr:.3f} vs best single leg {best:.3f} "
              f"-> {verdict}")
    for name in ("paraphrase", "paraphrase_b"):
        r5 = results[name]["hybrid"].recall_at_5
        print(f"{name} hybrid R@5 {r5:.3f} (target >= 0.90) -> "
              f"{'ok' if r5 >= 0.90 else 'MISSED'}")


if __name__ == "__main__":
    main()
