"""What a keyword engine must do, and the query analysis it owns.

An engine indexes the chunks' words (each chunk with its document's title) and answers a
free-text query with BM25-scored chunk ids. SQLite (searcher/storage/store.py) is the source of
truth: an engine's changes are `record`ed inside the SQLite transaction that commits a
generation, and `catch_up` applies what is recorded but not yet applied (after a commit, and
on open after a crash). Keyword hits are checked against the live chunks by the caller, so
an engine that lags can never return a deleted chunk. Every engine passes
tests/test_keyword_engines.py.

Query analysis lives here too, so that the words the web page marks are the words BM25
matched: an engine's `Analyzer` turns a word into the term its index holds.
"""

from __future__ import annotations

from pathlib import Path

import math
import re
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Iterator, Mapping, Sequence

MAX_QUERY_TERMS = 64
WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: how both engines split text

# Query words left out of keyword queries: the classic English list (Lucene/Elasticsearch's,
# which the BEIR BM25 baseline uses). They carry almost no BM25 weight, and an OR over them
# matches nearly every chunk, which is slow. A query made only of them keeps them.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their then "
    "there these they this to was will with".split()
)


def fold(word: str) -> str:
    """Lower-cased, diacritics removed ("Café" -> "cafe"), as both engines' tokenizers do."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Analyzer(ABC):
    """Text to terms: words (letters and digits), folded, stemmed as the engine stems them."""

    def __init__(self):
        self.term = lru_cache(maxsize=65536)(self._term)

    @abstractmethod
    def _term(self, word: str) -> str:
        """The indexed term of one word."""

    def words(self, text: str) -> Iterator[re.Match]:
        return WORD.finditer(text)

    def surface_words(self, text: str) -> list[str]:
        """The words of a text as a reader writes them, only folded (never stemmed, so
        "studies" stays "studies"): what suggestions complete and what names a map's clusters."""
        return [fold(w) for w in WORD.findall(text)]

    def query_words(self, query: str) -> list[str]:
        """The distinct lower-cased words of a free-text query, stop words left out (unless all are)."""
        words = list(dict.fromkeys(w.lower() for w in WORD.findall(query)))
        kept = [w for w in words if w not in STOP_WORDS]
        return (kept or words)[:MAX_QUERY_TERMS]

    def query_terms(self, query: str) -> list[str]:
        """The distinct terms a query searches for."""
        return list(dict.fromkeys(t for t in (self.term(w) for w in self.query_words(query)) if t))

    def matches(self, word: str, terms) -> bool:
        """Whether a word of a text is one of a query's `terms` (what a highlighter marks)."""
        return word.lower() not in STOP_WORDS and self.term(word) in terms


def bm25_idf(chunks: int, frequency: int) -> float:
    """BM25's inverse document frequency as Lucene and tantivy compute it:
    ln(1 + (N - n + 0.5) / (n + 0.5)) for a term held by n of N chunks."""
    return math.log(1.0 + (chunks - frequency + 0.5) / (frequency + 0.5))


@dataclass(frozen=True)
class KeywordStats:
    """BM25's collection statistics for one query's terms: how many chunks an index holds and
    how many of them hold each term. Summed over the shards of a sharded index they are the
    whole collection's, which every shard can then score with (Elasticsearch's DFS,
    dfs_query_then_fetch; searcher/cluster/sharded.py)."""

    chunks: int
    frequencies: Mapping[str, int] = field(default_factory=dict)

    @staticmethod
    def total(parts: Iterable["KeywordStats"]) -> "KeywordStats":
        chunks, frequencies = 0, {}
        for part in parts:
            chunks += part.chunks
            for term, n in part.frequencies.items():
                frequencies[term] = frequencies.get(term, 0) + n
        return KeywordStats(chunks, frequencies)


class KeywordEngine(ABC):
    """BM25 over the chunks. Methods that read or write SQLite take the caller's `store`
    (a searcher.storage.store.ContentStore: each thread has its own connection)."""

    name: str  # the manifest's "keyword_engine"
    analyzer: Analyzer
    path: Path | None = None  # the engine's own folder in the index (tantivy's); None when it has none

    def prepare(self, store) -> None:
        """On a writable store: make what the engine needs (filled from the chunks when new)."""

    @abstractmethod
    def ready(self, store) -> bool:
        """Whether the engine can search (an index from before keyword search has no table)."""

    @abstractmethod
    def add(self, store, chunk_ids: Sequence[int]) -> None:
        """Index these chunks (read from the store with their document's title)."""

    @abstractmethod
    def remove(self, store, chunk_ids: Sequence[int]) -> None:
        """Forget these chunks."""

    @abstractmethod
    def search(self, store, query: str, limit: int, stats: KeywordStats | None = None) -> list[tuple[int, float]]:
        """(chunk id, BM25 score) of the `limit` best chunks for free text, best first; with
        `stats` (from `statistics`, summed over shards), scored with those statistics."""

    def statistics(self, store, query: str) -> KeywordStats | None:
        """This index's BM25 statistics for the query's terms, or None: the engine cannot score
        with statistics other than its own (then `search` takes no `stats`)."""
        return None

    @abstractmethod
    def ids(self, store) -> list[int]:
        """Every chunk id the engine holds, sorted (for consistency checks)."""

    @abstractmethod
    def rebuild(self, store) -> None:
        """Refill the engine from the store's chunks (a repair)."""

    def record(self, store, added: Sequence[int], removed: Sequence[int]) -> None:
        """Called inside the transaction that commits a generation. An engine inside SQLite
        applies the change here; one outside records it, to apply in `catch_up`."""
        self.remove(store, removed)
        self.add(store, added)

    def catch_up(self, store) -> int:
        """Apply changes recorded but not applied (after a commit; on open after a crash).
        Returns how many chunks it touched."""
        return 0

    def pending(self, store) -> int:
        """How many recorded changes are not applied yet."""
        return 0

    def problems(self, store, writable: bool) -> list[str]:
        """The engine's own integrity check, beyond the chunk ids (some need a writable store)."""
        return []

    def missing(self) -> str:
        """Why `ready` is false, and what to do: a problem for `check`, unless `may_be_missing`."""
        return f"no {self.name} keyword index"

    may_be_missing = False  # an index may lack this engine's index without being damaged

    def refresh(self) -> None:
        """See changes another process applied (after the generation moved)."""

    def close(self) -> None:
        pass
