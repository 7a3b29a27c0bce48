"""One search over several indexes: each index searched on its own (its own filter, mode and
facets), then their rankings merged here, by reciprocal rank fusion over ranks, since their
scores are not comparable (another corpus, another BM25 vocabulary, another fusion); with
sort="modified", by date. A document id names a document within its index only, so every
merged hit keeps its index's name. `searcher serve`'s `index=*` searches this way
(searcher/web/indexes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from searcher.search.facets import MAX_VALUES, check_sort, modified_time
from searcher.search.fusion import RRF_K, reciprocal_rank_fusion
from searcher.search.results import Hit


@dataclass(frozen=True)
class FusedHit:
    """A hit of one index in the merged list: the index's name and the hit's fused score."""

    index: str
    hit: Hit
    score: float


def fuse_rankings(rankings: Mapping[str, Sequence[Hit]], sort: str | None = None,
                  k: float = RRF_K) -> list[FusedHit]:
    """Each index's hits (best first, {index name: hits}) as one list, best first: by
    reciprocal rank fusion, sum of 1 / (k + rank) (ties in the order the indexes were
    given), or with sort="modified" by date, newest first (undated last, ties by fusion)."""
    runs = [{(name, hit.doc_id): hit for hit in hits} for name, hits in rankings.items()]
    fused = reciprocal_rank_fusion(runs, k=k)
    found = {key: hit for run in runs for key, hit in run.items()}
    order = list(fused)
    if check_sort(sort) == "modified":
        dates = {key: modified_time(found[key].metadata or {}) for key in order}
        order.sort(key=lambda key: (dates[key] is None, -(dates[key].timestamp() if dates[key] else 0)))
    return [FusedHit(key[0], found[key], fused[key]) for key in order]


def merge_facets(counts: Iterable[Mapping[str, Mapping]]) -> dict:
    """{field: {value: count}} summed over indexes, each field's MAX_VALUES most frequent
    values, most frequent first (ties by value), as count_facets orders one index's."""
    merged: dict[str, dict] = {}
    for one in counts:
        for name, values in one.items():
            field = merged.setdefault(name, {})
            for value, count in values.items():
                field[value] = field.get(value, 0) + count
    return {name: dict(sorted(values.items(), key=lambda kv: (-kv[1], str(kv[0])))[:MAX_VALUES])
            for name, values in merged.items()}
