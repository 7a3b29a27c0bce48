"""A search as the web asks for it: the query string turned into typed values (`SearchRequest`,
`parse_search_args`, `parse_where`), and one page of answers as JSON (`SearchPage`, `hit_json`).

The options themselves (mode, filter, facets, sort, recency) are checked by the library's
`SearchOptions` (searcher/search/options.py), so a bad value gets the same reason here as
from the CLI or MCP; only the web's own limits (the query's length, k and offset at most
MAX_K and MAX_OFFSET) are checked here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from searcher.sanitize import is_blank
from searcher.search.facets import DEFAULT_FACETS
from searcher.search.filters import loads_where
from searcher.search.options import SearchOptions

MAX_QUERY_CHARS = 1000
MAX_K = 100
MAX_OFFSET = 1000
DEFAULT_K = 10
_DIGITS = re.compile(r"[0-9]{1,7}")


class BadRequest(ValueError):
    """A request parameter that cannot be used; the message says which and why."""


@dataclass
class SearchRequest:
    """One search as asked, the options as given (so the answer echoes them); constructing
    one checks them (BadRequest) and keeps the facets checked."""

    query: str
    k: int = DEFAULT_K
    offset: int = 0
    mode: str | None = None
    where: dict | None = None  # a filter (searcher/search/filters.py), from ?where=<JSON>
    facets: tuple[str, ...] = ()  # fields to count (searcher/search/facets.py), from ?facets=type,folder
    sort: str | None = None  # "relevance" (None) or "modified"
    recency: float | None = None  # the recency boost's half-life in days
    index: str | None = None  # ?index= as given (searcher/web/indexes.py resolves it): a name, `*`, or None

    def __post_init__(self):
        self.facets = self.options().facets

    def options(self) -> SearchOptions:
        """The search's options, checked and normalised by the library; BadRequest says what is wrong."""
        try:
            return SearchOptions(self.k, self.offset, self.mode, self.where, self.sort, self.recency,
                                 tuple(self.facets))
        except (TypeError, ValueError) as e:
            raise BadRequest(str(e)) from None


# Hit.to_dict() fields that /api/search leaves out: a document's metadata is served by
# /api/documents/<id>, not repeated in every result.
OMITTED_HIT_FIELDS = ("metadata",)


def hit_json(hit) -> dict:
    """One result of /api/search: the engine's own `Hit.to_dict()` (so the two cannot drift;
    a field it gains appears here too), less OMITTED_HIT_FIELDS, the score rounded to 6 places."""
    out = hit.to_dict()
    for name in OMITTED_HIT_FIELDS:
        out.pop(name, None)
    out["score"] = round(float(out["score"]), 6)
    return out


@dataclass
class SearchPage:
    """One page of results, with what a client needs to ask for the next."""

    request: SearchRequest
    hits: list = field(default_factory=list)
    has_more: bool = False
    took_ms: float = 0.0
    facets: dict | None = None  # {field: {value: count}} when the request asked for facets
    # index=* (searcher/web/indexes.py): each hit's index, and its reciprocal rank fusion score
    indexes: list[str] | None = None
    fused: list[float] | None = None
    generation: int | None = None  # the generation every hit was read from (one index)
    generations: dict | None = None  # index=*: each index's
    # A sharded index's shards that did not answer (searcher/cluster/sharded.py): the hits are the
    # others'; the answer says "partial": true and names them
    missing_shards: list[str] = field(default_factory=list)
    # "Did you mean": the query with its typos corrected, when the hits were ranked by it
    suggestion: str | None = None
    # whether a hit is close in meaning (Results.close_match); None where nothing was encoded
    close_match: bool | None = None

    def results(self) -> list[dict]:
        out = [hit_json(h) for h in self.hits]
        if self.indexes is not None:
            for row, name, fused in zip(out, self.indexes, self.fused or [None] * len(out)):
                row["index"] = name
                if fused is not None:
                    row["fused_score"] = round(float(fused), 6)
        return out

    def to_dict(self) -> dict:
        r = self.request
        out: dict[str, Any] = {
            "query": r.query, "k": r.k, "offset": r.offset, "took_ms": self.took_ms,
            "results": self.results(),
            "has_more": self.has_more,
            "next_offset": r.offset + len(self.hits) if self.has_more else None,
        }
        echoed = {"index": r.index, "mode": r.mode, "where": r.where, "sort": r.sort, "recency": r.recency}
        answered = {"facets": self.facets, "generation": self.generation, "generations": self.generations,
                    "suggestion": self.suggestion, "close_match": self.close_match}
        out.update({name: value for name, value in {**echoed, **answered}.items() if value is not None})
        if self.missing_shards:
            out.update(partial=True, missing_shards=list(self.missing_shards))
        return out


def int_arg(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """The integer ?name= (from `low` to `high`), or `default` when absent; BadRequest otherwise."""
    raw = args.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, not {raw[:20]!r}")
    return int(raw)


def parse_search_args(args: Mapping[str, str], require_query: bool = True) -> SearchRequest | None:
    """The search a query string asks for (q, k, offset, index, mode, where, facets, sort,
    recency), checked; None when q is absent and not required."""
    query = args.get("q")
    if query is None or is_blank(query):
        if require_query:
            raise BadRequest("q (the query) is missing or empty")
        return None
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"q is too long ({len(query)} characters; the limit is {MAX_QUERY_CHARS})")
    k = int_arg(args, "k", DEFAULT_K, 1, MAX_K)
    offset = int_arg(args, "offset", 0, 0, MAX_OFFSET)
    mode = text_arg(args, "mode")
    index = text_arg(args, "index")
    return SearchRequest(query.strip(), k, offset, mode, parse_where(args), *narrowing_args(args), index=index)


def text_arg(args: Mapping[str, str], name: str) -> str | None:
    """?name= stripped; None when absent or blank."""
    return (args.get(name) or "").strip() or None


def parse_where(args: Mapping[str, str]) -> dict | None:
    """The filter in ?where=<JSON> (searcher/search/filters.py), checked; None when absent."""
    raw = args.get("where")
    if raw is None or not raw.strip():
        return None
    try:
        where = loads_where(raw)  # depth checked before parsing: no RecursionError
        SearchOptions(where=where)
    except (TypeError, ValueError) as e:
        raise BadRequest(f"where is not a valid filter: {e}") from None
    return where


def narrowing_args(args: Mapping[str, str]) -> tuple[tuple[str, ...], str | None, float | None]:
    """facets (a comma-separated list, or `default`), sort and recency from a query string, as
    typed values (SearchRequest checks them)."""
    raw = text_arg(args, "facets")
    facets = () if raw is None else DEFAULT_FACETS if raw == "default" else tuple(raw.split(","))
    recency = None
    raw = text_arg(args, "recency")
    if raw:
        try:
            recency = float(raw) if len(raw) < 20 else None
        except ValueError:
            raise BadRequest(f"recency is a half-life in days, a positive number, not {raw[:20]!r}") from None
    return facets, text_arg(args, "sort"), recency
