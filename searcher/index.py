"""`Index`: a searchable collection of documents in one index folder (see searcher/folder.py).

A commit writes the next vectors file (temp file, fsync, rename) and its checksum, then
commits the SQLite transaction that names it, then removes the old file. A kill at any
point leaves the last committed pair readable. Reading (search, info, get_document) opens
SQLite read-only and never changes a file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .chunker import Chunker
from .encoder import Encoder, resolve_model_path
from .fusion import Fusion
from .loaders import LOCATION_KEYS, Document, LoadOptions, Skipped, clean_document, is_blank, load_paths
from .errors import (IndexCorruptError, IndexExistsError, IndexLockedError, IndexNotFoundError,
                     ModelMismatchError, SearcherError)
from .folder import (DATABASE, FORMAT_VERSION, MANIFEST, exclusive_lock, file_sha256, next_generation,
                     read_manifest, remove_leftovers, vectors_path, write_manifest, write_vectors)
from .queries import QueryEncoder
from .sanitize import clean_text, document_id
from .store import ContentStore, readable
from .vectors import FaissVectorIndex, check_index_type, plan

__all__ = [  # re-exported: these lived here before searcher/errors.py and searcher/folder.py
    "DATABASE", "FORMAT_VERSION", "MANIFEST", "IndexCorruptError", "IndexExistsError",
    "IndexLockedError", "IndexNotFoundError", "ModelMismatchError", "SearcherError",
    "read_manifest", "write_manifest", "vectors_path",
]
DEFAULT_INDEX_DIR = Path("indexes") / "default"
ON_CONFLICT = ("skip", "replace")
COMMIT_CHUNKS = 4096  # chunks per commit: a kill loses at most this much encoding

SEARCH_MODES = ("dense", "keyword", "hybrid")
DEFAULT_MODE = "hybrid"  # the best on the measurements in benchmarks/README.md


def check_mode(mode: str | None) -> str:
    """The search mode to use: `mode`, or DEFAULT_MODE for None; ValueError for anything else."""
    if mode is None:
        return DEFAULT_MODE
    if mode not in SEARCH_MODES:
        raise ValueError(f"unknown search mode {mode!r}: use one of {', '.join(SEARCH_MODES)}")
    return mode


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

    def to_dict(self) -> dict:
        return {
            "doc_id": self.doc_id, "score": self.score, "title": self.title, "source": self.source,
            "passage": self.passage, "start": self.start, "end": self.end, "metadata": self.metadata,
        }


@dataclass
class IndexReport:
    """What one indexing run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    tokens: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    replaced: list[Skipped] = field(default_factory=list)  # conflicts resolved by on_conflict="replace"
    seconds: float = 0.0

    def merge(self, other: "IndexReport") -> "IndexReport":
        """This report plus another run's (for one summary of several runs)."""
        for name in ("added", "updated", "unchanged", "removed", "chunks", "tokens", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped += other.skipped
        self.replaced += other.replaced
        return self

    @property
    def indexed(self) -> int:
        return self.added + self.updated

    def summary(self) -> str:
        rate = self.indexed / self.seconds if self.seconds else 0.0
        lines = [
            f"{self.indexed} documents indexed ({self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.removed} removed), {self.chunks} chunks, "
            f"{self.tokens} tokens in {self.seconds:.1f}s ({rate:.1f} documents/s)",
        ]
        if self.skipped:
            lines.append(f"{len(self.skipped)} skipped:")
            lines.extend(f"  {s}" for s in self.skipped)
        if self.replaced:
            lines.append(f"{len(self.replaced)} replaced a document from another source:")
            lines.extend(f"  {s}" for s in self.replaced)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
            "removed": self.removed, "chunks": self.chunks, "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "replaced": [{"path": s.path, "reason": s.reason} for s in self.replaced],
        }


def content_hash(doc: Document) -> str:
    """What decides whether a document must be encoded again: title, text and metadata, less
    where its row sits in its file (a line added above it must not re-encode it)."""
    metadata = {k: v for k, v in doc.metadata.items() if k not in LOCATION_KEYS}
    payload = json.dumps([doc.title, doc.text, metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def as_document(item: Document | dict) -> Document:
    """Accept Document objects or plain dicts ({"id", "text", "title"?, "source"?, "metadata"?,
    other keys: metadata}); strings are cleaned and metadata made valid JSON (searcher/sanitize.py).
    ValueError/TypeError with the reason for anything that cannot be a document."""
    extra: dict = {}
    if isinstance(item, Document):
        doc_id, text, title, source, metadata = item.id, item.text, item.title, item.source, item.metadata
    elif isinstance(item, dict):
        extra = dict(item)
        doc_id = extra.pop("id", None)
        if doc_id is None:
            doc_id = extra.pop("_id", None)
        text = extra.pop("text", None)
        title = extra.pop("title", "") or ""
        source = extra.pop("source", "") or ""
        metadata = extra.pop("metadata", None)
        if metadata is None:
            metadata = {}
    else:
        raise TypeError(f"a document must be a dict or Document, not {type(item).__name__}")
    if doc_id is None or not str(doc_id).strip():
        raise ValueError(f"document has no id: {str(item)[:80]}")
    if not isinstance(text, str):
        raise ValueError(f"document {doc_id!r} has no text (a string)")
    if not isinstance(metadata, dict):
        raise ValueError(f"document {doc_id!r}: metadata must be a dict, not {type(metadata).__name__}")
    return clean_document(Document(id=document_id(doc_id), text=text, title=str(title), source=str(source),
                                   metadata={**metadata, **extra}))


def check_k(k, offset=0) -> tuple[int, int]:
    """k (at least 1) and offset (at least 0) as ints; ValueError naming the bad one."""
    for name, value, low in (("k", k, 1), ("offset", offset, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, not {value!r}")
        if value < low:
            raise ValueError(f"{name} must be at least {low}, not {value}")
    return int(k), int(offset)


def reading(method):
    """Index reads: SQLite's errors about a damaged database become IndexCorruptError."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with readable(self.path / DATABASE):
            return method(self, *args, **kwargs)
    return wrapper


_ENCODERS: dict[tuple, Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


def get_encoder(model=None, device="auto", pooling=None, batch_size=32, precision="auto") -> Encoder:
    """Load a model once per process (indexes opened on the same model share it; `batch_size`
    is the encoder's default, each Index passes its own)."""
    key = (str(resolve_model_path(model)), device, pooling, precision)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = Encoder(model, device=device, pooling=pooling, batch_size=batch_size,
                                     precision=precision)
        return _ENCODERS[key]


_QUERY_ENCODERS: "weakref.WeakKeyDictionary[Encoder, QueryEncoder]" = weakref.WeakKeyDictionary()


def get_query_encoder(encoder: Encoder) -> QueryEncoder:
    """One query cache and batcher per loaded model, shared by the indexes that use it."""
    with _ENCODERS_LOCK:
        if encoder not in _QUERY_ENCODERS:
            _QUERY_ENCODERS[encoder] = QueryEncoder(encoder)
        return _QUERY_ENCODERS[encoder]


def title_token_ids(tokenizer, title: str, budget: int) -> list[int]:
    """Tokens of a title, prefixed to each of its document's chunks (at most a quarter of a chunk)."""
    if not title:
        return []
    return tokenizer(title, add_special_tokens=False, verbose=False)["input_ids"][: budget // 4]


class Index:
    """A searchable collection of documents. Create with `Index.create`, reopen with `Index.open`."""

    def __init__(self, path: Path, manifest: dict, encoder: Encoder, batch_size: int = 32):
        self.path = Path(path)
        self.manifest = manifest
        self.encoder = encoder
        self.batch_size = batch_size
        self.queries = get_query_encoder(encoder)  # cached and batched query vectors
        self.chunker = Chunker(encoder.tokenizer, manifest["chunk_tokens"], manifest["overlap"])
        self.commit_chunks = COMMIT_CHUNKS
        self.fusion = Fusion()  # hybrid mode's fusion for this index; a search may pass its own
        self._lock = threading.RLock()
        self._readers = threading.local()
        self._stores: list[ContentStore] = []  # every connection opened, closed by close()
        self._write_store: ContentStore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._generation = -1
        self.vectors: FaissVectorIndex | None = None
        try:
            self._reload_if_changed()
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
        encoder: Encoder | None = None,
    ) -> "Index":
        """Make a new, empty index in folder `path` (or open it, if `exist_ok` and it exists).

        `precision`: `exact` (float32 torch), `fast` (int8 ONNX Runtime on CPU, fp16 on CUDA) or
        `auto` (fast when available). Both give vectors that can share an index.
        `index_type`: one of vectors.INDEX_TYPES ("auto", the default, picks by size: exact
        below 50,000 vectors, inverted lists above; see searcher/vectors.py).
        """
        path = Path(path)
        index_type = check_index_type(index_type)
        if (path / MANIFEST).exists():
            if exist_ok:
                return cls.open(path, model=model, device=device, batch_size=batch_size, precision=precision,
                                encoder=encoder)
            raise IndexExistsError(f"an index already exists in {path}; open it instead")
        if path.exists() and not path.is_dir():  # checked before the model loads
            raise IndexExistsError(f"{path} exists and is not a folder; an index is a folder")
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
            "index_factory": plan(index_type, 0, encoder.dimension),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        path.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(path):
            store = ContentStore(path / DATABASE, create=True)
            try:
                generation = store.generation
                empty = FaissVectorIndex.create(encoder.dimension, manifest["index_factory"])
                checksums = write_vectors(path, generation, empty)
                with store.db.atomic():
                    store.set_state(generation, store.state("next_chunk_id"), checksums)
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
    ) -> "Index":
        """Open an existing index. `model` (or a loaded `encoder`), when given, must be the one the
        index was built with."""
        path = Path(path)
        manifest = read_manifest(path)
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
        if (manifest["model_fingerprint"], manifest["dimension"]) != (self.encoder.fingerprint, self.encoder.dimension):
            raise ModelMismatchError(f"{self.path} now holds an index built with model {manifest['model']}, "
                                     f"not the loaded {self.encoder.name}")
        return Index(self.path, manifest, self.encoder, self.batch_size)

    @classmethod
    def open_or_create(cls, path=DEFAULT_INDEX_DIR, model=None, **options) -> "Index":
        if (Path(path) / MANIFEST).exists():
            return cls.open(path, model, device=options.get("device", "auto"),
                            batch_size=options.get("batch_size", 32),
                            precision=options.get("precision", "auto"))
        return cls.create(path, model, **options)

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
                    write_manifest(self.path, manifest)

    def close(self) -> None:
        """Close every connection this index opened (each thread's read connection and the writer's)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for store in self._stores:
                store.close()
            self._stores = []
            self._write_store = None
            self._readers = threading.local()

    @property
    def store(self) -> ContentStore:
        """This thread's read-only connection to the index's database."""
        return self._read_store()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _reload_if_changed(self) -> None:
        """Load the vectors of the store's current generation if it moved (another process committed).

        The vectors file must hold one vector per chunk row of that generation; anything else
        means the two stores disagree, and the index is refused rather than served wrong.
        """
        with self._lock, readable(self.path / DATABASE):
            store = self._read_store()
            if store.generation == self._generation:
                return
            for _ in range(5):
                generation, chunks, checksum = store.snapshot()
                vfile = vectors_path(self.path, generation)
                try:
                    actual = file_sha256(vfile) if checksum is not None else None
                    vectors = FaissVectorIndex.load(vfile, use_gpu=self.encoder.device == "cuda")
                except (RuntimeError, OSError):
                    time.sleep(0.05)  # a writer replaced the file under us: read the generation again
                    continue
                if actual != checksum:
                    if store.generation != generation:
                        continue  # a commit landed between the two reads
                    raise IndexCorruptError(
                        f"{vfile} does not match the checksum recorded when it was written (the file "
                        f"is damaged); run `searcher check --repair --index {self.path}`")
                if len(vectors) != chunks or vectors.dimension != self.manifest["dimension"]:
                    raise IndexCorruptError(
                        f"{self.path}: generation {generation} has {chunks} chunks but {len(vectors)} "
                        f"vectors of dimension {vectors.dimension}; run `searcher check --repair --index {self.path}`"
                    )
                vectors.set_search_params(**self.manifest.get("search_params", {}))
                self.vectors, self._generation = vectors, generation
                return
            raise IndexCorruptError(
                f"{vectors_path(self.path, store.generation)} is missing or unreadable; "
                f"run `searcher check --repair --index {self.path}`"
            )

    # -- reading -------------------------------------------------------------------------
    @reading
    def __len__(self) -> int:
        return self._read_store().count_documents()

    @reading
    def search(self, query: str, k: int = 10, offset: int = 0, mode: str | None = None,
               fusion: Fusion | None = None) -> list[Hit]:
        """The top `k` documents for `query` (after skipping `offset`), each scored by its best chunk.

        `mode`: "dense" (cosine of the BERT vectors), "keyword" (BM25 over the chunks' words),
        or "hybrid" (the two fused by `fusion`, else this index's `fusion`); None means
        DEFAULT_MODE. In hybrid mode Hit.score is the fused score.
        """
        mode = check_mode(mode)
        if not isinstance(query, str):
            raise TypeError(f"the query must be a string, not {type(query).__name__}")
        query = clean_text(query)
        if is_blank(query):
            raise ValueError("the query is empty")
        k, offset = check_k(k, offset)
        fusion = fusion or self.fusion
        want = offset + k
        store = self._read_store()
        if mode != "dense" and not store.has_keyword_table:
            raise SearcherError(
                f"{self.path} has no keyword table yet (it was built by an older searcher); any "
                f"write adds it (`searcher check --repair --index {self.path}`), or search with mode='dense'"
            )
        keyword = None
        if mode == "hybrid":  # BM25 runs in SQLite (no GIL) while this thread encodes the query
            depth = max(want, fusion.depth)  # on the worker's own read connection
            keyword = self._background().submit(lambda: self._keyword_docs(self._read_store(), query, depth))
        qv = self.queries.encode(query) if mode != "keyword" else None
        with self._lock:
            self._reload_if_changed()
            vectors = self.vectors
        if mode == "dense":
            ranked = self._dense_docs(store, vectors, qv, want)
        elif mode == "keyword":
            ranked = self._keyword_docs(store, query, want)
        else:
            ranked = self._hybrid_docs(store, vectors, qv, want, keyword.result(), fusion)
        page = list(ranked.items())[offset:want]
        chunks = store.chunks([cid for _, (_, cid) in page])
        docs = store.documents([doc_id for doc_id, _ in page])
        hits = []
        for doc_id, (score, cid) in page:
            doc, chunk = docs.get(doc_id), chunks.get(cid)
            if doc is None or chunk is None:
                continue
            hits.append(Hit(doc_id, score, doc["title"] or "", doc["source"] or "", chunk.text,
                            chunk.start, chunk.end, cid, doc["metadata"]))
        return hits

    def _background(self) -> ThreadPoolExecutor:
        """Threads for the keyword half of hybrid searches (each with its own read connection)."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="searcher-keyword")
            return self._pool

    def _read_store(self) -> ContentStore:
        """This thread's own read-only connection to the database.

        Searches run SQLite (keyword search, fetching chunks) outside the index lock, each
        thread on its own connection, so concurrent searches use every core; WAL lets them
        read while another process writes. Only FAISS is searched under the lock, since an
        in-process writer changes the vectors in place.
        """
        store = getattr(self._readers, "store", None)
        if store is None:
            store = self._readers.store = ContentStore(self.path / DATABASE, readonly=True)
            with self._lock:
                self._stores.append(store)
        return store

    def _writable_store(self) -> ContentStore:
        """The one read-write connection, opened at the first write (reading never opens it)."""
        if self._write_store is None:
            self._write_store = ContentStore(self.path / DATABASE)
            self._stores.append(self._write_store)
        return self._write_store

    def _dense_docs(self, store: ContentStore, vectors: FaissVectorIndex, qv: np.ndarray,
                    want: int) -> dict[str, tuple[float, int]]:
        """{doc_id: (cosine of its best chunk, that chunk's id)} for the `want` best documents, best first."""
        n = len(vectors)
        fetch = min(n, max(want * 5, 50))
        best: dict[str, tuple[float, int]] = {}
        while n:
            with self._lock:
                scores, ids = vectors.search(qv, fetch)
            found = [(float(s), int(c)) for s, c in zip(scores[0], ids[0]) if c >= 0]
            owners = store.chunk_doc_ids([c for _, c in found])
            best = {}
            for score, cid in found:  # FAISS returns best first: the first chunk seen is the best
                doc_id = owners.get(cid)
                if doc_id is not None and doc_id not in best:
                    best[doc_id] = (score, cid)
            if len(best) >= want or fetch >= n:
                break
            fetch = min(n, fetch * 4)
        return dict(list(best.items())[:want])

    def _keyword_docs(self, store: ContentStore, query: str, want: int) -> dict[str, tuple[float, int]]:
        """{doc_id: (BM25 of its best chunk, that chunk's id)} for the `want` best documents, best first."""
        fetch = max(want * 5, 50)
        while True:
            rows = store.keyword_search(query, fetch)
            best: dict[str, tuple[float, int]] = {}
            for cid, doc_id, score in rows:  # best first
                if doc_id not in best:
                    best[doc_id] = (score, cid)
            if len(best) >= want or len(rows) < fetch:
                return dict(list(best.items())[:want])
            fetch *= 4

    def _hybrid_docs(self, store: ContentStore, vectors: FaissVectorIndex, qv: np.ndarray, want: int,
                     keyword: dict[str, tuple[float, int]], fusion: Fusion) -> dict[str, tuple[float, int]]:
        """Dense candidates fused with the keyword ones (`_keyword_docs` to the fusion's depth);
        the passage is the best chunk of the list that ranks the doc higher."""
        depth = max(want, fusion.depth)
        dense = self._dense_docs(store, vectors, qv, depth)
        fused = fusion.fuse(
            {d: s for d, (s, _) in dense.items()}, {d: s for d, (s, _) in keyword.items()}
        )
        dense_rank = {d: r for r, d in enumerate(dense)}
        keyword_rank = {d: r for r, d in enumerate(keyword)}
        out: dict[str, tuple[float, int]] = {}
        for doc_id, score in list(fused.items())[:want]:
            from_dense = dense_rank.get(doc_id, depth) <= keyword_rank.get(doc_id, depth)
            cid = (dense if from_dense else keyword)[doc_id][1]
            out[doc_id] = (score, cid)
        return out

    def _record_factory(self, factory: str) -> None:
        """Note the live factory string in the manifest (informational: the vectors file holds its own type)."""
        manifest = read_manifest(self.path)
        manifest["index_factory"] = factory
        write_manifest(self.path, manifest)
        self.manifest = {**self.manifest, "index_factory": factory}

    @reading
    def get_document(self, doc_id: str) -> dict | None:
        """The stored document (id, source, title, metadata, text, added_at), or None. Ids are
        strings; another value is looked up by its str() (searcher/sanitize.py)."""
        doc_id = document_id(doc_id)
        return self._read_store().documents([doc_id], with_text=True).get(doc_id)

    @reading
    def info(self) -> dict:
        self._reload_if_changed()
        store = self._read_store()
        size = sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())
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
            "device": self.encoder.device,
            "backend": self.encoder.backend,
            "generation": self._generation,
            "size_bytes": size,
        }

    # -- writing -------------------------------------------------------------------------
    def title_ids(self, title: str) -> list[int]:
        return title_token_ids(self.encoder.tokenizer, title, self.chunker.budget)

    def add_paths(
        self,
        paths: Iterable[str | os.PathLike],
        options: LoadOptions | None = None,
        progress=None,
        prune: bool = False,
        on_conflict: str = "skip",
    ) -> IndexReport:
        """Index every supported file under `paths` (files and folders, recursively).

        With `prune`, documents that came from under `paths` but are gone (their file was
        removed, or a row left a file that was read in full) are deleted from the index.
        A file that could not be read this time keeps its documents. `on_conflict`: see
        `add_documents`.
        """
        paths = [Path(os.path.abspath(p)) for p in paths]
        seen_ids: set[str] = set()
        read_sources: set[str] = set()

        def documents():
            for item in load_paths(paths, options):
                if isinstance(item, Document):
                    seen_ids.add(item.id)
                    read_sources.add(item.source)
                yield item

        report = self.add_documents(documents(), progress=progress, on_conflict=on_conflict)
        if prune:
            roots = [clean_text(str(p)) for p in paths]
            gone = [
                doc_id
                for doc_id, source in self.store.document_sources()
                if doc_id not in seen_ids
                and source
                and any(source == r or source.startswith(r.rstrip(os.sep) + os.sep) for r in roots)
                and (source in read_sources or not Path(source).exists())
            ]
            report.removed = self.delete(gone)
        return report

    def add_documents(
        self,
        documents: Iterable[Document | dict | Skipped],
        progress: Callable[[int], None] | None = None,
        on_conflict: str = "skip",
    ) -> IndexReport:
        """Add or replace documents (same id: replaced; same content: left alone, no encoding).

        `progress(n)` is called as chunks are encoded. Skipped items from a loader pass through
        into the report, as does anything that cannot be a document (with the reason).
        `on_conflict`: what to do with a document whose id already belongs to a document from
        another source (another file), stored or read earlier in this run: "skip" it (the
        default; reported with both places) or "replace" the other one (also reported).
        """
        if on_conflict not in ON_CONFLICT:
            raise ValueError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {on_conflict!r}")
        if isinstance(documents, (str, bytes, dict, Document)):
            raise TypeError("add_documents takes a list (or other iterable) of documents, not one document")
        report = IndexReport()
        started = time.perf_counter()
        with self._write_session() as writer:
            seen: dict[str, str] = {}  # id -> where it was read in this run
            batch: list[Document] = []
            for item in documents:
                if isinstance(item, Skipped):
                    report.skipped.append(item)
                    continue
                try:
                    doc = as_document(item)
                except (TypeError, ValueError) as e:
                    report.skipped.append(Skipped(_describe(item), str(e)))
                    continue
                if is_blank(doc.text):
                    report.skipped.append(Skipped(doc_location(doc), "no text (only whitespace or control characters)"))
                    continue
                if doc.id in seen:
                    if on_conflict == "skip":
                        report.skipped.append(Skipped(doc_location(doc), (
                            f"duplicate id {doc.id!r}: already read from {seen[doc.id]} in this run; "
                            f"skipped (on conflict: replace would keep this one)")))
                        continue
                    writer.stage(batch, report, progress, on_conflict)  # the first one goes in first,
                    writer.commit(report, progress)  # so this one replaces it as stored (reported
                    batch = []  # by stage() when the two came from different files)
                seen[doc.id] = doc_location(doc)
                batch.append(doc)
                if sum(len(d.text) for d in batch) > 400_000 or len(batch) >= 512:
                    writer.stage(batch, report, progress, on_conflict)
                    batch = []
            writer.stage(batch, report, progress, on_conflict)
            writer.commit(report, progress)
        report.seconds = time.perf_counter() - started
        return report

    def delete(self, doc_ids: str | Iterable[str]) -> int:
        """Remove documents: one id or an iterable of ids (their chunks leave the vectors and the
        database). Returns how many were there."""
        if isinstance(doc_ids, (str, bytes, int)):
            doc_ids = [doc_ids]
        doc_ids = list(dict.fromkeys(document_id(d) for d in doc_ids))
        with self._write_session() as writer:
            present = list(writer.store.content_hashes(doc_ids))
            writer.delete_ids.extend(present)
            writer.commit()
        return len(present)

    @contextmanager
    def _write_session(self) -> Iterator["_Writer"]:
        with exclusive_lock(self.path), self._lock, readable(self.path / DATABASE):
            self._reload_if_changed()
            writer = _Writer(self, self._writable_store())
            try:
                yield writer
            except BaseException:
                # Drop uncommitted changes from memory: reload the last committed vectors.
                self._generation = -1
                self._reload_if_changed()
                raise

    def _commit(self, vectors: FaissVectorIndex, docs, chunks, delete_ids, next_chunk_id) -> None:
        """Make `vectors` (already changed) and these rows the next generation: vectors file
        (never a name already in the folder) and its checksum, then the SQLite transaction."""
        if vectors is not self.vectors:
            self.vectors = vectors
            self._record_factory(vectors.describe())
        new = next_generation(self.path, self._generation)
        checksums = write_vectors(self.path, new, vectors)
        self._write_store.commit(new, docs, chunks, delete_ids, next_chunk_id, checksums)
        self._generation = new
        remove_leftovers(self.path, new)


def doc_location(doc: Document) -> str:
    """Where a document was read: its file and line/row for JSON Lines and CSV, else its source or id."""
    place = doc.metadata.get("line", doc.metadata.get("row"))
    if doc.source and place is not None:
        return f"{doc.source}:{place}"
    return doc.source or doc.id


def _describe(item) -> str:
    """A short name for an item that could not be made a document."""
    if isinstance(item, dict):
        return clean_text(str(item.get("id", item.get("_id", "?"))))[:80]
    return clean_text(str(item))[:60]


class _Writer:
    """Stages added/deleted documents and commits them in batches (vectors first, then SQLite).

    A document's chunks normally go into one commit with it. A document too large for one
    commit is committed in parts as it is chunked (memory stays bounded); until its last part,
    its stored content hash is marked unfinished, so a killed run re-indexes it next time.
    """

    def __init__(self, index: Index, store: ContentStore):
        self.index = index
        self.store = store
        self.next_chunk_id = self.store.state("next_chunk_id")
        self._reset()

    def _reset(self):
        self.docs: list[dict] = []
        self.chunks: list[dict] = []
        self.ids: list[np.ndarray] = []
        self.vecs: list[np.ndarray] = []
        self.delete_ids: list[str] = []
        self.pending: list[list[int]] = []  # token ids of self.chunks[-len(pending):], not encoded yet

    def commit_threshold(self) -> int:
        """Chunks per commit: `commit_chunks`, or 10% of the index once it is large, so that
        rewriting the vectors file stays a small share of the work."""
        return max(self.index.commit_chunks, len(self.index.vectors) // 10)

    def stage(self, batch: list[Document], report: IndexReport, progress=None, on_conflict: str = "skip") -> None:
        """Chunk the new and changed documents of a batch; encode and commit each threshold's worth
        (the last, smaller part waits for more documents or for the final `commit`)."""
        if not batch:
            return
        index = self.index
        stored = self.store.documents([d.id for d in batch])
        for doc in batch:
            digest = content_hash(doc)
            old = stored.get(doc.id)
            if old is not None and (old["source"] or "") != doc.source:
                other = old["source"] or "(no source: added through the API)"
                if on_conflict == "skip":
                    report.skipped.append(Skipped(doc_location(doc), (
                        f"id {doc.id!r} already belongs to a document from {other}; skipped "
                        f"(on conflict: replace would replace it)")))
                    continue
                report.replaced.append(Skipped(doc_location(doc), f"id {doc.id!r}: replaced the document from {other}"))
            elif old is not None and old["content_hash"] == digest:
                report.unchanged += 1
                continue
            if old is not None:
                report.updated += 1
                self.delete_ids.append(doc.id)
            else:
                report.added += 1
            row = {"id": doc.id, "source": doc.source, "title": doc.title, "text": doc.text,
                   "content_hash": digest, "metadata": doc.metadata}
            title_ids = index.title_ids(doc.title)
            own = 0  # this document's chunks staged since the last commit
            for chunk in index.chunker.iter_split(doc.text, reserved=len(title_ids)):
                self.chunks.append({"id": self.next_chunk_id, "doc_id": doc.id, "position": chunk.position,
                                    "start": chunk.start, "end": chunk.end, "text": chunk.text})
                self.pending.append(index.encoder.with_special_tokens(title_ids + chunk.ids))
                self.next_chunk_id += 1
                own += 1
                if own >= self.commit_threshold():
                    # A document larger than a commit: commit its chunks so far, its row marked
                    # unfinished (memory stays at most two commits' worth of chunks).
                    self.commit(report, progress, unfinished={**row, "content_hash": UNFINISHED + digest})
                    own = 0
            self.docs.append(row)
            if len(self.chunks) >= self.commit_threshold():
                self.commit(report, progress)

    def encode_pending(self, report: IndexReport | None = None, progress=None) -> None:
        """Encode the staged chunks that have no vector yet (longest first, in batches)."""
        if not self.pending:
            return
        rows = self.chunks[-len(self.pending):]
        self.vecs.append(self.index.encoder.encode_ids(self.pending, batch_size=self.index.batch_size,
                                                       progress=progress))
        self.ids.append(np.array([r["id"] for r in rows], dtype=np.int64))
        if report is not None:
            report.chunks += len(rows)
            report.tokens += sum(len(x) for x in self.pending)
        self.pending = []

    def commit(self, report: IndexReport | None = None, progress=None, unfinished: dict | None = None) -> None:
        """Write the next vectors file, then the SQLite transaction that makes it live.
        `unfinished`: the row of a document whose chunks are only partly staged."""
        self.encode_pending(report, progress)
        docs = self.docs + ([unfinished] if unfinished else [])
        if not (docs or self.delete_ids):
            return
        index = self.index
        vectors = index.vectors
        vectors.remove(self.store.chunk_ids_of(self.delete_ids))
        if self.ids:
            vectors.add(np.concatenate(self.ids), np.concatenate(self.vecs))
        # The type's plan for the new count may differ from what the index is (auto crossing
        # its exact limit, ivf lists to retrain, hnsw tombstones to compact): rebuild it from
        # the exact vectors it holds, before this commit's file is written.
        vectors = vectors.replan(index.index_type, index.manifest.get("search_params"))
        index._commit(vectors, docs, self.chunks, self.delete_ids, self.next_chunk_id)
        self._reset()


UNFINISHED = "unfinished:"  # content-hash prefix of a document committed in parts, not all yet
