"""Fusing ranked lists: reciprocal rank fusion and normalised score fusion.

All take, for each retriever, its candidates best first as {doc_id: score} (dicts keep
insertion order) and return one {doc_id: fused score} ordered best first. None knows
anything about the collection: they look only at ranks or at each list's own scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

RRF_K = 60  # the constant of Cormack et al. (2009); damps the weight of the very first ranks
FUSION_METHODS = ("adaptive", "minmax", "zscore", "rrf")
KEYWORD_DROP_RANK = 10  # adaptive: the keyword list's drop is measured from its 1st to this score
MOST_CONFIDENT = 0.9  # adaptive: the keyword weight of a complete list shorter than KEYWORD_DROP_RANK
EVIDENCE_DEPTH = 50  # adaptive: a score below a list's 50th counts as its 50th (as if not retrieved)


@dataclass(frozen=True)
class Fusion:
    """How hybrid search fuses its dense and keyword lists: settings passed per search
    (`Index.search(..., fusion=...)`) or kept per index (`Index.fusion`), never globals.

    The default, "adaptive", divides each list's scores by its best (cosine and BM25 both have
    a natural floor of 0, so no list's own minimum is stretched to 0) and weighs the keyword
    list, per query, by how far its scores drop from the 1st to the 10th document,
    (s1 - s10) / s1 (`keyword_confidence`): a peaked BM25 list, a few documents matching the
    query's rare words, counts more; a flat one, words that many documents share, counts less.
    Dense gets the rest of the weight. Below a list's 50th document (`evidence`) scores no
    longer tell documents apart: each counts as the 50th's, as a document the list missed
    does, while all 100 (`depth`) of each list stay candidates, ordered among themselves.
    Nothing in it is set per collection. nDCG@10 (benchmarks/fusion.py): SciFact test 0.731,
    SciFact train 0.742, DBpedia-entity 5,000 docs 0.502; dense alone 0.656, 0.677, 0.502;
    keyword 0.686, 0.696, 0.381; min-max 0.5/0.5 (the first default) 0.727, 0.733, 0.469
    (benchmarks/README.md, "Fusion across collections"). `weights` still bias the two sides
    (they multiply the per-query weights).
    """

    method: str = "adaptive"  # "adaptive", "minmax" or "zscore" (score fusion), or "rrf"
    weights: tuple[float, float] = (0.5, 0.5)  # dense, keyword
    rrf_k: float = RRF_K
    depth: int = 100  # documents each list contributes (at least k + offset)
    evidence: int = EVIDENCE_DEPTH  # adaptive: ranks whose scores count; lower ones count as this one's

    def __post_init__(self):
        if self.method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}: use one of {', '.join(FUSION_METHODS)}")
        if len(self.weights) != 2 or any(w < 0 for w in self.weights):
            raise ValueError(f"fusion weights must be two non-negative numbers, not {self.weights!r}")
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"fusion depth must be a positive integer, not {self.depth!r}")
        if isinstance(self.evidence, bool) or not isinstance(self.evidence, int) or self.evidence < 1:
            raise ValueError(f"fusion evidence depth must be a positive integer, not {self.evidence!r}")

    def fuse(self, dense: Mapping[str, float], keyword: Mapping[str, float]) -> dict[str, float]:
        """{doc_id: fused score}, best first, from each list's candidates (best first, with scores)."""
        if self.method == "rrf":
            return reciprocal_rank_fusion([dense, keyword], k=self.rrf_k, weights=self.weights)
        if self.method == "adaptive":
            # a keyword list shorter than asked holds every document with the query's words
            return adaptive_fusion(dense, keyword, weights=self.weights, evidence=self.evidence,
                                   keyword_complete=len(keyword) < self.depth)
        return score_fusion([dense, keyword], weights=self.weights, method=self.method)

    def describe(self) -> str:
        if self.method == "rrf":
            return f"reciprocal rank fusion, k={self.rrf_k:g}"
        if self.method == "adaptive":
            bias = "" if self.weights[0] == self.weights[1] else f", biased {self.weights[0]:g}/{self.weights[1]:g}"
            return (f"scores over each list's best, keyword weight per query (s1 - s{KEYWORD_DROP_RANK}) / s1, "
                    f"scores counted to rank {self.evidence}{bias}")
        kind = "min-max" if self.method == "minmax" else "z-score"
        return f"{kind} normalised scores, weights {self.weights[0]:g}/{self.weights[1]:g}"


def reciprocal_rank_fusion(
    runs: Sequence[Mapping[str, float]], k: float = RRF_K, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """sum over lists of weight / (k + rank), rank counted from 1; a list a doc is absent from adds 0."""
    weights = weights or [1.0] * len(runs)
    fused: dict[str, float] = {}
    for run, weight in zip(runs, weights):
        for rank, doc_id in enumerate(run, 1):
            fused[doc_id] = fused.get(doc_id, 0.0) + weight / (k + rank)
    return _ordered(fused)


def normalise(scores: Mapping[str, float], method: str = "minmax") -> dict[str, float]:
    """Scores of one list mapped to a common scale: min-max to [0, 1], z-scores, or "max":
    divided by the best score (a theoretical floor of 0; negative cosines stay negative)."""
    if not scores:
        return {}
    values = list(scores.values())
    if method == "minmax":
        lo, hi = min(values), max(values)
        span = hi - lo
        return {d: (s - lo) / span if span > 0 else 1.0 for d, s in scores.items()}
    if method == "zscore":
        mean = sum(values) / len(values)
        sd = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        return {d: (s - mean) / sd if sd > 0 else 0.0 for d, s in scores.items()}
    if method == "max":
        hi = max(values)
        return {d: s / hi if hi > 0 else 1.0 for d, s in scores.items()}
    raise ValueError(f"unknown normalisation {method!r} (use minmax, zscore or max)")


def score_fusion(
    runs: Sequence[Mapping[str, float]],
    weights: Sequence[float] | None = None,
    method: str = "minmax",
    floors: Sequence[float | None] | None = None,
) -> dict[str, float]:
    """Weighted sum of normalised scores. A doc missing from a list gets that list's lowest
    normalised score (it ranked below everything the list returned), or the list's `floors`
    value where one is given (0: a list that holds every document that scores at all)."""
    weights = weights or [1.0] * len(runs)
    normed = [normalise(run, method) for run in runs]
    given = list(floors) if floors is not None else [None] * len(runs)
    floors = [f if f is not None else (min(n.values()) if n else 0.0) for n, f in zip(normed, given)]
    docs = dict.fromkeys(d for run in runs for d in run)
    fused = {
        d: sum(w * n.get(d, floor) for n, w, floor in zip(normed, weights, floors))
        for d in docs
    }
    return _ordered(fused)


def keyword_confidence(scores: Mapping[str, float], rank: int = KEYWORD_DROP_RANK, complete: bool = False) -> float:
    """(s1 - s_rank) / s1 of a BM25 list, best first, in [0, 1]: 0 for a flat list, near 1 when
    the first stand far above. A list shorter than `rank` counts its last score as s_rank,
    unless it is `complete` (it holds every document with the query's words): then the ranks
    it lacks score 0, and a word only a few documents hold (an error code, an invoice number)
    gives MOST_CONFIDENT."""
    values = list(scores.values())
    if not values or values[0] <= 0 or (len(values) < 2 and not complete):
        return 0.0
    if complete and len(values) < rank:  # dense keeps a little weight: it orders the rest
        return MOST_CONFIDENT
    return min(1.0, max(0.0, (values[0] - values[min(rank, len(values)) - 1]) / values[0]))


def clip_below(scores: Mapping[str, float], rank: int) -> dict[str, float]:
    """A list (best first) whose scores below its `rank`-th are raised to that one's: ranks
    past it count as one, as a document the list did not return does (score_fusion's floor)."""
    values = list(scores.values())
    if len(values) <= rank:
        return dict(scores)
    floor = values[rank - 1]
    return {d: max(s, floor) for d, s in scores.items()}


def adaptive_fusion(
    dense: Mapping[str, float], keyword: Mapping[str, float], weights: Sequence[float] = (0.5, 0.5),
    evidence: int = EVIDENCE_DEPTH, keyword_complete: bool = False,
) -> dict[str, float]:
    """Score fusion of the two lists divided by their best scores, with weights set per query:
    keyword c = keyword_confidence(keyword), dense 1 - c, each times `weights` and scaled to sum 1
    (so fused scores lie in [0, 1] for non-negative cosines). When both come to 0 (a flat keyword
    list and a zero dense bias) `weights` are used as given. Scores below each list's
    `evidence`-th count as that one's (`clip_below`). `keyword_complete`: the keyword list holds
    every document with the query's words, so one missing from it scores 0 there (not the
    list's last score: with one document in the list, that would tie everything with it)."""
    c = keyword_confidence(keyword, complete=keyword_complete)
    wd, wk = weights[0] * (1 - c), weights[1] * c
    if wd + wk <= 0:
        wd, wk = weights
    total = wd + wk or 1.0
    runs = [clip_below(dense, evidence), clip_below(keyword, evidence)]
    return score_fusion(runs, weights=[wd / total, wk / total], method="max",
                        floors=[None, 0.0 if keyword_complete else None])


def _ordered(fused: dict[str, float]) -> dict[str, float]:
    # Stable: ties keep first-seen order (the first list's order, then the next's).
    return dict(sorted(fused.items(), key=lambda item: -item[1]))
