"""The query pipeline of one index folder: rank (dense, keyword, hybrid), the result page,
fetch, and "more like this". What it reads comes from the live generation (searcher/index/live.py).

A shard of a sharded index is asked for the two phases separately (`rank`, then `fetch` of
only the page's documents: searcher/cluster/sharded.py); a single index runs both here
through the one result page (searcher/search/page.py). A query arrives parsed
(searcher/search/query.py): its free words are ranked, its field filters ANDed with the
search's `where`, and the words it requires or excludes checked by the retrievers.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Iterable

import numpy as np

from searcher.errors import SearcherError
from searcher.index.live import LiveGeneration
from searcher.index.writer import stored_chunk_input
from searcher.sanitize import document_id
from searcher.search.closeness import is_close, noise_floor
from searcher.search.fusion import Fusion
from searcher.search.options import SearchOptions
from searcher.search.page import Ranking, result_page
from searcher.search.query import BUILTIN_FIELDS, ParsedQuery, field_names, parse_query, plain_query
from searcher.search.results import Hit, check_k, check_query
from searcher.search.retrieval import RETRIEVERS, Query, hits, page_of
from searcher.search.spelling import Reading, loose_words, spelled
from searcher.search.suggest import SuggestCache, Vocabulary
from searcher.storage.keywords.base import STOP_WORDS
from searcher.storage.folder import DATABASE
from searcher.storage.keywords import KeywordStats
from searcher.storage.store import ContentStore, readable

SIMILAR_CHUNKS = 8  # chunks of a document that make its "more like this" vector
KNOWN_FIELDS_CACHE = 1024  # (generation, metadata key) answers kept
# Up to this many chunks a search waits for the first vocabulary (about 0.5 s per 10,000
# chunks); beyond, it is built in the background and typos are corrected once it is there.
SYNC_VOCABULARY_CHUNKS = 100_000
# A query's required words narrow its candidates to the documents holding the rarest of
# them when at most this many chunks hold it (more: ranking finds passing documents quickly)
NARROW_UP_TO = 20_000
FLOOR_DRIFT = 0.1  # the noise floor is measured again once the vectors grew or shrank by this share


def reading(method):
    """Reads: SQLite's errors about a damaged database become IndexCorruptError."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with readable(self.path / DATABASE):
            return method(self, *args, **kwargs)
    return wrapper


def similar_vector(encoder, budget: int, title: str, texts: list[str], prefix: str = "") -> np.ndarray:
    """A document's "more like this" vector from its `similar_source`: its chunks encoded as
    indexing encoded them (the document prefix and title tokens first, cut to the chunker's
    `budget`), averaged, unit length."""
    inputs = [stored_chunk_input(encoder, title, text, budget, prefix) for text in texts]
    vector = encoder.encode_ids(inputs).mean(axis=0, keepdims=True)
    vector /= max(float(np.linalg.norm(vector)), 1e-12)
    return vector.astype(np.float32)


class QueryPipeline:
    """Searches of one index folder. `queries`: the query encoder (None: opened without its
    model, keyword search only); `encoder` and `budget`: what "more like this" encodes with."""

    def __init__(self, path: Path, live: LiveGeneration, dimension: int, queries=None, encoder=None,
                 budget: int | None = None):
        self.path = path
        self.live = live
        self.dimension = dimension
        self.queries = queries
        self.encoder = encoder
        self.budget = budget
        self._known: dict[tuple[int, str], bool] = {}  # (generation, metadata key) -> whether a document has it
        self.vocabularies = SuggestCache()  # the words suggestions and typo corrections come from, per generation
        self._floor: tuple[int, float | None] | None = None  # (vectors when measured, noise floor)

    @reading
    def parse(self, query: str | ParsedQuery, syntax: bool = True) -> ParsedQuery:
        """The query as this index reads it: its syntax, with this index's metadata keys as
        fields; plain words with `syntax=False`; a ParsedQuery as it is."""
        if isinstance(query, ParsedQuery):
            return query
        query = check_query(query)
        if not syntax:
            return plain_query(query)
        return parse_query(query, self.known_fields(field_names(query)))

    @reading
    def vocabulary(self, fresh: bool = False) -> Vocabulary:
        """The committed generation's words and titles (searcher/search/suggest.py); right after
        a commit the last generation's answer while the new one is counted, unless `fresh`."""
        return self.vocabularies.get(self.live.read_store().generation, self._build_vocabulary, fresh)

    @reading
    def _build_vocabulary(self) -> Vocabulary:
        """The words and titles of the generation committed now, in one read, on a connection of
        its own: a build in the background may outlive the index's close(), which closes the
        connections it handed out (closing one another thread reads on crashes SQLite)."""
        store = ContentStore(self.path / DATABASE, readonly=True)
        try:
            with store.db.atomic():
                return Vocabulary.build(store.chunk_texts(), store.title_counts(with_readers=True),
                                        self.live.keywords.analyzer.surface_words, store.generation)
        finally:
            store.close()

    @reading
    def spelled(self, query: ParsedQuery) -> tuple[ParsedQuery, str | None]:
        """(the query to rank by, "Did you mean" text or None): the query's loose words that
        no document holds, corrected to the nearest words documents hold
        (searcher/search/spelling.py); the query as it is when none needs it."""
        words = loose_words(query)
        return spelled(query, [self.spelling(words)]) if words else (query, None)

    @reading
    def spelling(self, words: list[str]) -> dict[str, Reading]:
        """{word: (edits, chunks, the word meant)} for `words`: 0 edits for a word this index
        holds (asked of the keyword engine first, so a query without typos builds nothing),
        the nearest word of its vocabulary for one it does not; a word with no reading is left out."""
        out: dict[str, Reading] = {}
        store = self.live.read_store()
        stats = self.keyword_counts(store, words)
        if stats is not None:
            term = self.live.keywords.analyzer.term
            for word in words:
                chunks = stats.frequencies.get(term(word.lower()))
                if chunks:
                    out[word] = (0, chunks, word)
        unknown = [w for w in words if w not in out]
        if unknown:
            if len(self.live.vectors) <= SYNC_VOCABULARY_CHUNKS:
                vocabulary = self.vocabulary()
            else:
                vocabulary = self.vocabularies.ready(store.generation, self._build_vocabulary)
            if vocabulary is not None:
                out.update(vocabulary.speller.readings(unknown))
        return out

    def close_match(self, found: list[Hit], query: ParsedQuery) -> bool | None:
        """Whether the best of `found` is close in meaning to the query (its cosine above this
        index's noise floor: searcher/search/closeness.py); True where the query's exact words
        (a phrase, a title term) held; False for no hits; None where nothing was encoded."""
        if not found:
            return False
        if query.phrases or query.title_phrases:
            return True
        best = max((h.cosine for h in found if h.cosine is not None), default=None)
        return None if best is None else is_close(best, self.noise_floor())

    def noise_floor(self) -> float | None:
        """The best cosine queries of made-up words reach in this index, measured again when the
        number of vectors has changed by FLOOR_DRIFT."""
        n = len(self.live.vectors)
        if self.queries is None:
            return None
        if self._floor is None or abs(n - self._floor[0]) > FLOOR_DRIFT * max(self._floor[0], 1):
            def best(text: str) -> float | None:
                found = self.search_vector(self.queries.encode(text), 1)
                return found[0].score if found else None
            self._floor = (n, noise_floor(best))
        return self._floor[1]

    def known_fields(self, names: Iterable[str]) -> set[str]:
        """Those of `names` a query can filter by here: the built-in fields, and the metadata
        keys some document has (asked once a generation)."""
        names = set(names)
        out = {name for name in names if name.lower() in BUILTIN_FIELDS}
        unknown = names - out
        if unknown:
            store = self.live.read_store()
            generation = self.live.current()[1]
            for name in sorted(unknown):
                key = name[len("metadata."):] if name.startswith("metadata.") else name
                if (generation, key) not in self._known:
                    if len(self._known) >= KNOWN_FIELDS_CACHE:
                        self._known.clear()
                    self._known[(generation, key)] = bool(key) and store.has_metadata_key(key)
                if self._known[(generation, key)]:
                    out.add(name)
        return out

    @reading
    def page(self, query: ParsedQuery, options: SearchOptions, fusion: Fusion,
             keyword_stats: KeywordStats | None = None) -> tuple[list[Hit], dict[str, dict]]:
        """The options' page of hits and facet counts (searcher/search/page.py)."""
        return result_page(_OneSearch(self, query, options, fusion, keyword_stats), options)

    def rank(self, query: ParsedQuery | str, want: int, mode: str, fusion: Fusion, where: dict | None,
             keyword_stats: KeywordStats | None = None,
             query_vector: np.ndarray | None = None) -> tuple[ContentStore, dict]:
        """(this thread's store, the best `want` documents {doc_id: (score, chunk id)}, best
        first) within `where` and the query's own filters. A string is plain words."""
        store, ranked, _ = self.ranking(query, want, mode, fusion, where, keyword_stats, query_vector)
        return store, ranked

    def ranking(self, query: ParsedQuery | str, want: int, mode: str, fusion: Fusion, where: dict | None,
                keyword_stats: KeywordStats | None = None,
                query_vector: np.ndarray | None = None) -> tuple[ContentStore, dict, Query]:
        """`rank`, and the Query it ranked by (with each list's own scores of its candidates)."""
        parsed = query if isinstance(query, ParsedQuery) else plain_query(check_query(query))
        query = check_query(parsed.search_text)
        where = parsed.within(where)
        store = self.live.read_store()
        if mode != "dense" and not self.live.keywords.ready(store):
            raise SearcherError(f"{self.path}: {self.live.keywords.missing()}")
        if query_vector is not None:
            query_vector = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
            if query_vector.shape[1] != self.dimension:
                raise ValueError(f"the query vector has {query_vector.shape[1]} dimensions; "
                                 f"{self.path} holds vectors of {self.dimension}")
        elif mode != "keyword" and self.queries is None:
            raise SearcherError(f"{self.path} was opened without its model: only mode='keyword' can search")
        view = self.live.view(store, where)
        holding = self.holding_rarest(store, parsed) if parsed.constrained else None
        if holding is not None:  # only these documents can pass: the others are never ranked
            view.allowed = holding if view.allowed is None else np.intersect1d(view.allowed, holding, assume_unique=True)
        asked = Query(query, self.queries.encode if self.queries else None, fusion, _vector=query_vector,
                      keyword_stats=keyword_stats, accepts=parsed.matches if parsed.constrained else None)
        ranked = RETRIEVERS[mode](view, asked, want)
        return store, ranked, asked

    def holding_rarest(self, store: ContentStore, query: ParsedQuery) -> np.ndarray | None:
        """The chunk ids of the documents holding the rarest of the words the query requires
        (a phrase's, a title term's), sorted; None where that is not narrow enough to be worth
        it (no required word, the engine cannot say, or more than NARROW_UP_TO chunks hold it).
        A superset of the documents that pass: the phrase itself is checked on each (a word's
        stem is what the keyword engine holds, so it finds at least the documents holding it)."""
        words = [w for w in query.required_words() if w not in STOP_WORDS]
        stats = self.keyword_counts(store, words) if words else None
        if stats is None:
            return None
        term = self.live.keywords.analyzer.term
        counted = [(stats.frequencies[term(w)], w) for w in words if term(w) in stats.frequencies]
        if not counted:
            return None
        chunks, word = min(counted)
        if chunks > NARROW_UP_TO:
            return None
        found = self.live.keywords.search(store, word, chunks + 1) if chunks else []
        docs = set(store.chunk_doc_ids([cid for cid, _ in found]).values())
        return np.array(sorted(store.chunk_ids_of(sorted(docs))), dtype=np.int64)

    def keyword_counts(self, store: ContentStore, words: list[str]) -> KeywordStats | None:
        """The keyword engine's chunk counts of `words`' terms, for what only speeds a search
        up or corrects it (narrowing, typos): None where the engine cannot say, is not built
        or is damaged (a dense search must not fail with it; keyword search reports that)."""
        try:
            if not self.live.keywords.ready(store):
                return None
            return self.live.keywords.statistics(store, " ".join(words))
        except (SearcherError, ValueError, OSError):
            return None

    def cosines(self, store: ContentStore, query: Query, doc_ids: list[str]) -> dict[str, float]:
        """{doc_id: cosine of its best chunk to the query} for `doc_ids`: those the dense list
        scored, the others (ranked by words alone) looked up among their own chunks. Empty
        where the query was not encoded (keyword mode)."""
        if query._vector is None:
            return {}
        out = {d: query.cosines[d] for d in doc_ids if d in query.cosines}
        missing = [d for d in doc_ids if d not in out]
        if missing:
            ids = np.array(sorted(store.chunk_ids_of(missing)), dtype=np.int64)
            if len(ids):
                with self.live.lock:
                    scores, found = self.live.vectors.search(query.vector, len(ids), ids)
                owners = store.chunk_doc_ids([int(c) for c in found[0] if c >= 0])
                for score, cid in zip(scores[0], found[0]):
                    doc_id = owners.get(int(cid))
                    if doc_id is not None and doc_id not in out:
                        out[doc_id] = float(score)
        return out

    @reading
    def fetch(self, ranking: Iterable[tuple[str, float, int]]) -> list[Hit]:
        """The fetch phase: the Hits of (doc_id, score, chunk id) triples such as `rank` gives,
        in their order, with their scores; a document or chunk no longer stored is left out."""
        ranked = {doc_id: (float(score), int(cid)) for doc_id, score, cid in ranking}
        return hits(self.live.read_store(), ranked, 0, len(ranked))

    @reading
    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict]:
        """{doc_id: metadata} of the stored documents among `doc_ids`."""
        docs = self.live.read_store().documents(list(dict.fromkeys(document_id(d) for d in doc_ids)))
        return {doc_id: doc["metadata"] for doc_id, doc in docs.items()}

    @reading
    def keyword_statistics(self, query: str) -> KeywordStats | None:
        """This index's BM25 statistics for `query`'s terms, or None where its keyword engine
        cannot score with other statistics (fts5); a sharded index sums its shards'."""
        query = check_query(query)
        store = self.live.read_store()
        if not self.live.keywords.ready(store):
            raise SearcherError(f"{self.path}: {self.live.keywords.missing()}")
        return self.live.keywords.statistics(store, query)

    @reading
    def similar(self, doc_id: str, k: int = 10, where: dict | None = None) -> list[Hit]:
        k, _ = check_k(k)
        vector = self.document_vector(doc_id)
        if vector is None:
            return []
        found = self.search_vector(vector, k + 1, where)
        return [h for h in found if h.doc_id != document_id(doc_id)][:k]

    @reading
    def document_vector(self, doc_id: str) -> np.ndarray | None:
        """Document `doc_id`'s "more like this" vector, (1, dimension), unit length: the mean of
        its first chunks' vectors, encoded from their stored text as indexing encoded them.
        None for a document without chunks; KeyError: no such document."""
        if self.encoder is None:
            raise SearcherError(f"{self.path} was opened without its model: similar needs it")
        source = self.similar_source(doc_id)
        return None if source is None else similar_vector(self.encoder, self.budget, *source,
                                                               prefix=self.live.manifest.get("document_prefix", ""))

    @reading
    def similar_source(self, doc_id: str) -> tuple[str, list[str]] | None:
        """What `document_vector` encodes: the title and the first chunks' texts (a shard served
        without its model gives these; the front encodes them)."""
        doc_id = document_id(doc_id)
        store = self.live.read_store()
        doc = store.documents([doc_id]).get(doc_id)
        if doc is None:
            raise KeyError(f"no document with id {doc_id!r}")
        chunks = sorted(store.chunks(store.chunk_ids_of([doc_id])).values(), key=lambda c: c.position)
        if not chunks:
            return None
        return doc["title"], [c.text for c in chunks[:SIMILAR_CHUNKS]]

    @reading
    def search_vector(self, vector: np.ndarray, k: int = 10, where: dict | None = None) -> list[Hit]:
        k, _ = check_k(k)
        vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if vector.shape[1] != self.dimension:
            raise ValueError(f"a vector of this index has {self.dimension} dimensions, not {vector.shape[1]}")
        store = self.live.read_store()
        view = self.live.view(store, where)
        ranked = RETRIEVERS["dense"](view, Query("", None, Fusion(), vector), k)
        return hits(store, ranked, 0, k)

    @reading
    def get_document(self, doc_id: str) -> dict | None:
        doc_id = document_id(doc_id)
        return self.live.read_store().documents([doc_id], with_text=True).get(doc_id)


def phrase_passage(store: ContentStore, hit: Hit, query: ParsedQuery) -> Hit:
    """The hit with a passage that holds the query's phrases: its own when it does, else its
    document's first chunk that does (a long document's nearest chunk in meaning may lie far
    from the words it was required to hold); as it was when no one chunk holds them all."""
    if query.passage_holds(hit.passage):
        return hit
    chunks = sorted(store.chunks(store.chunk_ids_of([hit.doc_id])).values(), key=lambda c: c.position)
    holding = next((c for c in chunks if query.passage_holds(c.text)), None)
    if holding is None:
        return hit
    page = None
    if hit.page is not None:  # a paged document: the page of the new passage (page_starts is not in hit.metadata)
        page = page_of(store.documents([hit.doc_id])[hit.doc_id]["metadata"], holding.start)
    return replace(hit, passage=holding.text, start=holding.start, end=holding.end, chunk_id=holding.id, page=page)


class _OneSearch:
    """One search of a single index as the result page asks it (searcher/search/page.py): the
    ranking's store connection is kept for its metadata and its page."""

    def __init__(self, pipeline: QueryPipeline, query: ParsedQuery, options: SearchOptions, fusion: Fusion,
                 keyword_stats: KeywordStats | None):
        self.pipeline, self.query, self.options = pipeline, query, options
        self.fusion, self.keyword_stats = fusion, keyword_stats
        self.store: ContentStore | None = None

    def rank(self, want: int) -> Ranking:
        self.store, ranked, self.asked = self.pipeline.ranking(self.query, want, self.options.mode, self.fusion,
                                                               self.options.where, self.keyword_stats)
        return ranked

    def metadata(self, doc_ids: list[str]) -> dict[str, dict]:
        return {d: doc["metadata"] for d, doc in self.store.documents(doc_ids).items()}

    def fetch(self, ranking: Ranking) -> list[Hit]:
        found = hits(self.store, ranking, 0, len(ranking))
        if self.query.phrases:
            found = [phrase_passage(self.store, hit, self.query) for hit in found]
        cosines = self.pipeline.cosines(self.store, self.asked, [h.doc_id for h in found])
        for hit in found:
            hit.cosine = cosines.get(hit.doc_id)
            hit.bm25 = self.asked.bm25.get(hit.doc_id)
        return found
