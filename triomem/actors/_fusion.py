"""Fusing ranked legs into one ranking. Pure functions.

Measured on a paraphrase set, plain reciprocal rank fusion with equal weights let FTS5 matches
on incidental words drag MiniLM's R@5 from 0.93 to 0.38. So the semantic legs (vector, remote)
lead with full reciprocal-rank weight, and a lexical hit adds weight in proportion to its
strength: its BM25 score relative to the best lexical hit of the query. A memory sharing a rare
exact term with the query (a name, an error code) is promoted; one sharing a common word barely
moves. Weights are tuned on several labelled sets (bench/recall_quality.py), never on one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

SEMANTIC_LEGS = ("vector", "remote")


@attrs.frozen
class FusionParams:
    k: int = attrs.field(default=60, validator=attrs.validators.ge(1))
    text_weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    # strength exponent: 1 is linear in BM25 ratio, higher keeps only the strongest lexical hits
    text_sharpness: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))


@attrs.frozen
class Fused:
    id: str
    score: float  # normalised to (0, 1]: 1 is rank 1 in every leg
    leg_scores: Mapping[str, float]
    leg_ranks: Mapping[str, int]


def fuse(legs: Mapping[str, Sequence[tuple[str, float]]], params: FusionParams,
         limit: int) -> list[Fused]:
    """Rank ids from each leg's ``(id, score)`` list (best first, higher score better).

    ``vector`` and ``remote`` give cosine similarities; ``text`` gives BM25 magnitudes.
    """
    totals: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    ranks: dict[str, dict[str, int]] = {}
    semantic_weight = 0.0
    for leg, hits in legs.items():
        if not hits:
            continue
        best = max(score for _, score in hits) if leg == "text" else 0.0
        if leg in SEMANTIC_LEGS:
            semantic_weight = 1.0
        for rank, (memory_id, score) in enumerate(hits, start=1):
            if leg == "text":
                strength = (score / best) ** params.text_sharpness if best > 0 else 0.0
                weight = params.text_weight * strength
            else:
                weight = 1.0
            if leg in scores.get(memory_id, {}):
                continue  # a leg lists an id once; keep its best rank
            totals[memory_id] = totals.get(memory_id, 0.0) + weight / (params.k + rank)
            scores.setdefault(memory_id, {})[leg] = score
            ranks.setdefault(memory_id, {})[leg] = rank
    # the best possible total: rank 1 on the semantic side and a full-strength lexical rank 1
    ceiling = (semantic_weight + (params.text_weight if legs.get("text") else 0.0)) / (params.k + 1)
    ordered = sorted(totals, key=lambda i: (-totals[i], i))[:limit]
    return [Fused(i, totals[i] / ceiling if ceiling else 0.0, scores[i], ranks[i])
            for i in ordered]
