"""Retrievers: dense (cosine of the BERT vectors), keyword (BM25) and hybrid (the two fused).

Each has one signature, `retrieve(view, query, want)`, and returns {doc_id: (score, chunk id
of its best chunk)} for the `want` best documents, best first. A document's score is its best
chunk's. `View` is what a search reads (one thread's store connection, the live vectors, the
keyword engine); `Query` carries the text, its vector (encoded on first use) and the fusion.

A query's words that documents are held to (phrases, exclusions: searcher/search/query.py)
are checked on each candidate's stored title and text, in the dense and keyword retrievers,
which rank deeper in growing rounds until `want` documents pass (or none is left). Hybrid
fuses the two lists of passing documents, so a sharded index, each shard checking its own
documents, fuses the lists a single index would.
"""

from __future__ import annotations

import bisect
import threading
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from searcher.readers.documents import page_starts
from searcher.search.fusion import Fusion
# re-exported: these lived here before search/results.py
from searcher.search.results import (DEFAULT_MODE, SEARCH_MODES, Hit, Results, check_k,  # noqa: F401
                                     check_mode, check_query)
from searcher.storage.keywords import KeywordStats

Ranked = dict[str, tuple[float, int]]


def page_of(metadata: dict, offset: int) -> int | None:
    """The page (from 1) holding character `offset`, from a paged document's `page_starts` (their
    order is checked here; that they lie within the text, where the text is at hand: the writer,
    the document view)."""
    starts = page_starts(metadata)
    return max(1, bisect.bisect_right(starts, offset)) if starts else None


@dataclass
class View:
    """What a search reads. `store()` is the calling thread's read connection; `lock` is held
    around vector searches, since a writer in this process changes the vectors in place."""

    store: Callable[[], object]
    vectors: object
    keywords: object
    lock: threading.RLock
    background: Callable[[], Executor]  # threads for the keyword half of hybrid searches
    allowed: np.ndarray | None = None  # a filter's chunk ids (sorted): only these are candidates


@dataclass
class Query:
    """`keyword_stats`: BM25 statistics to score with instead of the index's own (a sharded
    index's, summed over its shards: searcher/cluster/sharded.py)."""

    text: str
    encode: Callable[[str], np.ndarray]
    fusion: Fusion = field(default_factory=Fusion)
    _vector: np.ndarray | None = None
    keyword_stats: KeywordStats | None = None
    # (title, text) -> whether a document may be returned; None: every document may
    accepts: Callable[[str, str], bool] | None = None
    _verdicts: dict = field(default_factory=dict)  # doc_id -> accepts' answer, for this search
    # What each list scored its candidates (cosine of the best chunk; BM25): scores that keep
    # their meaning across queries, shown beside the fused one (Hit.cosine, Hit.bm25)
    cosines: dict = field(default_factory=dict)
    bm25: dict = field(default_factory=dict)

    @property
    def vector(self) -> np.ndarray:
        if self._vector is None:
            self._vector = self.encode(self.text)
        return self._vector

    def passing(self, store, best: Ranked, want: int) -> Ranked:
        """The first `want` documents of `best` that `accepts`, in order: read and checked a
        batch at a time, each document once a search."""
        if self.accepts is None:
            return best
        ranked, kept, i = list(best.items()), {}, 0
        while i < len(ranked) and len(kept) < want:
            batch = ranked[i:i + max(2 * (want - len(kept)), 32)]
            i += len(batch)
            unread = [doc_id for doc_id, _ in batch if doc_id not in self._verdicts]
            if unread:
                texts = store.document_texts(unread)
                for doc_id in unread:
                    self._verdicts[doc_id] = doc_id in texts and self.accepts(*texts[doc_id])
            kept.update((doc_id, value) for doc_id, value in batch if self._verdicts[doc_id])
        return kept


def dense(view: View, query: Query, want: int) -> Ranked:
    """Nearest chunks by cosine, fetched in growing rounds until `want` distinct documents
    (that the query accepts)."""
    vectors, store = view.vectors, view.store()
    qv = query.vector
    n = len(vectors) if view.allowed is None else len(view.allowed)
    fetch = min(n, max(want * 5, 50))
    best: Ranked = {}
    while n:
        with view.lock:
            scores, ids = vectors.search(qv, fetch, view.allowed)
        found = [(float(s), int(c)) for s, c in zip(scores[0], ids[0]) if c >= 0]
        owners = store.chunk_doc_ids([c for _, c in found])
        best = {}
        for score, cid in found:  # best first: the first chunk seen of a document is its best
            doc_id = owners.get(cid)
            if doc_id is not None and doc_id not in best:
                best[doc_id] = (score, cid)
        for doc_id, (score, _) in best.items():
            query.cosines.setdefault(doc_id, score)
        best = query.passing(store, best, want)
        if len(best) >= want or fetch >= n:
            break
        fetch = min(n, fetch * 4)
    return dict(list(best.items())[:want])


def keyword(view: View, query: Query, want: int) -> Ranked:
    """BM25's best chunks, fetched in growing rounds until `want` distinct documents (that the
    query accepts). Only live chunks count: an engine that lags behind SQLite never returns a
    deleted chunk."""
    store = view.store()
    fetch = max(want * 5, 50)
    while True:
        found = view.keywords.search(store, query.text, fetch, stats=query.keyword_stats)
        rows = found
        if view.allowed is not None:  # BM25 ranks all chunks alike: keeping the allowed ones is exact
            keep = np.isin(np.array([cid for cid, _ in found], dtype=np.int64), view.allowed)
            rows = [row for row, ok in zip(found, keep) if ok]
        owners = store.chunk_doc_ids([cid for cid, _ in rows])
        best: Ranked = {}
        for cid, score in rows:  # best first
            doc_id = owners.get(cid)
            if doc_id is not None and doc_id not in best:
                best[doc_id] = (score, cid)
        for doc_id, (score, _) in best.items():
            query.bm25.setdefault(doc_id, score)
        best = query.passing(store, best, want)
        if len(best) >= want or len(found) < fetch:
            return dict(list(best.items())[:want])
        fetch *= 4


def hybrid(view: View, query: Query, want: int) -> Ranked:
    """Dense and keyword candidates (each to the fusion's depth) fused; the passage is the best
    chunk of the list that ranks the document higher. BM25 runs on a worker thread (with its own
    connection) while this one encodes the query."""
    depth = max(want, query.fusion.depth)
    pending = view.background().submit(keyword, view, query, depth)
    try:
        by_vector = dense(view, query, depth)
    finally:
        by_words = pending.result()
    return fuse(by_vector, by_words, query.fusion, want, depth)


def fuse(by_vector: dict, by_words: dict, fusion: Fusion, want: int, depth: int) -> dict:
    """The best `want` of two candidate lists {doc_id: (score, passage)}, best first, fused by
    `fusion`: {doc_id: (fused score, passage)}, the passage (a chunk id here; a shard and its
    chunk id in searcher/cluster/sharded.py) from the list that ranks the document higher (the dense
    one on a tie)."""
    fused = fusion.fuse({d: s for d, (s, _) in by_vector.items()}, {d: s for d, (s, _) in by_words.items()})
    dense_rank = {d: r for r, d in enumerate(by_vector)}
    keyword_rank = {d: r for r, d in enumerate(by_words)}
    out = {}
    for doc_id, score in list(fused.items())[:want]:
        from_dense = dense_rank.get(doc_id, depth) <= keyword_rank.get(doc_id, depth)
        out[doc_id] = (score, (by_vector if from_dense else by_words)[doc_id][1])
    return out


RETRIEVERS: dict[str, Callable[[View, Query, int], Ranked]] = {"dense": dense, "keyword": keyword, "hybrid": hybrid}


def hits(store, ranked: Ranked, offset: int, want: int) -> list[Hit]:
    """The page [offset, want) of a ranking as Hits, with their documents and passages."""
    page = list(ranked.items())[offset:want]
    chunks = store.chunks([cid for _, (_, cid) in page])
    docs = store.documents([doc_id for doc_id, _ in page])
    out = []
    for doc_id, (score, cid) in page:
        doc, chunk = docs.get(doc_id), chunks.get(cid)
        if doc is None or chunk is None:
            continue
        metadata = doc["metadata"]
        out.append(Hit(doc_id, score, doc["title"] or "", doc["source"] or "", chunk.text, chunk.start, chunk.end,
                       cid, {k: v for k, v in metadata.items() if k != "page_starts"}, page_of(metadata, chunk.start)))
    return out
