"""Fusing ranked legs into one ranking. Pure functions.

Measured on a paraphrase set, plain reciprocal rank fusion with equal weights let FTS5 matches
on incidental words drag MiniLM's R@5 from 0.93 to 0.38. So the semantic legs (vector, remote)
lead with full reciprocal-rank weight ``1/(k+rank)``, and a lexical hit adds
``text_weight * strength^text_sharpness / (k+rank)`` only when its *strength* reaches
``text_floor``. Strength is absolute, not relative to the query's best hit (see
``TextCandidates``): BM25 over the most a one-occurrence match of every query term could score.
A memory sharing the rare term a query is about (an error code, a name) is promoted; one sharing
a common word adds nothing. The defaults were chosen on three labelled sets at once
(bench/recall_quality.py: paraphrase, exact terms, chat turns with dates); on all three the
result is insensitive to ``k`` from 10 to 60, and the floor of 0.4 is what keeps the
paraphrase set exactly at vector-only quality while exact terms reach 1.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

SEMANTIC_LEGS = ("vector", "remote")


@attrs.frozen
class FusionParams:
    k: int = attrs.field(default=60, validator=attrs.validators.ge(1))
    text_weight: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    # strength exponent: 1 is linear, higher keeps mostly the strongest lexical hits
    text_sharpness: float = attrs.field(default=1.0, validator=attrs.validators.gt(0))
    # lexical hits weaker than this add nothing at all
    text_floor: float = attrs.field(default=0.4,
                                    validator=[attrs.validators.ge(0), attrs.validators.le(1)])


@attrs.frozen
class Fused:
    id: str
    score: float  # normalised to (0, 1]: 1 is rank 1 in every leg
    leg_scores: Mapping[str, float]
    leg_ranks: Mapping[str, int]


def fuse(legs: Mapping[str, Sequence[tuple[str, float]]], params: FusionParams,
         limit: int) -> list[Fused]:
    """Rank ids from each leg's ``(id, score)`` list (best first, higher score better).

    ``vector`` and ``remote`` give cosine similarities; ``text`` gives lexical strengths.
    """
    totals: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}
    ranks: dict[str, dict[str, int]] = {}
    semantic = any(legs.get(leg) for leg in SEMANTIC_LEGS)
    for leg, hits in legs.items():
        for rank, (memory_id, score) in enumerate(hits, start=1):
            if leg != "text" or not semantic:
                weight = 1.0  # alone, the lexical leg ranks by BM25 as it is
            elif score >= params.text_floor:
                weight = params.text_weight * score ** params.text_sharpness
            else:
                weight = 0.0
            if leg in scores.get(memory_id, {}):
                continue  # a leg lists an id once; keep its best rank
            totals[memory_id] = totals.get(memory_id, 0.0) + weight / (params.k + rank)
            scores.setdefault(memory_id, {})[leg] = score
            ranks.setdefault(memory_id, {})[leg] = rank
    # the best possible total: rank 1 on the semantic side and a full-strength lexical rank 1
    lexical = (params.text_weight if semantic else 1.0) if legs.get("text") else 0.0
    ceiling = (float(semantic) + lexical) / (params.k + 1)
    ordered = sorted(totals, key=lambda i: (-totals[i], i))[:limit]
    return [Fused(i, totals[i] / ceiling if ceiling else 0.0, scores[i], ranks[i])
            for i in ordered]
