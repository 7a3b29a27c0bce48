"""`Index`: a searchable collection of documents in one index folder, a facade over the parts
that do the work:

    opening.py    a new folder, and the model checks of opening one
    live.py       the live generation: its vectors, each thread's connection, the filter cache, commits
    querying.py   the query pipeline: rank, the result page, fetch, "more like this"
    writing.py    the write session: documents and files in, documents out
    report.py     what the index says about itself (info, disk usage), evaluation records

Reading (search, info, get_document) opens SQLite read-only and never changes a file; a kill
during a write leaves the last committed generation readable (searcher/index/live.py).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from searcher.encoding.chunker import Chunker
from searcher.encoding.encoder import Encoder, get_encoder
from searcher.encoding.queries import get_encode_queue, get_query_encoder
from searcher.errors import (IndexCorruptError, IndexExistsError, IndexIOError, IndexLockedError,  # noqa: F401
                             IndexNotFoundError, ModelMismatchError, SearcherError)
from searcher.index import opening, report
from searcher.index.live import LiveGeneration
from searcher.index.querying import QueryPipeline, reading
from searcher.index.writer import (ON_CONFLICT, UNFINISHED, IndexReport, as_document, content_hash,  # noqa: F401
                                   doc_location, title_token_ids)
from searcher.index.writing import WriteSession
from searcher.readers.documents import Document, Skipped
from searcher.readers.options import LoadOptions
from searcher.readers.path_run import PathRun  # noqa: F401 (its old home)
from searcher.sanitize import document_id
from searcher.search.access import Viewer, can_read, scoped
from searcher.search.facets import DEFAULT_FACETS, FACET_DEPTH
from searcher.search.fusion import Fusion
from searcher.search.options import SearchOptions
from searcher.search.query import ParsedQuery
from searcher.search.suggest import MAX_SUGGESTIONS, Suggestion, check_prefix
from searcher.search.results import DEFAULT_MODE, SEARCH_MODES, Hit, Results, check_k, check_mode  # noqa: F401
from searcher.storage.folder import (DATABASE, FORMAT_VERSION, MANIFEST, exclusive_lock, read_manifest,  # noqa: F401
                                     vectors_path, write_manifest)
from searcher.storage.keywords import KeywordStats, open_keywords

__all__ = [  # re-exported: these lived here before the modules above
    "DATABASE", "DEFAULT_MODE", "FORMAT_VERSION", "MANIFEST", "ON_CONFLICT", "SEARCH_MODES", "UNFINISHED",
    "Hit", "IndexCorruptError", "IndexExistsError", "IndexIOError", "IndexLockedError", "IndexNotFoundError",
    "IndexReport", "ModelMismatchError", "SearcherError", "as_document", "check_k", "check_mode", "content_hash",
    "doc_location", "get_encoder", "read_manifest", "title_token_ids", "vectors_path", "write_manifest",
]
DEFAULT_INDEX_DIR = Path("indexes") / "default"
INPUT_TYPES = ("query", "document")  # what Index.encode encodes a text as


def check_encode_items(items) -> list:
    """`Index.encode`'s input as a list: one text, or a list of texts or of token-id lists
    (no special tokens). ValueError/TypeError with the reason otherwise."""
    if isinstance(items, str):
        return [items]
    if isinstance(items, (bytes, dict)) or not hasattr(items, "__iter__"):
        raise TypeError(f"encode takes a text or a list of texts, not {type(items).__name__}")
    items = list(items)
    for position, item in enumerate(items):
        if isinstance(item, str):
            continue
        if not isinstance(item, (list, tuple)) or not all(isinstance(t, int) and not isinstance(t, bool) for t in item):
            raise TypeError(f"input {position} is neither a text nor a list of token ids (integers)")
    return items


class Index:
    """A searchable collection of documents. Create with `Index.create`, reopen with `Index.open`.

    `encoder` None: opened without its model (`Index.open(..., load_model=False)`): it can
    read, count, delete and search by keyword, not encode.
    """

    sharded = False  # one folder (searcher/search/protocol.py: ServedIndex)

    def __init__(self, path: Path, manifest: dict, encoder: Encoder | None, batch_size: int = 32):
        self.path = Path(path)
        self.queries = get_query_encoder(encoder, manifest.get("query_prefix", "")) if encoder is not None else None
        self.chunker = (Chunker(encoder.tokenizer, manifest["chunk_tokens"], manifest["overlap"])
                        if encoder is not None else None)
        self.fusion = Fusion()  # hybrid mode's fusion for this index; a search may pass its own
        device = encoder.device if encoder is not None else "cpu"
        self.live = LiveGeneration(self.path, manifest, open_keywords(self.path, manifest), use_gpu=device == "cuda")
        self.queried = QueryPipeline(self.path, self.live, manifest["dimension"], self.queries, encoder,
                                     self.chunker.budget if self.chunker is not None else None)
        self.writes = WriteSession(self.path, self.live, self.chunker, encoder, batch_size)
        try:
            self.live.reload_if_changed()  # and applies keyword changes a crash left waiting
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike = DEFAULT_INDEX_DIR, model: str | os.PathLike | None = None, *,
               chunk_tokens: int | None = None, overlap: int | None = None, pooling: str | None = None,
               device: str = "auto", batch_size: int = 32, precision: str = "auto", exist_ok: bool = False,
               index_type: str | None = None, keyword_engine: str | None = None,
               encoder: Encoder | None = None, query_prefix: str | None = None,
               document_prefix: str | None = None) -> "Index":
        """Make a new, empty index in folder `path` (or open it, if `exist_ok` and it exists).

        `precision`: `exact` (float32 torch), `fast` (int8 ONNX Runtime on CPU, fp16 on CUDA) or
        `auto` (fast when available). Both give vectors that can share an index.
        `index_type`: one of vectors.INDEX_TYPES ("auto", the default, picks by size: exact
        below 50,000 vectors, inverted lists above; see searcher/storage/vectors/).
        `query_prefix`, `document_prefix`: text put before every query and every chunk the
        index encodes (e5's "query: " and "passage: "); None takes the checkpoint's own
        (config_sentence_transformers.json `prompts`), "" none. Kept in the manifest.
        """
        path = Path(path)
        if exist_ok and (path / MANIFEST).exists():
            return cls.open(path, model=model, device=device, batch_size=batch_size, precision=precision,
                            encoder=encoder)
        opening.check_new_folder(path)
        encoder = encoder or get_encoder(model, device, pooling, batch_size, precision)
        manifest = opening.new_manifest(encoder, chunk_tokens, overlap, index_type, keyword_engine,
                                        query_prefix, document_prefix)
        opening.make_folder(path, manifest)
        return cls(path, manifest, encoder, batch_size)

    @classmethod
    def open(cls, path: str | os.PathLike = DEFAULT_INDEX_DIR, model: str | os.PathLike | None = None, *,
             device: str = "auto", batch_size: int = 32, precision: str = "auto", encoder: Encoder | None = None,
             load_model: bool = True) -> "Index":
        """Open an existing index. `model` (or a loaded `encoder`), when given, must be the one the
        index was built with. `load_model=False` opens it without a model: for reading, counting,
        deleting and keyword search (what `searcher info` and `searcher delete` need)."""
        path = Path(path)
        manifest = read_manifest(path)
        if load_model or encoder is not None:
            encoder = opening.model_for(path, manifest, model, encoder, device=device, batch_size=batch_size,
                                        precision=precision)
        return cls(path, manifest, encoder, batch_size)

    def reopen(self) -> "Index":
        """A new Index on this one's folder and loaded model (after the files were restored or
        replaced); ModelMismatchError if the folder now holds an index of another model."""
        manifest = read_manifest(self.path)
        opening.check_reopened(self.path, manifest, self.encoder)
        return Index(self.path, manifest, self.encoder, self.batch_size)

    @classmethod
    def open_or_create(cls, path=DEFAULT_INDEX_DIR, model=None, **options) -> "Index":
        """Open the index in `path`, or create it there with `options` (those of `create`; an
        existing index keeps the chunk settings, index type and keyword engine it was made with)."""
        if (Path(path) / MANIFEST).exists():
            return cls.open(path, model, **{k: options[k] for k in ("device", "batch_size", "precision", "encoder")
                                            if k in options})
        return cls.create(path, model, **options)

    def close(self) -> None:
        """Close every connection this index opened (each thread's read connection and the writer's)."""
        self.live.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- what it is ----------------------------------------------------------------------
    manifest = property(lambda self: self.live.manifest)
    keywords = property(lambda self: self.live.keywords)
    vectors = property(lambda self: self.live.vectors)
    generation = property(lambda self: self.live.generation,
                          doc="The generation this process reads (the live one as of its last reload).")
    keyword_engine = property(lambda self: self.live.keywords.name)
    analyzer = property(lambda self: self.live.keywords.analyzer, doc="What the highlighter marks.")
    index_type = property(lambda self: self.manifest.get("index_type", "flat"),
                          doc="The manifest's index type; indexes made before index types existed are flat.")
    store = property(lambda self: self.live.read_store(), doc="This thread's read-only connection to the database.")
    batch_size = property(lambda self: self.writes.batch_size)

    @property
    def encoder(self) -> Encoder | None:
        return self.writes.encoder

    @encoder.setter
    def encoder(self, encoder: Encoder | None) -> None:
        """Another encoder of the same model, for what follows (writes and "more like this")."""
        self.writes.encoder = self.queried.encoder = encoder

    @property
    def commit_chunks(self) -> int:
        return self.writes.commit_chunks

    @commit_chunks.setter
    def commit_chunks(self, value: int) -> None:
        self.writes.commit_chunks = value

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None,
                          persist: bool = False) -> None:
        """Change nprobe (ivf, ivfpq) or efSearch (hnsw) for this process, or with `persist` in the manifest too."""
        params = {k: int(v) for k, v in (("nprobe", nprobe), ("ef_search", ef_search)) if v is not None}
        self.live.set_search_params(params, persist)

    @reading
    def __len__(self) -> int:
        return self.live.read_store().count_documents()

    @reading
    def count(self, access: Viewer | None = None) -> int:
        """The documents `access` may read (None: all, len(index))."""
        if access is None:
            return len(self)
        return self.live.count(self.live.read_store(), scoped(None, access))

    @reading
    def committed_generation(self) -> int:
        """The generation the database has committed now, as this thread's connection reads it."""
        return self.live.read_store().generation

    @reading
    def live_generation(self) -> int:
        """The generation searches read now (reloaded first if another process committed)."""
        return self.live.current()[1]

    @reading
    def chunk_vectors(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(generation, chunk ids, vectors) of the live generation, for whole-corpus views
        (searcher/quality/corpus_map.py): exact, or reconstructed for ivfpq."""
        return self.live.export()

    @reading
    def info(self) -> dict:
        """What the index holds and how it is set up: counts, model, engines, search
        parameters, generation and the time of its commit, sizes on disk (`size_bytes`, and
        `disk` by kind), and the stored `searcher eval` results (`evaluations`, newest first)."""
        return report.index_info(self.path, self.manifest, self.live, self.encoder)

    @reading
    def counts(self) -> dict[str, int]:
        """info()'s counts (documents, chunks, vectors, keyword_pending, generation) without its
        walk of the folder: cheap enough for every /metrics scrape (searcher/web/metrics.py)."""
        return report.index_counts(self.live)

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk by kind (searcher/index/report.py)."""
        return report.disk_usage(self.path, self.live.generation, self.live.keywords.path)

    def record_evaluation(self, result: dict, wait: float | None = None) -> None:
        """Store `result` (a `searcher eval` run's figures, with `dataset`, `split` and `mode`),
        replacing the last one of the same dataset, split and mode; it changes no generation.
        IndexLockedError if another writer holds the lock `wait` seconds (default RECORD_WAIT)."""
        report.record_evaluation(self.path, self.live, result, wait)

    # -- reading -------------------------------------------------------------------------
    def parse(self, query: str | ParsedQuery, syntax: bool = True) -> ParsedQuery:
        """The query as this index reads it (searcher/search/query.py; plain words with `syntax=False`)."""
        return self.queried.parse(query, syntax)

    def known_fields(self, names: Iterable[str]) -> set[str]:
        return self.queried.known_fields(names)

    def spelling(self, words: list[str]) -> dict:
        """{word: (edits, chunks, the word meant)}: how this index reads each typed word (0 edits:
        it holds the word), for typo correction here and over the shards of a sharded index."""
        return self.queried.spelling(list(words))

    def search(self, query: str | ParsedQuery, k: int = 10, offset: int = 0, mode: str | None = None,
               fusion: Fusion | None = None, where: dict | None = None, sort: str | None = None,
               recency: float | None = None, now: datetime | None = None,
               keyword_stats: KeywordStats | None = None, syntax: bool = True,
               access: Viewer | None = None) -> Results:
        """The top `k` documents for `query` (after skipping `offset`), each scored by its best chunk.

        `query`: the query language (searcher/search/query.py: "a phrase", -word, a OR b, pre*,
        field:value), or plain words with `syntax=False`. `mode`: "dense", "keyword" or
        "hybrid" (fused by `fusion`, else this index's); None: DEFAULT_MODE. `where`: a filter
        applied before ranking, ANDed with the query's fields. `sort`, `recency`: see
        searcher/search/options.py. `keyword_stats`: BM25 statistics to score with instead of
        this index's own (a sharded index passes its shards' sum). `access`: who is asking
        (searcher/search/access.py): only the documents they may read are ranked; None: all.
        """
        options = SearchOptions(k, offset, mode, scoped(where, access), sort, recency, now=now)
        return self._answer(query, syntax, options, fusion, keyword_stats)[0]

    def _answer(self, query, syntax: bool, options: SearchOptions, fusion: Fusion | None,
                keyword_stats: KeywordStats | None = None) -> tuple[Results, dict[str, dict]]:
        """The page and facets of a search: its typos corrected (the suggestion says so) and
        whether a hit is close in meaning."""
        parsed, suggestion = self.queried.spelled(self.parse(query, syntax))
        hits, counts = self.queried.page(parsed, options, fusion or self.fusion, keyword_stats)
        return Results(hits, suggestion=suggestion, close_match=self.queried.close_match(hits, parsed)), counts

    def facets(self, query: str | ParsedQuery, fields: Iterable[str] = DEFAULT_FACETS, where: dict | None = None,
               mode: str | None = None, depth: int = FACET_DEPTH, fusion: Fusion | None = None,
               syntax: bool = True, access: Viewer | None = None) -> dict[str, dict]:
        """{field: {value: count}} among the best `depth` documents for `query` within `where`
        (and what `access` may read)."""
        options = SearchOptions(1, 0, mode, scoped(where, access), facets=tuple(fields), facet_depth=depth)
        parsed, _ = self.queried.spelled(self.parse(query, syntax))
        return self.queried.page(parsed, options, fusion or self.fusion)[1]

    def search_with_facets(self, query: str | ParsedQuery, k: int = 10, offset: int = 0,
                           fields: Iterable[str] = DEFAULT_FACETS, *, mode: str | None = None,
                           fusion: Fusion | None = None, where: dict | None = None, sort: str | None = None,
                           recency: float | None = None, now: datetime | None = None,
                           facet_depth: int = FACET_DEPTH, keyword_stats: KeywordStats | None = None,
                           syntax: bool = True, access: Viewer | None = None) -> tuple[Results, dict[str, dict]]:
        """`search` and `facets` from one ranking (what the search page shows)."""
        options = SearchOptions(k, offset, mode, scoped(where, access), sort, recency, tuple(fields), facet_depth, now)
        return self._answer(query, syntax, options, fusion, keyword_stats)

    def similar(self, doc_id: str, k: int = 10, where: dict | None = None, access: Viewer | None = None) -> Results:
        """The `k` documents nearest in meaning to document `doc_id`, never itself, optionally
        filtered by `where`: a dense search for its `document_vector`. KeyError: no such document
        (or one `access` may not read: a hidden document is not said to exist)."""
        if access is not None and not can_read(access, self.queried.metadata([doc_id]).get(document_id(doc_id))):
            raise KeyError(f"no document with id {doc_id!r}")
        return Results(self.queried.similar(doc_id, k, scoped(where, access)))

    def search_vector(self, vector: np.ndarray, k: int = 10, where: dict | None = None,
                      access: Viewer | None = None) -> list[Hit]:
        """The `k` documents whose best chunk is nearest to `vector` (a unit vector of the
        index's dimension, e.g. a `document_vector`), optionally filtered by `where`."""
        return self.queried.search_vector(vector, k, scoped(where, access))

    def get_document(self, doc_id: str, access: Viewer | None = None) -> dict | None:
        """The stored document (id, source, title, metadata, text, added_at), or None (also
        for one `access` may not read). Ids are strings; another value is looked up by its
        str() (searcher/sanitize.py)."""
        doc = self.queried.get_document(doc_id)
        return doc if doc is None or can_read(access, doc.get("metadata")) else None

    def suggest(self, prefix: str, limit: int = MAX_SUGGESTIONS, fresh: bool = False,
                access: Viewer | None = None) -> list[Suggestion]:
        """Titles and the index's words that start with `prefix`, most frequent first, at most
        `limit` (searcher/search/suggest.py). Right after a commit the last generation's words
        answer while the new ones are counted; `fresh` waits for them. `access`: only the
        titles of documents it may read (the words are the whole collection's). ValueError: a
        bad prefix."""
        check_prefix(prefix)
        return self.queried.vocabulary(fresh).suggest(prefix, limit, access)

    # -- as a shard of a sharded index (searcher/search/protocol.py: Shard; the work and its
    # documentation in searcher/index/querying.py) ----------------------------------------------
    @reading
    def rank(self, query: str | ParsedQuery, k: int = 10, mode: str | None = None, fusion: Fusion | None = None,
             where: dict | None = None, keyword_stats: KeywordStats | None = None,
             query_vector: np.ndarray | None = None, syntax: bool = True) -> list[tuple[str, float, int]]:
        """The query phase of `search`: its best `k` documents as (doc_id, score, chunk id of the
        passage), best first, without their text. `query_vector`: the query encoded once by the
        sharded index for all its shards (a shard served on Ray has no model of its own); a
        sharded index passes the query parsed once, with the fields of all its shards."""
        options = SearchOptions(k, 0, mode, where)
        _, ranked = self.queried.rank(self.parse(query, syntax), options.k, options.mode, fusion or self.fusion,
                                      options.where, keyword_stats, query_vector)
        return [(doc_id, score, cid) for doc_id, (score, cid) in ranked.items()]

    def fetch(self, ranking: Iterable[tuple[str, float, int]]) -> list[Hit]:
        return self.queried.fetch(ranking)

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict]:
        return self.queried.metadata(doc_ids)

    def keyword_statistics(self, query: str) -> KeywordStats | None:
        return self.queried.keyword_statistics(query)

    def document_vector(self, doc_id: str) -> np.ndarray | None:
        return self.queried.document_vector(doc_id)

    def similar_source(self, doc_id: str) -> tuple[str, list[str]] | None:
        return self.queried.similar_source(doc_id)

    # -- encoding ------------------------------------------------------------------------
    def encode(self, texts: str | Iterable[str], *, input_type: str = "document", batch_size: int | None = None,
               truncate: bool = True) -> np.ndarray:
        """Texts to an (n, dimension) float32 array of unit vectors, as this index encodes them
        (bert-as-service's `encode`): `input_type` "document" as a chunk is indexed (its
        document prefix first; a document's title, which indexing also puts first, is not
        added), "query" as a search encodes its query. Texts longer than the model's limit are
        cut, or with `truncate=False` refused (searcher.encoding.encoder.InputTooLong). Token-id
        lists (no special tokens) are taken too. `batch_size`: texts per forward pass."""
        return self.embed(texts, input_type, batch_size, truncate)[0]

    def embed(self, items, input_type: str = "document", batch_size: int | None = None,
              truncate: bool = True) -> tuple[np.ndarray, int]:
        """`encode`, and how many tokens the model read (special tokens and prefixes counted).
        Concurrent calls share forward passes with each other and with searches' queries
        (searcher/encoding/queries.py: `EncodeQueue`)."""
        if self.encoder is None:
            raise SearcherError(f"{self.path} was opened without its model: it cannot encode")
        if input_type not in INPUT_TYPES:
            raise ValueError(f"input_type must be one of {', '.join(INPUT_TYPES)}, not {input_type!r}")
        items = check_encode_items(items)
        if not items:
            return np.zeros((0, self.encoder.dimension), np.float32), 0
        encoder, prefix, made = self.encoder, self.manifest.get(f"{input_type}_prefix", ""), []

        def prepare():  # in the queue's leader thread, the one that uses the tokenizer
            made.extend(encoder.model_inputs(items, prefix, truncate=truncate))
            return made

        vectors = get_encode_queue(encoder).encode(prepare, len(items), batch_size)
        return vectors, sum(len(ids) for ids in made)

    # -- writing -------------------------------------------------------------------------
    def add_paths(self, paths: Iterable[str | os.PathLike], options: LoadOptions | None = None, progress=None,
                  prune: bool = False, on_conflict: str = "skip", accept: Callable[[str], bool] | None = None,
                  encoder=None) -> IndexReport:
        """Index every supported file under `paths` (files and folders, recursively).

        With `prune`, documents that came from under `paths` but are gone (their file was
        removed, or a row left a file that was read in full) are deleted; a file that could
        not be read this time keeps its documents. `accept(source)`, when given, is asked once
        per file after it was read: a file it refuses is left out as if it could not be read
        (the folder watcher refuses files that changed meanwhile). `on_conflict`, `encoder`:
        see `add_documents`."""
        return self.writes.add_paths(paths, options, progress, prune, on_conflict, accept, encoder)

    def add_documents(self, documents: Iterable[Document | dict | Skipped], progress: Callable[[int], None] | None = None,
                      on_conflict: str = "skip", encoder=None) -> IndexReport:
        """Add or replace documents (same id: replaced; same content: left alone, no encoding).

        `progress(n)` is called as chunks are encoded. Skipped items and anything that cannot
        be a document go into the report with the reason. `on_conflict`: for a document whose
        id belongs to one from another source, "skip" it (the default; reported with both
        places) or "replace" the other. `encoder`: what encodes the chunks instead of the
        index's own, for this call: one of the same model (searcher.cluster.ray_encoder.RayEncoder)."""
        return self.writes.add_documents(documents, progress, on_conflict, encoder)

    def delete(self, doc_ids: str | Iterable[str]) -> int:
        """Remove documents: one id or an iterable of ids. Returns how many were there."""
        return self.writes.delete(doc_ids)
