"""The result page, written once for every index: rank to depth, count facets, re-order,
cut the page, fetch its documents. A single index and a sharded one differ only in how they
rank, read metadata and fetch (`RankedSource`); the page is the same."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Protocol

from searcher.search.facets import count_facets, reorder
from searcher.search.options import SearchOptions
from searcher.search.results import Hit

Ranking = dict[str, tuple[float, Any]]  # doc_id -> (score, where its passage is), best first


class RankedSource(Protocol):
    """One search's query, as an index answers it."""

    def rank(self, want: int) -> Ranking:
        """The best `want` documents for the query within the options' filter, best first."""

    def metadata(self, doc_ids: list[str]) -> dict[str, dict]:
        """{doc_id: metadata} of these ranked documents (what facets count and sort orders by)."""

    def fetch(self, ranking: Ranking) -> list[Hit]:
        """The Hits of a ranking's documents, in its order, with its scores."""


def result_page(source: RankedSource, options: SearchOptions) -> tuple[list[Hit], dict[str, dict]]:
    """The options' page of hits, and the counts of its facet fields among the best
    `facet_depth` documents."""
    ranking = source.rank(options.rank_depth)
    metadatas: dict[str, dict] = {}
    if options.reordered or options.facets:
        needed = max(options.order_depth if options.reordered else 0,
                     options.facet_depth if options.facets else 0)
        metadatas = source.metadata(list(ranking)[:needed])
    counts = count_facets((metadatas[d] for d in list(ranking)[:options.facet_depth] if d in metadatas),
                          options.facets) if options.facets else {}
    if options.reordered:
        ranking = reorder(dict(list(ranking.items())[:options.order_depth]), metadatas, options.sort,
                          options.recency, options.now or datetime.now(timezone.utc))
    return source.fetch(dict(list(ranking.items())[options.offset:options.offset + options.k])), counts
