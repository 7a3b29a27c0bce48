"""The options of one search, checked once: `SearchOptions`.

The library, the CLI, the web API and MCP all build one (from arguments, flags or a query
string) and hand it to the index, so a bad value gets the same reason everywhere. Standard
library only (a thin client builds them too).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Iterable

from searcher.search.facets import DEFAULT_FACETS, FACET_DEPTH, check_facet_fields, check_recency, check_sort
from searcher.search.filters import compile_where
from searcher.search.results import check_k, check_mode

__all__ = ["DEFAULT_FACETS", "FACET_DEPTH", "SearchOptions"]


@dataclass(frozen=True)
class SearchOptions:
    """`k` hits after skipping `offset`, ranked by `mode` (dense, keyword or hybrid; None is
    the default mode), within the filter `where` (searcher/search/filters.py), ordered by
    `sort` ("relevance" or "modified") and weighted by `recency` (a half-life in days), with
    the counts of the `facets` fields among the best `facet_depth` documents. `now` is the
    present for recency (None: the clock). Constructing one checks every field (ValueError
    or TypeError naming the bad one) and normalises it."""

    k: int = 10
    offset: int = 0
    mode: str | None = None
    where: dict | None = None
    sort: str | None = None
    recency: float | None = None
    facets: tuple[str, ...] = ()
    facet_depth: int = FACET_DEPTH
    now: datetime | None = None

    def __post_init__(self):
        k, offset = check_k(self.k, self.offset)
        facet_depth, _ = check_k(self.facet_depth)
        if self.where is not None:
            compile_where(self.where)  # a bad filter fails here, once, with the reason
        if isinstance(self.facets, str):
            raise TypeError("facets is a list of field names, not one string")
        values = {"k": k, "offset": offset, "facet_depth": facet_depth, "mode": check_mode(self.mode),
                  "sort": check_sort(self.sort), "recency": check_recency(self.recency),
                  "facets": check_facet_fields(self.facets or ())}
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def but(self, **changes) -> "SearchOptions":
        """A copy with `changes`, checked again."""
        return replace(self, **changes)

    @property
    def reordered(self) -> bool:
        """Whether the page is re-ordered after ranking (by date, or by recency)."""
        return self.sort != "relevance" or self.recency is not None

    @property
    def order_depth(self) -> int:
        """How deep the ranking that the page is cut from goes. A re-ordered search orders one
        window of the ranking, whatever the offset, so its pages follow on from each other:
        the best FACET_DEPTH documents (or k, if more); pages end there."""
        return max(self.k, FACET_DEPTH) if self.reordered else self.offset + self.k

    @property
    def rank_depth(self) -> int:
        """How many documents to rank: enough for the page and for the facet counts."""
        return max(self.order_depth, self.facet_depth if self.facets else 0)


def facet_fields(fields: Iterable[str] | None) -> tuple[str, ...]:
    """The default facets for None, else `fields` checked."""
    return DEFAULT_FACETS if fields is None else check_facet_fields(fields)
