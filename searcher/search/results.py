"""What a search gives back, and the checks of its simplest options: `Hit`, `Results`, the modes.

Standard library only, so a thin client (searcher/remote.py) has the same types as the engine
without loading it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

from searcher.sanitize import clean_text, is_blank, one_of

SEARCH_MODES = ("dense", "keyword", "hybrid")
DEFAULT_MODE = "hybrid"  # the best on the measurements in benchmarks/README.md


def check_mode(mode: str | None) -> str:
    """The search mode to use: `mode`, or DEFAULT_MODE for None; ValueError for anything else."""
    return one_of(mode, SEARCH_MODES, DEFAULT_MODE, "search mode")


def check_query(query) -> str:
    """The query text to search for: a string, cleaned (searcher/sanitize.py), not blank;
    TypeError or ValueError otherwise."""
    if not isinstance(query, str):
        raise TypeError(f"the query must be a string, not {type(query).__name__}")
    query = clean_text(query)
    if is_blank(query):
        raise ValueError("the query is empty")
    return query


def check_k(k, offset=0) -> tuple[int, int]:
    """k (at least 1) and offset (at least 0) as ints (numpy's too); ValueError naming the bad one."""
    for name, value, low in (("k", k, 1), ("offset", offset, 0)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an integer, not {value!r}")
        if value < low:
            raise ValueError(f"{name} must be at least {low}, not {value}")
    return int(k), int(offset)


class Results(list):
    """A list of Hits that says whether every shard answered: `missing_shards` names the
    shards of a sharded index that did not (searcher/cluster/sharded.py), empty for a full answer
    (and always, for a single index); `partial` is whether any is missing. `suggestion` and
    `close_match`: what the page shows above the hits ("Did you mean", "no close match")."""

    def __init__(self, hits=(), missing_shards=(), suggestion: str | None = None, close_match: bool | None = None):
        super().__init__(hits)
        self.missing_shards = tuple(missing_shards)
        # "Did you mean": the query with the words the index does not hold corrected
        # (searcher/search/spelling.py), when the search ranked by the corrected words; else None
        self.suggestion = suggestion
        # whether a hit is close in meaning to the query (its cosine is above what queries of
        # made-up words reach: searcher/search/closeness.py); None where nothing was encoded
        self.close_match = close_match

    @property
    def partial(self) -> bool:
        return bool(self.missing_shards)


@dataclass
class Hit:
    """A document found by a search, with the passage (best chunk) that matched."""

    doc_id: str
    score: float
    title: str
    source: str
    passage: str
    start: int  # character offsets of the passage in the document text
    end: int
    chunk_id: int
    metadata: dict = field(default_factory=dict)
    page: int | None = None  # the page (PDF) the passage starts on, from 1; None for formats without pages
    # Scores that keep their meaning from one query to the next (`score` orders the hits: in
    # hybrid mode a fusion of the two lists, relative to this query's best): the cosine
    # similarity of the passage to the query (None where the query was not encoded: keyword
    # mode), and the document's BM25 (None where the keyword list did not rank it)
    cosine: float | None = None
    bm25: float | None = None

    def to_dict(self) -> dict:
        """The one serialised form of a hit (the web's JSON starts from it)."""
        return {
            "doc_id": self.doc_id, "score": self.score, "title": self.title, "source": self.source,
            "passage": self.passage, "start": self.start, "end": self.end, "page": self.page,
            "metadata": self.metadata, "cosine": self.cosine, "bm25": self.bm25,
        }
