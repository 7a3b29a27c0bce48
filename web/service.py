"""The web layer's view of an index: request parameters checked, searches timed.

One `Index` is shared by every request thread. `Index` makes that safe: its reads of SQLite
and FAISS go through the index's own lock, and query encoding goes through its
`QueryEncoder`, which batches concurrent queries into one forward pass (so the model and its
tokenizer, which are not promised to be thread-safe, are only ever used by one thread).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from searcher.index import check_mode
from searcher.loaders import is_blank

MAX_QUERY_CHARS = 1000
MAX_K = 100
MAX_OFFSET = 1000
DEFAULT_K = 10
_DIGITS = re.compile(r"[0-9]{1,7}")


class BadRequest(ValueError):
    """A request parameter that cannot be used; the message says which and why."""


@dataclass
class SearchRequest:
    query: str
    k: int = DEFAULT_K
    offset: int = 0
    mode: str | None = None


@dataclass
class SearchPage:
    """One page of results, with what a client needs to ask for the next."""

    request: SearchRequest
    hits: list = field(default_factory=list)
    has_more: bool = False
    took_ms: float = 0.0

    def to_dict(self) -> dict:
        r = self.request
        out: dict[str, Any] = {
            "query": r.query, "k": r.k, "offset": r.offset, "took_ms": self.took_ms,
            "results": [
                {"doc_id": h.doc_id, "score": round(float(h.score), 6), "title": h.title, "source": h.source,
                 "passage": h.passage, "start": h.start, "end": h.end}
                for h in self.hits
            ],
            "has_more": self.has_more,
            "next_offset": r.offset + len(self.hits) if self.has_more else None,
        }
        if r.mode is not None:
            out["mode"] = r.mode
        return out


def _int_arg(args: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}, not {raw[:20]!r}")
    return int(raw)


def parse_search_args(args: Mapping[str, str], require_query: bool = True) -> SearchRequest | None:
    """Check q, k, offset and mode from a query string; None when q is absent and not required."""
    query = args.get("q")
    if query is None or is_blank(query):
        if require_query:
            raise BadRequest("q (the query) is missing or empty")
        return None
    if len(query) > MAX_QUERY_CHARS:
        raise BadRequest(f"q is too long ({len(query)} characters; the limit is {MAX_QUERY_CHARS})")
    k = _int_arg(args, "k", DEFAULT_K, 1, MAX_K)
    offset = _int_arg(args, "offset", 0, 0, MAX_OFFSET)
    mode = args.get("mode")
    if mode is not None:
        mode = mode.strip() or None
    return SearchRequest(query.strip(), k, offset, mode)


class SearchService:
    """Wraps an open `Index` for concurrent request threads."""

    def __init__(self, index):
        self.index = index

    def search(self, req: SearchRequest) -> SearchPage:
        try:
            mode = check_mode(req.mode)
        except ValueError as e:
            raise BadRequest(str(e)) from e
        started = time.perf_counter()
        # One extra hit tells whether a next page exists.
        hits = self.index.search(req.query, req.k + 1, req.offset, mode=mode)
        took_ms = round((time.perf_counter() - started) * 1000, 1)
        return SearchPage(req, hits[: req.k], len(hits) > req.k, took_ms)

    def document(self, doc_id: str) -> dict | None:
        return self.index.get_document(doc_id)

    def stats(self) -> dict:
        info = self.index.info()
        keys = ("documents", "chunks", "model", "dimension", "pooling", "chunk_tokens", "overlap", "generation")
        return {k: info[k] for k in keys if k in info}

    def count(self) -> int:
        return len(self.index)
