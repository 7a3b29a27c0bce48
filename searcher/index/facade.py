"""`Index`: a searchable collection of documents in one index folder, a thin front over the
modules that do the work:

    folder.py      the folder: manifest, write lock, generations (load, commit), checksums
    writer.py      writing: batching, chunking, encoding, commit points
    retrieval.py   searching: dense, keyword and hybrid retrievers, one signature
    vectors/       vector backends (FAISS) behind one interface, chosen by the manifest
    keywords/      keyword engines (FTS5, tantivy) behind one interface, chosen by the manifest
    store.py       the SQLite database of documents and chunks

A commit writes the next vectors file (temp file, fsync, rename) and its checksum, then
commits the SQLite transaction that names it, then removes the old file. A kill at any
point leaves the last committed pair readable. Reading (search, info, get_document) opens
SQLite read-only and never changes a file (the one file a reader writes is a cache beside
them: the map of the corpus, searcher/quality/corpus_map.py).

Threads: searches run in parallel, each thread on its own SQLite connection. A write in
this process encodes without holding the search lock; only changing the vectors in memory
and swapping in the new generation take it, so searches answer while a write encodes.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from searcher.encoding.chunker import Chunker
from searcher.encoding.encoder import Encoder, get_encoder, resolve_model_path
from searcher.errors import (IndexCorruptError, IndexExistsError, IndexIOError, IndexLockedError, IndexNotFoundError,
                     ModelMismatchError, SearcherError)
from searcher.storage.folder import (DATABASE, FORMAT_VERSION, MANIFEST, SHARDS_MANIFEST, commit_generation, exclusive_lock,
                     load_generation, read_manifest, vectors_path, write_failed, write_manifest, write_vectors)
from searcher.search.facets import (DEFAULT_FACETS, FACET_DEPTH, check_facet_fields, check_recency, check_sort,
                     count_facets, reorder)
from searcher.search.filter_columns import FilterColumns, MovedOn
from searcher.search.filters import compile_where
from searcher.search.fusion import Fusion
from searcher.storage.keywords import KeywordStats, check_keyword_engine, open_keywords
from searcher.readers.loaders import Document, LoadOptions, Skipped, load_paths
from searcher.encoding.queries import get_query_encoder
from searcher.search.retrieval import (DEFAULT_MODE, RETRIEVERS, SEARCH_MODES, Hit, Query, View, check_k, check_mode,
                        check_query, hits)
from searcher.sanitize import clean_text, document_id
from searcher.storage.store import ContentStore, readable
from searcher.storage.vectors import VectorBackend, backend_class, check_index_type, empty_vectors
from searcher.index.writer import (COMMIT_CHUNKS, ON_CONFLICT, UNFINISHED, Changes, IndexReport, Writer, as_document,
                     content_hash, doc_location, stored_chunk_input, title_token_ids)

__all__ = [  # re-exported: these lived here before the modules above
    "DATABASE", "DEFAULT_MODE", "FORMAT_VERSION", "MANIFEST", "ON_CONFLICT", "SEARCH_MODES", "UNFINISHED",
    "Hit", "IndexCorruptError", "IndexExistsError", "IndexIOError", "IndexLockedError", "IndexNotFoundError",
    "IndexReport", "ModelMismatchError", "SearcherError", "as_document", "check_k", "check_mode", "content_hash",
    "doc_location", "get_encoder", "read_manifest", "title_token_ids", "vectors_path", "write_manifest",
]
DEFAULT_INDEX_DIR = Path("indexes") / "default"
FILTER_CACHE_SIZE = 32
SIMILAR_CHUNKS = 8  # chunks of a document that make its "more like this" vector
RECORD_WAIT = 10.0  # seconds record_evaluation waits for another process's write lock
log = logging.getLogger(__name__)


def _under(source: str, roots: set[str]) -> bool:
    """Whether path `source` is one of `roots` (absolute paths) or lies under one: its
    ancestors are looked up, so many roots (a watcher's batch of files) cost no more."""
    path = source
    while True:
        if path in roots:
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


class PathRun:
    """One `add_paths` run's reading: the documents under `paths` (the files `accept` takes,
    asked once per file), and what it read, so that `gone` can tell which stored documents a
    prune removes. Shared by `Index` and the sharded index (searcher/cluster/sharded.py)."""

    def __init__(self, paths: Iterable[str | os.PathLike], options: LoadOptions | None = None,
                 accept: Callable[[str], bool] | None = None):
        self.paths = [Path(os.path.abspath(p)) for p in paths]
        self.options = options
        self.accept = accept
        self.seen_ids: set[str] = set()
        self.read_sources: set[str] = set()
        self._decided: dict[str, bool] = {}

    def documents(self) -> Iterator[Document | Skipped]:
        for item in load_paths(self.paths, self.options):
            if isinstance(item, Document):
                if self.accept is not None:
                    if item.source not in self._decided:
                        self._decided[item.source] = bool(self.accept(item.source))
                    if not self._decided[item.source]:
                        continue
                self.seen_ids.add(item.id)
                self.read_sources.add(item.source)
            yield item

    def gone(self, stored: Iterable[tuple[str, str]]) -> list[str]:
        """The ids among `stored` (id, source) that came from under the run's paths but were not
        read again: their file was removed, or a row left a file that was read in full. A file
        that could not be read this time keeps its documents."""
        roots = {clean_text(str(p)) for p in self.paths}
        return [doc_id for doc_id, source in stored
                if doc_id not in self.seen_ids and source and _under(source, roots)
                and (source in self.read_sources or not Path(source).exists())]


def reading(method):
    """Index reads: SQLite's errors about a damaged database become IndexCorruptError."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with readable(self.path / DATABASE):
            return method(self, *args, **kwargs)
    return wrapper


def similar_vector(encoder, budget: int, title: str, texts: list[str]) -> np.ndarray:
    """A document's "more like this" vector from its `similar_source`: its chunks encoded as
    indexing encoded them (title tokens first, cut to the chunker's `budget`), averaged, unit length."""
    inputs = [stored_chunk_input(encoder, title, text, budget) for text in texts]
    vector = encoder.encode_ids(inputs).mean(axis=0, keepdims=True)
    vector /= max(float(np.linalg.norm(vector)), 1e-12)
    return vector.astype(np.float32)


class Index:
    """A searchable collection of documents. Create with `Index.create`, reopen with `Index.open`.

    `encoder` None: opened without its model (`Index.open(..., load_model=False)`): it can
    read, count, delete and search by keyword, not encode.
    """

    def __init__(self, path: Path, manifest: dict, encoder: Encoder | None, batch_size: int = 32):
        self.path = Path(path)
        self.manifest = manifest
        self.encoder = encoder
        self.batch_size = batch_size
        self.queries = get_query_encoder(encoder) if encoder is not None else None
        self.chunker = (Chunker(encoder.tokenizer, manifest["chunk_tokens"], manifest["overlap"])
                        if encoder is not None else None)
        self.commit_chunks = COMMIT_CHUNKS
        self.fusion = Fusion()  # hybrid mode's fusion for this index; a search may pass its own
        self.keywords = open_keywords(self.path, manifest)
        self._lock = threading.RLock()  # the live vectors and generation, and FAISS calls
        self._write_lock = threading.Lock()  # one writer at a time in this process
        self._writing = False  # a write session of this process keeps the vectors current itself
        self._readers = threading.local()
        self._stores: list[ContentStore] = []  # every connection opened, closed by close()
        self._owners: dict[int, threading.Thread] = {}  # id of a read connection -> its thread
        self._write_store: ContentStore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._generation = -1
        self._filter_cache: OrderedDict = OrderedDict()  # (generation, filter) -> allowed chunk ids
        self._columns: FilterColumns | None = None  # the live generation's, for filters (built at the first)
        self.vectors: VectorBackend | None = None
        try:
            self._reload_if_changed()  # and applies keyword changes a crash left waiting
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | os.PathLike = DEFAULT_INDEX_DIR,
        model: str | os.PathLike | None = None,
        *,
        chunk_tokens: int | None = None,
        overlap: int | None = None,
        pooling: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        precision: str = "auto",
        exist_ok: bool = False,
        index_type: str | None = None,
        keyword_engine: str | None = None,
        encoder: Encoder | None = None,
    ) -> "Index":
        """Make a new, empty index in folder `path` (or open it, if `exist_ok` and it exists).

        `precision`: `exact` (float32 torch), `fast` (int8 ONNX Runtime on CPU, fp16 on CUDA) or
        `auto` (fast when available). Both give vectors that can share an index.
        `index_type`: one of vectors.INDEX_TYPES ("auto", the default, picks by size: exact
        below 50,000 vectors, inverted lists above; see searcher/storage/vectors/).
        """
        path = Path(path)
        index_type = check_index_type(index_type)
        keyword_engine = check_keyword_engine(keyword_engine)
        if (path / MANIFEST).exists():
            if exist_ok:
                return cls.open(path, model=model, device=device, batch_size=batch_size, precision=precision,
                                encoder=encoder)
            raise IndexExistsError(f"an index already exists in {path}; open it instead")
        if path.exists() and not path.is_dir():  # checked before the model loads
            raise IndexExistsError(f"{path} exists and is not a folder; an index is a folder")
        if (path / SHARDS_MANIFEST).exists():
            raise IndexExistsError(f"a sharded index already exists in {path}; open it with searcher.open_index")
        encoder = encoder or get_encoder(model, device, pooling, batch_size, precision)
        chunk_tokens = chunk_tokens or encoder.max_tokens
        if not 8 <= chunk_tokens <= encoder.position_limit:
            raise ValueError(
                f"chunk_tokens must be between 8 and the model's limit of {encoder.position_limit}"
            )
        if overlap is None:
            overlap = chunk_tokens // 10
        Chunker(encoder.tokenizer, chunk_tokens, overlap)  # validates the pair
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": encoder.name,
            "model_fingerprint": encoder.fingerprint,
            "dimension": encoder.dimension,
            "pooling": encoder.pooling,
            "chunk_tokens": chunk_tokens,
            "overlap": overlap,
            "index_type": index_type,
            "vector_backend": "faiss",
            "keyword_engine": keyword_engine,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        manifest.update(backend_class(manifest).manifest_fields(manifest))
        path.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(path):
            store = ContentStore(path / DATABASE, create=True)
            try:
                generation = store.generation
                checksums = write_vectors(path, generation, empty_vectors(manifest))
                with store.db.atomic():
                    store.set_state(generation, store.state("next_chunk_id"), checksums)
                open_keywords(path, manifest).prepare(store)
            finally:
                store.close()
            # The manifest goes last: a folder without one is not an index yet.
            write_manifest(path, manifest)
        return cls(path, manifest, encoder, batch_size)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike = DEFAULT_INDEX_DIR,
        model: str | os.PathLike | None = None,
        *,
        device: str = "auto",
        batch_size: int = 32,
        precision: str = "auto",
        encoder: Encoder | None = None,
        load_model: bool = True,
    ) -> "Index":
        """Open an existing index. `model` (or a loaded `encoder`), when given, must be the one the
        index was built with. `load_model=False` opens it without a model: for reading, counting,
        deleting and keyword search (what `searcher info` and `searcher delete` need)."""
        path = Path(path)
        manifest = read_manifest(path)
        if not load_model and encoder is None:
            return cls(path, manifest, None, batch_size)
        if model is not None or encoder is not None:
            built = manifest["model"]
            if encoder is None:
                encoder = get_encoder(resolve_model_path(model), device, manifest["pooling"], batch_size, precision)
            if encoder.fingerprint != manifest["model_fingerprint"] or encoder.dimension != manifest["dimension"]:
                raise ModelMismatchError(
                    f"{path} was built with model {built} (fingerprint {manifest['model_fingerprint']}, "
                    f"dimension {manifest['dimension']}), not {encoder.name} (fingerprint "
                    f"{encoder.fingerprint}, dimension {encoder.dimension}); its vectors would be "
                    f"meaningless for this model. Open it without a model, or build a new index."
                )
        else:
            try:
                encoder = get_encoder(manifest["model"], device, manifest["pooling"], batch_size, precision)
            except Exception as e:
                raise ModelMismatchError(
                    f"{path} was built with model {manifest['model']}, which cannot be loaded here: {e}"
                ) from e
            if encoder.fingerprint != manifest["model_fingerprint"]:
                raise ModelMismatchError(
                    f"the model at {manifest['model']} has changed since {path} was built "
                    f"(fingerprint {encoder.fingerprint}, expected {manifest['model_fingerprint']})"
                )
        return cls(path, manifest, encoder, batch_size)

    def reopen(self) -> "Index":
        """A new Index on this one's folder and loaded model (after the files were restored or
        replaced); ModelMismatchError if the folder now holds an index of another model."""
        manifest = read_manifest(self.path)
        if self.encoder is None:
            return Index(self.path, manifest, None, self.batch_size)
        if (manifest["model_fingerprint"], manifest["dimension"]) != (self.encoder.fingerprint, self.encoder.dimension):
            raise ModelMismatchError(f"{self.path} now holds an index built with model {manifest['model']}, "
                                     f"not the loaded {self.encoder.name}")
        return Index(self.path, manifest, self.encoder, self.batch_size)

    @classmethod
    def open_or_create(cls, path=DEFAULT_INDEX_DIR, model=None, **options) -> "Index":
        """Open the index in `path`, or create it there with `options` (those of `create`; an
        existing index keeps the chunk settings, index type and keyword engine it was made with)."""
        if (Path(path) / MANIFEST).exists():
            return cls.open(path, model, **{k: options[k] for k in ("device", "batch_size", "precision", "encoder")
                                            if k in options})
        return cls.create(path, model, **options)

    @property
    def keyword_engine(self) -> str:
        """The name of the index's keyword engine (the manifest's)."""
        return self.keywords.name

    @property
    def index_type(self) -> str:
        """The manifest's index type; indexes made before index types existed are flat."""
        return self.manifest.get("index_type", "flat")

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None,
                          persist: bool = False) -> None:
        """Change nprobe (ivf, ivfpq) or efSearch (hnsw) for this process, or with `persist` in the manifest too."""
        params = {k: int(v) for k, v in (("nprobe", nprobe), ("ef_search", ef_search)) if v is not None}
        with self._lock:
            self.manifest = {**self.manifest, "search_params": {**self.manifest.get("search_params", {}), **params}}
            if self.vectors is not None:
                self.vectors.set_search_params(**params)
            if persist:
                with exclusive_lock(self.path):
                    manifest = read_manifest(self.path)
                    manifest["search_params"] = {**manifest.get("search_params", {}), **params}
                    try:
                        write_manifest(self.path, manifest)
                    except OSError as e:
                        raise IndexIOError(e.errno or errno.EIO, (
                            f"cannot write {self.path / MANIFEST}: {e.strerror or e}; the search parameters "
                            f"apply to this process, the manifest on disk may not have them")) from e

    def close(self) -> None:
        """Close every connection this index opened (each thread's read connection and the writer's)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for store in self._stores:
                store.close()
            self._stores, self._owners = [], {}
            self._write_store = None
            self._readers = threading.local()
            self.keywords.close()

    @property
    def store(self) -> ContentStore:
        """This thread's read-only connection to the index's database."""
        return self._read_store()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _reload_if_changed(self) -> None:
        """Load the live generation's vectors if it moved (another process committed); they are
        verified against the checksum and chunk count SQLite holds (folder.load_generation)."""
        with self._lock, readable(self.path / DATABASE):
            if self._writing:
                return
            store = self._read_store()
            if store.generation == self._generation:
                return
            self._generation, self.vectors = load_generation(self.path, self.manifest, store,
                                                             use_gpu=self._device() == "cuda")
            self.keywords.refresh()
            self._catch_up_keywords()

    def _catch_up_keywords(self) -> None:
        """Apply keyword changes a killed writer committed in SQLite but did not apply (tantivy),
        on open and whenever the generation moves, when no process is writing (a writer applies
        them itself). Anything that stops it is logged: keyword hits are checked against the
        chunks, so a lagging engine costs recall, never a wrong hit."""
        if self._writing or not self.keywords.pending(self._read_store()):
            return
        if not self._write_lock.acquire(blocking=False):  # this process is writing: it applies them
            return
        try:
            with exclusive_lock(self.path):
                store = ContentStore(self.path / DATABASE)
                try:
                    self.keywords.catch_up(store)
                finally:
                    store.close()
        except IndexLockedError:
            log.debug("%s: a writer is at work; it applies the waiting keyword changes", self.path)
        except (SearcherError, OSError, sqlite3.Error) as e:
            log.warning("%s: keyword changes committed but not applied yet: %s", self.path, e)
        finally:
            self._write_lock.release()

    def _device(self) -> str:
        return self.encoder.device if self.encoder is not None else "cpu"

    # -- reading -------------------------------------------------------------------------
    @reading
    def __len__(self) -> int:
        return self._read_store().count_documents()

    @reading
    def search(self, query: str, k: int = 10, offset: int = 0, mode: str | None = None,
               fusion: Fusion | None = None, where: dict | None = None, sort: str | None = None,
               recency: float | None = None, now: datetime | None = None,
               keyword_stats: KeywordStats | None = None) -> list[Hit]:
        """The top `k` documents for `query` (after skipping `offset`), each scored by its best chunk.

        `mode`: "dense" (cosine of the BERT vectors), "keyword" (BM25 over the chunks' words),
        or "hybrid" (the two fused by `fusion`, else this index's `fusion`); None means
        DEFAULT_MODE. In hybrid mode Hit.score is the fused score. `where`: a filter
        (searcher/search/filters.py) applied before ranking: the hits are the best of the documents
        that match it, as an exhaustive search over those alone would rank them (exactly so
        with the flat index type).

        `sort="modified"` orders the best FACET_DEPTH documents (or k, if more; its pages end
        there) by their `modified` date, newest first; `recency` (a half-life in days) weights each of
        their scores by age, halving it for every half-life before `now` (default: the present).

        `keyword_stats`: BM25 statistics to score the keyword side with instead of this index's
        own (a sharded index passes its shards' sum: searcher/cluster/sharded.py); see `keyword_statistics`.
        """
        return self.search_with_facets(query, k, offset, (), mode=mode, fusion=fusion, where=where, sort=sort,
                                       recency=recency, now=now, keyword_stats=keyword_stats)[0]

    @reading
    def facets(self, query: str, fields: Iterable[str] = DEFAULT_FACETS, where: dict | None = None,
               mode: str | None = None, depth: int = FACET_DEPTH, fusion: Fusion | None = None) -> dict[str, dict]:
        """{field: {value: count}} among the best `depth` documents for `query` within `where`
        (searcher/search/facets.py: a field is a metadata key, or `year` of `modified`)."""
        return self.search_with_facets(query, 1, 0, fields, mode=mode, fusion=fusion, where=where,
                                       facet_depth=depth)[1]

    @reading
    def search_with_facets(self, query: str, k: int = 10, offset: int = 0, fields: Iterable[str] = DEFAULT_FACETS,
                           *, mode: str | None = None, fusion: Fusion | None = None, where: dict | None = None,
                           sort: str | None = None, recency: float | None = None, now: datetime | None = None,
                           facet_depth: int = FACET_DEPTH,
                           keyword_stats: KeywordStats | None = None) -> tuple[list[Hit], dict[str, dict]]:
        """`search` and `facets` from one ranking (what the search page shows): the page of hits,
        and the counts of `fields` among the best `facet_depth` documents."""
        sort, recency = check_sort(sort), check_recency(recency)
        fields = check_facet_fields(fields)
        k, offset = check_k(k, offset)
        facet_depth, _ = check_k(facet_depth)
        reordered = sort != "relevance" or recency is not None
        # A re-ordered search orders one window of the ranking, whatever the offset, so its pages
        # follow on from each other: the best FACET_DEPTH documents (or k, if more); pages end there.
        order_depth = max(k, FACET_DEPTH) if reordered else offset + k
        store, ranked = self._rank(query, max(order_depth, facet_depth if fields else 0), mode, fusion, where,
                                   keyword_stats)
        metadatas = {}
        if reordered or fields:
            metadatas = {d: doc["metadata"] for d, doc in store.documents(list(ranked)).items()}
        counts = count_facets((metadatas[d] for d in list(ranked)[:facet_depth] if d in metadatas), fields) \
            if fields else {}
        if reordered:
            ranked = reorder(dict(list(ranked.items())[:order_depth]), metadatas, sort, recency,
                             now or datetime.now(timezone.utc))
        return hits(store, ranked, offset, offset + k), counts

    def _rank(self, query: str, want: int, mode: str | None, fusion: Fusion | None,
              where: dict | None, keyword_stats: KeywordStats | None = None,
              query_vector: np.ndarray | None = None) -> tuple[ContentStore, dict]:
        """(this thread's store, the best `want` documents {doc_id: (score, chunk id)}, best first)."""
        mode = check_mode(mode)
        query = check_query(query)
        store = self._read_store()
        if mode != "dense" and not self.keywords.ready(store):
            raise SearcherError(f"{self.path}: {self.keywords.missing()}")
        if query_vector is not None:
            query_vector = np.asarray(query_vector, dtype=np.float32).reshape(1, -1)
            if query_vector.shape[1] != self.manifest["dimension"]:
                raise ValueError(f"the query vector has {query_vector.shape[1]} dimensions; "
                                 f"{self.path} holds vectors of {self.manifest['dimension']}")
        elif mode != "keyword" and self.queries is None:
            raise SearcherError(f"{self.path} was opened without its model: only mode='keyword' can search")
        view = self._view(store, where)
        ranked = RETRIEVERS[mode](view, Query(query, self.queries.encode if self.queries else None,
                                              fusion or self.fusion, _vector=query_vector,
                                              keyword_stats=keyword_stats), want)
        return store, ranked

    @reading
    def rank(self, query: str, k: int = 10, mode: str | None = None, fusion: Fusion | None = None,
             where: dict | None = None, keyword_stats: KeywordStats | None = None,
             query_vector: np.ndarray | None = None) -> list[tuple[str, float, int]]:
        """The query phase of `search`: its best `k` documents as (doc_id, score, chunk id of the
        passage), best first, without reading their text. A sharded index merges its shards'
        and then `fetch`es only the page it shows (searcher/cluster/sharded.py). `query_vector`: the
        query's vector, encoded once by the sharded index for all its shards (a shard served
        on Ray has no model of its own: searcher/cluster/ray_serving.py)."""
        k, _ = check_k(k)
        _, ranked = self._rank(query, k, mode, fusion, where, keyword_stats, query_vector)
        return [(doc_id, score, cid) for doc_id, (score, cid) in ranked.items()]

    @reading
    def fetch(self, ranking: Iterable[tuple[str, float, int]]) -> list[Hit]:
        """The fetch phase: the Hits (documents and passages) of (doc_id, score, chunk id)
        triples such as `rank` gives, in their order, with their scores; a document or chunk
        no longer stored is left out."""
        ranked = {doc_id: (float(score), int(cid)) for doc_id, score, cid in ranking}
        return hits(self._read_store(), ranked, 0, len(ranked))

    @reading
    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict]:
        """{doc_id: metadata} of the stored documents among `doc_ids` (what facets count and
        sort and recency order by)."""
        docs = self._read_store().documents(list(dict.fromkeys(document_id(d) for d in doc_ids)))
        return {doc_id: doc["metadata"] for doc_id, doc in docs.items()}

    @reading
    def keyword_statistics(self, query: str) -> KeywordStats | None:
        """This index's BM25 statistics for `query`'s terms (its chunk count, each term's chunk
        frequency), or None where its keyword engine cannot score with other statistics (fts5).
        A sharded index sums its shards' and passes the sum back as `search(keyword_stats=)`."""
        query = check_query(query)
        store = self._read_store()
        if not self.keywords.ready(store):
            raise SearcherError(f"{self.path}: {self.keywords.missing()}")
        return self.keywords.statistics(store, query)

    def _view(self, store: ContentStore, where: dict | None) -> View:
        """What a search reads: the live vectors (reloaded if another process committed), the
        keyword engine, and the chunk ids `where` allows (None: all)."""
        compiled = compile_where(where) if where is not None else None
        with self._lock:
            self._reload_if_changed()
            vectors, generation = self.vectors, self._generation
        allowed = self._allowed(store, generation, where, compiled) if compiled is not None else None
        return View(self._read_store, vectors, self.keywords, self._lock, self._background, allowed)

    def _allowed(self, store: ContentStore, generation: int, where: dict, compiled: tuple[str, list]) -> np.ndarray:
        """The chunk ids a filter allows, cached per generation (a page of results, its next
        page and a facet click ask for the same set). In memory over the generation's columns
        (searcher/search/filter_columns.py: milliseconds), else by SQL (filters.compile_where)."""
        key = (generation, compiled[0], json.dumps(compiled[1], default=str))
        with self._lock:
            if key in self._filter_cache:
                self._filter_cache.move_to_end(key)
                return self._filter_cache[key]
            columns = self._columns if self._columns is not None and self._columns.generation == generation else None
        if columns is None:
            try:
                columns = FilterColumns(store, generation)
            except MovedOn:  # a commit landed meanwhile: this search reads the live database
                columns = None
            else:
                with self._lock:
                    self._columns = columns
        allowed = columns.allowed(store, where) if columns is not None else None
        if allowed is None:
            allowed = np.array(store.chunk_ids_where(*compiled), dtype=np.int64)
        allowed.setflags(write=False)  # shared by every search of this filter; the vector backend keeps its selector
        with self._lock:
            self._filter_cache[key] = allowed
            while len(self._filter_cache) > FILTER_CACHE_SIZE:
                self._filter_cache.popitem(last=False)
        return allowed

    def _background(self) -> ThreadPoolExecutor:
        """Threads for the keyword half of hybrid searches (each with its own read connection)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="searcher-keyword")
            return self._pool

    def _read_store(self) -> ContentStore:
        """This thread's own read-only connection to the database (WAL lets it read while
        another process writes)."""
        store = getattr(self._readers, "store", None)
        if store is None:
            store = self._readers.store = ContentStore(self.path / DATABASE, readonly=True)
            with self._lock:
                self._prune_finished_threads()
                self._stores.append(store)
                self._owners[id(store)] = threading.current_thread()
        return store

    def _prune_finished_threads(self) -> None:
        """Close the read connections of threads that have ended (a server's worker threads come
        and go; their connections must not pile up until close())."""
        keep = []
        for store in self._stores:
            owner = self._owners.get(id(store))
            if owner is not None and not owner.is_alive():
                store.close()
                del self._owners[id(store)]
            else:
                keep.append(store)
        self._stores = keep

    def _writable_store(self) -> ContentStore:
        """The one read-write connection, opened at the first write (reading never opens it);
        the keyword engine makes what it needs there (older indexes get their keyword table)."""
        if self._write_store is None:
            store = ContentStore(self.path / DATABASE)
            self._stores.append(store)
            self.keywords.prepare(store)
            self._write_store = store
        return self._write_store

    def _record_factory(self, factory: str) -> None:
        """Note the live factory string in the manifest (informational: the vectors file holds its own type)."""
        manifest = read_manifest(self.path)
        manifest["index_factory"] = factory
        write_manifest(self.path, manifest)
        self.manifest = {**self.manifest, "index_factory": factory}

    @reading
    def similar(self, doc_id: str, k: int = 10, where: dict | None = None) -> list[Hit]:
        """The `k` documents nearest in meaning to document `doc_id`, never itself, optionally
        filtered by `where`: a dense search for its `document_vector`. KeyError: no such document."""
        k, _ = check_k(k)
        vector = self.document_vector(doc_id)
        if vector is None:
            return []
        found = self.search_vector(vector, k + 1, where)
        return [h for h in found if h.doc_id != document_id(doc_id)][:k]

    @reading
    def document_vector(self, doc_id: str) -> np.ndarray | None:
        """Document `doc_id`'s "more like this" vector, (1, dimension), unit length: the mean of
        its first SIMILAR_CHUNKS chunks' vectors, encoded from their stored text as indexing
        encoded them (title tokens first), so every index type can give it, whatever its
        vectors can give back. None for a document without chunks; KeyError: no such document."""
        if self.encoder is None:
            raise SearcherError(f"{self.path} was opened without its model: similar needs it")
        source = self.similar_source(doc_id)
        return None if source is None else similar_vector(self.encoder, self.chunker.budget, *source)

    @reading
    def similar_source(self, doc_id: str) -> tuple[str, list[str]] | None:
        """What `document_vector` encodes: the document's title and its first SIMILAR_CHUNKS
        chunks' texts (a shard served without its model gives these, and the front that has
        the model encodes them: searcher/cluster/ray_serving.py). None for a document without chunks;
        KeyError: no such document."""
        doc_id = document_id(doc_id)
        store = self._read_store()
        doc = store.documents([doc_id]).get(doc_id)
        if doc is None:
            raise KeyError(f"no document with id {doc_id!r}")
        chunks = sorted(store.chunks(store.chunk_ids_of([doc_id])).values(), key=lambda c: c.position)
        if not chunks:
            return None
        return doc["title"], [c.text for c in chunks[:SIMILAR_CHUNKS]]

    @reading
    def search_vector(self, vector: np.ndarray, k: int = 10, where: dict | None = None) -> list[Hit]:
        """The `k` documents whose best chunk is nearest to `vector` (a unit vector of the
        index's dimension, e.g. a `document_vector`), optionally filtered by `where`."""
        k, _ = check_k(k)
        vector = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        if vector.shape[1] != self.manifest["dimension"]:
            raise ValueError(f"a vector of this index has {self.manifest['dimension']} dimensions, "
                             f"not {vector.shape[1]}")
        store = self._read_store()
        view = self._view(store, where)
        ranked = RETRIEVERS["dense"](view, Query("", None, self.fusion, vector), k)
        return hits(store, ranked, 0, k)

    @reading
    def live_generation(self) -> int:
        """The generation searches read now (reloaded first if another process committed)."""
        with self._lock:
            self._reload_if_changed()
            return self._generation

    @reading
    def chunk_vectors(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(generation, chunk ids, vectors) of the live generation (reloaded first if another
        process committed): the exact vectors, or, for an index type that keeps only codes
        (ivfpq), their reconstructions. For whole-corpus views (searcher/quality/corpus_map.py); a
        write in progress in this process may have added chunks its commit has not named yet."""
        with self._lock:
            self._reload_if_changed()
            return (self._generation, *self.vectors.export(approximate=True))

    @reading
    def get_document(self, doc_id: str) -> dict | None:
        """The stored document (id, source, title, metadata, text, added_at), or None. Ids are
        strings; another value is looked up by its str() (searcher/sanitize.py)."""
        doc_id = document_id(doc_id)
        return self._read_store().documents([doc_id], with_text=True).get(doc_id)

    @reading
    def info(self) -> dict:
        """What the index holds and how it is set up: counts, model, engines, search
        parameters, generation and the time of its commit, sizes on disk (`size_bytes`, and
        `disk` by kind), and the stored `searcher eval` results (`evaluations`, newest first)."""
        self._reload_if_changed()
        store = self._read_store()
        disk = self.disk_usage()
        return {
            "path": str(self.path),
            "documents": store.count_documents(),
            "chunks": store.count_chunks(),
            "vectors": len(self.vectors),
            "model": self.manifest["model"],
            "dimension": self.manifest["dimension"],
            "pooling": self.manifest["pooling"],
            "chunk_tokens": self.manifest["chunk_tokens"],
            "overlap": self.manifest["overlap"],
            "index_type": self.index_type,
            "index_factory": self.vectors.describe(),
            "search_params": self.vectors.search_params(),
            "vector_backend": self.vectors.name,
            "keyword_engine": self.keywords.name,
            "keyword_pending": self.keywords.pending(store),
            "device": self.encoder.device if self.encoder is not None else None,
            "precision": getattr(self.encoder, "precision", None),
            "backend": self.encoder.backend if self.encoder is not None else None,
            "generation": self._generation,
            "committed_at": self._committed_at(store),
            "created_at": self.manifest.get("created_at"),
            "size_bytes": disk["total"],
            "disk": disk,
            "evaluations": store.evaluations(),
        }

    @property
    def generation(self) -> int:
        """The generation this process reads (the live one as of its last reload)."""
        return self._generation

    def _committed_at(self, store: ContentStore) -> str | None:
        """When the live generation was committed (ISO 8601, UTC): recorded by the commit, or,
        for an index last committed before commits recorded it, its vectors file's time."""
        seconds = store.committed_at()
        if seconds is None:
            try:
                seconds = vectors_path(self.path, self._generation).stat().st_mtime
            except OSError:
                return None
        return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")

    def disk_usage(self) -> dict[str, int]:
        """Bytes on disk by kind: `database` (content.db and its -wal/-shm; the fts5 keyword
        table lives in it), `vectors` (the live generation's file), `keywords` (the keyword
        engine's own folder, tantivy's), `other` (the manifest, the lock, leftovers of
        interrupted writes) and `total`, all the folder's files."""
        sizes = {"database": 0, "vectors": 0, "keywords": 0, "other": 0}
        live = vectors_path(self.path, self._generation).name
        keyword_dir = getattr(self.keywords, "path", None)
        for p in self.path.rglob("*"):
            try:
                if not p.is_file():
                    continue
                size = p.stat().st_size
            except OSError:  # removed meanwhile (a commit's old files, SQLite's -shm)
                continue
            rel = p.relative_to(self.path)
            if len(rel.parts) == 1 and p.name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm"):
                kind = "database"
            elif len(rel.parts) == 1 and p.name == live:
                kind = "vectors"
            elif keyword_dir is not None and Path(keyword_dir) in p.parents:
                kind = "keywords"
            else:
                kind = "other"
            sizes[kind] += size
        sizes["total"] = sum(sizes.values())
        return sizes

    def record_evaluation(self, result: dict, wait: float | None = None) -> None:
        """Store `result` (a `searcher eval` run's figures, with `dataset`, `split` and `mode`)
        in the index, replacing the last one of the same dataset, split and mode. Its own
        SQLite transaction under the write lock (waiting up to `wait` seconds, default
        RECORD_WAIT, for another writer); it changes no generation. IndexLockedError if the
        lock stays taken."""
        deadline = time.monotonic() + (RECORD_WAIT if wait is None else wait)
        with self._write_lock:
            while True:
                try:
                    with exclusive_lock(self.path), readable(self.path / DATABASE):
                        store = ContentStore(self.path / DATABASE)
                        try:
                            store.record_evaluation(result)
                        finally:
                            store.close()
                    return
                except IndexLockedError:
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(0.2)

    # -- writing -------------------------------------------------------------------------
    def add_paths(
        self,
        paths: Iterable[str | os.PathLike],
        options: LoadOptions | None = None,
        progress=None,
        prune: bool = False,
        on_conflict: str = "skip",
        accept: Callable[[str], bool] | None = None,
        encoder=None,
    ) -> IndexReport:
        """Index every supported file under `paths` (files and folders, recursively).

        With `prune`, documents that came from under `paths` but are gone (their file was
        removed, or a row left a file that was read in full) are deleted from the index.
        A file that could not be read this time keeps its documents. `on_conflict`: see
        `add_documents`. `accept(source)`, when given, is asked once per file, after it was
        read: a file it refuses is left out as if it could not be read (its stored documents
        stay); the folder watcher (searcher/index/watch.py) refuses files that changed meanwhile.
        `encoder`: see `add_documents`.
        """
        run = PathRun(paths, options, accept)
        report = self.add_documents(run.documents(), progress=progress, on_conflict=on_conflict, encoder=encoder)
        if prune:
            gone = run.gone(self.store.document_sources())
            with self._write_session() as writer:
                report.removed = writer.delete(gone)
                report.generation = self._generation
        return report

    def add_documents(
        self,
        documents: Iterable[Document | dict | Skipped],
        progress: Callable[[int], None] | None = None,
        on_conflict: str = "skip",
        encoder=None,
    ) -> IndexReport:
        """Add or replace documents (same id: replaced; same content: left alone, no encoding).

        `progress(n)` is called as chunks are encoded. Skipped items from a loader pass through
        into the report, as does anything that cannot be a document (with the reason).
        `on_conflict`: what to do with a document whose id already belongs to a document from
        another source (another file), stored or read earlier in this run: "skip" it (the
        default; reported with both places) or "replace" the other one (also reported).
        `encoder`: what encodes the chunks instead of the index's own encoder, for this call: one
        with the same tokenizer and model (`encode_ids`, `tokenizer`, `with_special_tokens`,
        `fingerprint`), such as searcher.cluster.ray_encoder.RayEncoder; commits are the same.
        """
        if on_conflict not in ON_CONFLICT:
            raise ValueError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {on_conflict!r}")
        if isinstance(documents, (str, bytes, dict, Document)):
            raise TypeError("add_documents takes a list (or other iterable) of documents, not one document")
        if self.encoder is None:
            raise SearcherError(f"{self.path} was opened without its model: it cannot encode documents")
        if encoder is not None and encoder.fingerprint != self.manifest["model_fingerprint"]:
            raise ModelMismatchError(f"{self.path} was built with model {self.manifest['model']}; the encoder "
                                     f"given runs {encoder.name} (fingerprint {encoder.fingerprint})")
        report = IndexReport()
        started = time.perf_counter()
        with self._write_session(encoder) as writer:
            writer.add(documents, report, progress, on_conflict)
            report.generation = self._generation
        report.seconds = time.perf_counter() - started
        return report

    def delete(self, doc_ids: str | Iterable[str]) -> int:
        """Remove documents: one id or an iterable of ids (their chunks leave the vectors and the
        database). Returns how many were there."""
        if isinstance(doc_ids, (str, bytes, int)):
            doc_ids = [doc_ids]
        doc_ids = list(dict.fromkeys(document_id(d) for d in doc_ids))
        with self._write_session() as writer:
            return writer.delete(doc_ids)

    @contextmanager
    def _write_session(self, encoder=None) -> Iterator[Writer]:
        """The write lock (this process's, then the folder's) for one run of writes; on an error,
        what was not committed is dropped from memory (the last committed vectors are reloaded).
        `encoder`: the writer's, instead of the index's own."""
        with self._write_lock, exclusive_lock(self.path), readable(self.path / DATABASE):
            self._reload_if_changed()
            store = self._writable_store()
            try:
                self.keywords.catch_up(store)
            except (SearcherError, OSError, sqlite3.Error) as e:  # each commit tries again
                log.warning("%s: keyword changes committed but not applied yet: %s", self.path, e)
            self._writing = True
            try:
                yield Writer(store, self.chunker, encoder or self.encoder, self._apply, lambda: len(self.vectors),
                             self.batch_size, self.commit_chunks)
            except BaseException:
                self._writing = False
                with self._lock:
                    self._generation = -1
                    self._reload_if_changed()
                raise
            finally:
                self._writing = False

    def _apply(self, changes: Changes) -> None:
        """Make one batch of changes the next generation, while searches go on.

        Searches keep seeing the last commit: removals (and any rebuild) go to a copy of the
        vectors, swapped in after the SQLite commit; a batch that only adds is added to the
        live vectors under the search lock, where a search drops the new chunks until they
        are committed (retrieval keeps only chunks the store has)."""
        store = self._write_store
        removed = store.chunk_ids_of(changes.delete_ids)
        with self._lock:
            live = self.vectors
            if not removed and len(changes.ids):
                live.add(changes.ids, changes.vectors)
        vectors = live
        if removed:
            vectors = live.copy()
            vectors.remove(removed)
            if len(changes.ids):
                vectors.add(changes.ids, changes.vectors)
        vectors = vectors.prepare_commit(self.manifest)  # the backend may rebuild itself for its new size
        if vectors.describe() != live.describe():
            try:
                self._record_factory(vectors.describe())
            except OSError as e:
                raise write_failed(self.path, self._generation, f"rewriting {MANIFEST} (its index_factory)", e) from e
        def swap(new: int) -> None:
            with self._lock:
                self.vectors, self._generation = vectors, new

        commit_generation(self.path, store, self._generation, vectors, self.keywords, changes.docs,
                          changes.chunks, changes.delete_ids, changes.next_chunk_id, on_committed=swap)
