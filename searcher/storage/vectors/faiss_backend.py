"""The FAISS vector backend: chunk vectors in FAISS, keyed by chunk id.

Index types (`INDEX_TYPES`) map to FAISS `index_factory` strings (inner product on unit
vectors, so scores are cosines):

    flat    IDMap2,Flat           exact; 4d + 8 bytes a vector
    ivf     IVF<nlist>,Flat       inverted lists over the exact vectors; k-means trained
    ivfpq   IVF<nlist>,PQ<d/3>    inverted lists over product-quantised codes (128 bytes at d=384)
    hnsw    IDMap2,HNSW32         graph; no training; fastest queries, slowest build, no removal
    auto    flat below AUTO_EXACT_LIMIT vectors, ivf above, ivfpq once the exact vectors
            would take more than AUTO_MEMORY_SHARE of the machine's memory

`auto` follows FAISS's "Guidelines to choose an index": exact search while a query that
scans every vector is cheap (about 7 ms at 50,000 vectors of 384 dimensions on one core),
then IVF with about 4*sqrt(N) lists, and PQ codes when memory demands. It prefers ivf to
hnsw above the limit because FAISS's HNSW cannot remove vectors (every replaced document
removes some) and because on benchmarks/scale.py at 1M vectors ivf reached recall@10 0.99
at 1.3 ms where hnsw stayed under 0.9 (benchmarks/README.md, "Scale").

The ids FAISS returns are always the chunk ids of the SQLite store: flat and hnsw through
an IDMap2 wrapper, ivf and ivfpq natively (their inverted lists store the ids; an IDMap on
top of an IVF would go wrong on remove_ids, which does not renumber the lists).

Training and re-planning (`FaissVectorIndex.replan`, called at every commit, after the
commit's removals and additions and before its file is written): a new index is an empty
exact one (hnsw: an empty graph); the type's `plan` for the current count is compared with
what the index is, and when they differ the index is rebuilt from the exact vectors it
holds (flat, hnsw and ivf can give them back exactly), training on a sample of them
(TRAIN_POINTS_PER_LIST a list). nlist is a power of two near 4*sqrt(N) with at least 39
training points a list; an ivf index is retrained when N has grown about 4x (nlist would
double) or shrunk 16x, and auto goes back to flat only below half its limit, so that adds
and deletes near a boundary do not rebuild again and again. ivfpq keeps exact vectors
until it holds IVFPQ_TRAIN_AT of them, is then trained once on them, and is never
retrained: its codes cannot give the exact vectors back (if the collection later grows far
past that, raise nprobe or rebuild into a new folder).

Deletes: flat, ivf and ivfpq remove vectors (`remove_ids`). FAISS's HNSW cannot remove, so
hnsw marks removed vectors as tombstones (their id in the IDMap2 becomes -1 - id) and its
searches skip them with an IDSelector; once tombstones pass HNSW_COMPACT_SHARE of the graph
it is rebuilt from its live vectors at that commit (a full HNSW build: about two minutes at
a million vectors on 2 cores). Tombstones live in the FAISS file itself, so each
generation's file is complete on its own.

Search parameters (nprobe for ivf/ivfpq, efSearch for hnsw) are stored in the FAISS file,
default to DEFAULT_NPROBE / DEFAULT_EF_SEARCH, and can be changed with `set_search_params`
(the Index keeps overrides in its manifest). Files are written to a temporary name,
flushed and renamed into place, so a reader never sees half a file.

Filtered searches (`search(..., allowed)`) pass the allowed ids to FAISS as an IDSelector (a
bitmap when ids are dense), kept per read-only allowed array until the vectors change; ivf
and ivfpq choose their lists by where the allowed vectors are (`_search_lists`), so a broad
or a topical filter keeps its recall and a selective one is searched exactly.

With faiss-gpu and a GPU, IVF k-means training runs on the GPU (a GpuIndexFlatIP as the
IVF's clustering_index, FAISS's documented way to train on a GPU and keep a CPU index), and
searches use a GPU copy of the index (index_cpu_to_gpu) where FAISS has a GPU version of
the type; hnsw, which has none, stays on the CPU. Adding stays on the CPU, so the file
saved is a CPU index.
"""

from __future__ import annotations

import errno
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path

import faiss
import numpy as np

from searcher.storage.files import write_atomic
from searcher.storage.vectors.base import VectorBackend
from searcher.sanitize import one_of

INDEX_TYPES = ("auto", "flat", "hnsw", "ivf", "ivfpq")
DEFAULT_INDEX_TYPE = "auto"
DEFAULT_FACTORY = "IDMap2,Flat"
AUTO_EXACT_LIMIT = 50_000  # auto: exact search below this many vectors (a query scans them all: ~7 ms at 50k here)
AUTO_MEMORY_SHARE = 0.25  # auto: compressed codes once exact vectors would take this share of RAM
IVFPQ_TRAIN_AT = 100_000  # ivfpq: exact vectors until this many, then trained once
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
DEFAULT_EF_SEARCH = 1024  # recall@10 0.95 at 1M on benchmarks/scale.py (0.81 at 128); about 2 ms a query there
DEFAULT_NPROBE = 64  # ivf recall@10 0.996 at 1M (4096 lists), 0.98 at 100k (1024 lists) on benchmarks/scale.py
TRAIN_POINTS_PER_LIST = 40  # k-means sample: 40 points a list (FAISS warns under 39)
MIN_POINTS_PER_LIST = 39
FILTER_SCAN_ALL_BELOW = 20_000  # a filter allowing fewer ids makes ivf visit every list holding one (exact over them)
# Filtered ivf visits the nearest lists holding allowed vectors until it has seen this share of
# the vectors an unfiltered search sees (nprobe lists' worth): at 1M, 0.5 kept recall@10 >= 0.993
# for random 10% and 50% filters and a topical 10% one in 2.3-3 ms; 1.0 gave 0.998-1.0 in 3.8-5.4 ms
# (benchmarks/filtered.py; benchmarks/README.md, "Filtered search").
FILTER_CANDIDATES = 0.5
SELECTOR_CACHE = 8  # IDSelectors kept for read-only allowed-id arrays (the Index's cached filters)
BITMAP_SLACK_BYTES = 1 << 20  # a bitmap selector may take this much more memory than a hash set of the ids
SINGLE_THREAD_BELOW = 4  # searches of fewer queries than this use one OpenMP thread
HNSW_COMPACT_SHARE = 0.1  # rebuild an hnsw graph when this share of it is tombstones
_LIVE = faiss.IDSelectorRange(0, 1 << 62)  # ids >= 0: not tombstones


def _write_index(index: faiss.Index, path: Path) -> None:
    """faiss.write_index, with its failure as an OSError: FAISS reports a failed write (a full
    disk, an I/O error) as a RuntimeError that has lost the errno. ENOSPC when the file system
    is (nearly) full as the write fails, else EIO."""
    try:
        faiss.write_index(index, str(path))
    except RuntimeError as e:
        try:
            st = os.statvfs(Path(path).parent)
            full = st.f_bavail * st.f_frsize < 1 << 20
        except OSError:
            full = False
        code = errno.ENOSPC if full else errno.EIO
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "write failed"
        raise OSError(code, f"{os.strerror(code)} (FAISS: {reason})", str(path)) from e


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def check_index_type(index_type: str | None) -> str:
    return one_of(index_type, INDEX_TYPES, DEFAULT_INDEX_TYPE, "index type")


def nlist_for(n: int) -> int:
    """Inverted lists for n vectors: a power of two near 4*sqrt(n), with >= 39 training points a list."""
    if n < 2 * MIN_POINTS_PER_LIST:
        return 1
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    while nlist > 1 and nlist * MIN_POINTS_PER_LIST > n:
        nlist //= 2
    return nlist


def pq_bytes(dimension: int) -> int:
    """PQ sub-quantizers (bytes a code): d/3, or the largest divisor of d below it (128 at 384 dimensions)."""
    m = max(1, dimension // 3)
    while dimension % m:
        m -= 1
    return m


def memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 16 << 30


def plan(index_type: str, n: int, dimension: int, current: "FaissVectorIndex | None" = None) -> str:
    """The factory string an index of `index_type` holding n vectors should have.

    Keeps the current ivf lists until nlist_for(n) is 2x larger or 4x smaller (so that
    adds and deletes near a boundary do not rebuild again and again), and keeps a trained
    ivfpq index as it is (its exact vectors are gone).
    """
    index_type = check_index_type(index_type)
    kind = current.kind if current is not None else None
    if index_type == "flat":
        return DEFAULT_FACTORY
    if index_type == "hnsw":
        return current.describe() if kind == "hnsw" else f"IDMap2,HNSW{HNSW_M}"
    if kind == "ivfpq" and index_type in ("ivfpq", "auto"):
        return current.describe()
    if index_type == "ivfpq":
        if n < IVFPQ_TRAIN_AT:
            return DEFAULT_FACTORY
        return f"IVF{nlist_for(n)},PQ{pq_bytes(dimension)}"
    if index_type == "auto":
        if n * (4 * dimension + 8) > AUTO_MEMORY_SHARE * memory_bytes():
            return f"IVF{nlist_for(n)},PQ{pq_bytes(dimension)}"
        if n < (AUTO_EXACT_LIMIT // 2 if kind == "ivf" else AUTO_EXACT_LIMIT):
            return DEFAULT_FACTORY
    # ivf, and auto above its exact limit
    wanted = nlist_for(n)
    if kind == "ivf" and current.nlist // 4 < wanted < current.nlist * 2:
        return current.describe()
    return f"IVF{wanted},Flat"


def _kind(index: faiss.Index) -> str:
    if isinstance(index, faiss.IndexIDMap2):
        inner = faiss.downcast_index(index.index)
        if isinstance(inner, faiss.IndexHNSW):
            return "hnsw"
        if isinstance(inner, faiss.IndexFlat):
            return "flat"
        raise ValueError(f"unsupported index inside IDMap2: {type(inner).__name__}")
    if isinstance(index, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(index, faiss.IndexIVFPQ):
        return "ivfpq"
    raise ValueError(f"unsupported FAISS index {type(index).__name__}")


class FaissVectorIndex(VectorBackend):
    """Inner-product search over unit vectors (so scores are cosines), with add/remove by id."""

    name = "faiss"

    def __init__(self, index: faiss.Index, use_gpu: bool = False):
        self.index = index
        self.kind = _kind(index)
        self.inner = faiss.downcast_index(index.index) if self.kind in ("flat", "hnsw") else index
        self.use_gpu = use_gpu and gpu_available()
        self._gpu_index = None  # search copy on the GPU, rebuilt after changes
        self._tombstones = 0
        self._selectors: OrderedDict = OrderedDict()  # id(allowed array) -> (that array, its IDSelector)
        self._selectors_lock = threading.Lock()
        self._layout: tuple[np.ndarray, np.ndarray] | None = None  # ivf: ids in list order, their lists
        self.index_type = "flat"  # what re-planning aims at (the manifest's: see configure)
        if self.kind == "hnsw":
            self._tombstones = int(np.count_nonzero(faiss.vector_to_array(index.id_map) < 0))

    @property
    def factory(self) -> str:
        return self.describe()

    @classmethod
    def create(cls, dimension: int, factory: str = DEFAULT_FACTORY, use_gpu: bool = False):
        """An empty index of a factory string (a bare Flat or HNSW gets an IDMap2 around it)."""
        if not factory.startswith(("IDMap", "IVF")):
            factory = f"IDMap2,{factory}"
        index = faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
        self = cls(index, use_gpu)
        if self.kind == "hnsw":
            self.inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            self.inner.hnsw.efSearch = DEFAULT_EF_SEARCH
        elif self.kind in ("ivf", "ivfpq"):
            index.nprobe = min(DEFAULT_NPROBE, index.nlist)
            if self.kind == "ivfpq":
                index.do_polysemous_training = False  # only for Hamming-filtered search (unused); 100x the training time
        return self

    @classmethod
    def load(cls, path: Path, use_gpu: bool = False):
        """Read a vectors file (its type is in the file)."""
        return cls(faiss.read_index(str(path)), use_gpu)

    # -- the backend interface: settings from the manifest ---------------------------------
    @staticmethod
    def manifest_fields(manifest: dict) -> dict:
        index_type = check_index_type(manifest.get("index_type"))
        return {"index_type": index_type, "index_factory": plan(index_type, 0, manifest["dimension"])}

    @classmethod
    def empty(cls, manifest: dict, use_gpu: bool = False) -> "FaissVectorIndex":
        index_type = manifest.get("index_type", "flat")
        return cls.create(manifest["dimension"], plan(index_type, 0, manifest["dimension"]), use_gpu).configure(manifest)

    @classmethod
    def open(cls, path: Path, manifest: dict, use_gpu: bool = False) -> "FaissVectorIndex":
        return cls.load(path, use_gpu).configure(manifest)

    def configure(self, manifest: dict) -> "FaissVectorIndex":
        """Take the manifest's index type (indexes made before index types are flat) and search parameters."""
        self.index_type = manifest.get("index_type", "flat")
        self.set_search_params(**(manifest.get("search_params") or {}))
        return self

    def prepare_commit(self, manifest: dict) -> "FaissVectorIndex":
        self.index_type = manifest.get("index_type", self.index_type)
        return self.replan(self.index_type, manifest.get("search_params"))

    def copy(self) -> "FaissVectorIndex":
        twin = FaissVectorIndex(faiss.clone_index(self.index), self.use_gpu)
        twin.index_type = self.index_type
        if self.kind == "hnsw":
            twin.inner.hnsw.efSearch = self.inner.hnsw.efSearch  # not kept by clone_index
        return twin

    def save(self, path: Path) -> None:
        write_atomic(Path(path), lambda tmp: _write_index(self.index, tmp))

    @property
    def dimension(self) -> int:
        return self.index.d

    @property
    def nlist(self) -> int:
        return int(self.index.nlist) if self.kind in ("ivf", "ivfpq") else 0

    def describe(self) -> str:
        """The factory string of this index."""
        if self.kind == "flat":
            return DEFAULT_FACTORY
        if self.kind == "hnsw":
            return f"IDMap2,HNSW{self.inner.hnsw.nb_neighbors(1)}"
        if self.kind == "ivf":
            return f"IVF{self.index.nlist},Flat"
        return f"IVF{self.index.nlist},PQ{self.index.pq.M}"

    def __len__(self) -> int:
        return int(self.index.ntotal) - self._tombstones

    # -- search parameters ----------------------------------------------------------------
    def search_params(self) -> dict:
        if self.kind == "hnsw":
            return {"ef_search": int(self.inner.hnsw.efSearch)}
        if self.kind in ("ivf", "ivfpq"):
            return {"nprobe": int(self.index.nprobe)}
        return {}

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None, **ignored) -> None:
        """nprobe (ivf, ivfpq: lists visited a query) and ef_search (hnsw: candidate queue); others ignore them."""
        if nprobe is not None and self.kind in ("ivf", "ivfpq"):
            self.index.nprobe = max(1, min(int(nprobe), self.index.nlist))
            self._gpu_index = None
        if ef_search is not None and self.kind == "hnsw":
            self.inner.hnsw.efSearch = max(1, int(ef_search))

    # -- ids and vectors ----------------------------------------------------------------
    def ids(self) -> np.ndarray:
        """All stored ids (for consistency checks)."""
        if self.kind in ("flat", "hnsw"):
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            return ids[ids >= 0]
        lists = self.index.invlists
        parts = [np.zeros(0, np.int64)]
        for no in range(self.index.nlist):
            size = lists.list_size(no)
            if size:
                parts.append(faiss.rev_swig_ptr(lists.get_ids(no), size).astype(np.int64))
        return np.concatenate(parts)

    def export(self, approximate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(ids, exact vectors) of every live vector; ValueError for ivfpq, which keeps only
        codes, unless `approximate`: then ivfpq gives its codes decoded (`_decoded`)."""
        d = self.dimension
        if self.kind in ("flat", "hnsw"):
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            n = len(ids)
            vectors = self.inner.reconstruct_n(0, n) if n else np.zeros((0, d), np.float32)
            live = ids >= 0
            return ids[live], vectors[live]
        if self.kind == "ivf":
            lists = self.index.invlists
            id_parts, vec_parts = [np.zeros(0, np.int64)], [np.zeros((0, d), np.float32)]
            for no in range(self.index.nlist):
                size = lists.list_size(no)
                if size:
                    id_parts.append(faiss.rev_swig_ptr(lists.get_ids(no), size).astype(np.int64))
                    codes = faiss.rev_swig_ptr(lists.get_codes(no), size * lists.code_size)
                    vec_parts.append(np.frombuffer(codes.tobytes(), dtype=np.float32).reshape(size, d))
            return np.concatenate(id_parts), np.concatenate(vec_parts)
        if approximate:
            return self._decoded()
        raise ValueError("an ivfpq index holds product-quantised codes, not the exact vectors")

    def _decoded(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, reconstructed vectors) of an ivfpq index: each inverted list's codes, prefixed
        with the list number as FAISS's standalone codes are (little-endian, coarse_code_size
        bytes), decoded in one sa_decode call a list (centroid plus PQ residual)."""
        lists, d = self.index.invlists, self.dimension
        prefix_bytes = self.index.coarse_code_size()
        id_parts, vec_parts = [np.zeros(0, np.int64)], [np.zeros((0, d), np.float32)]
        for no in range(self.index.nlist):
            size = lists.list_size(no)
            if not size:
                continue
            id_parts.append(faiss.rev_swig_ptr(lists.get_ids(no), size).astype(np.int64))
            codes = faiss.rev_swig_ptr(lists.get_codes(no), size * lists.code_size).reshape(size, lists.code_size)
            prefix = np.frombuffer(int(no).to_bytes(prefix_bytes, "little"), dtype=np.uint8)
            standalone = np.ascontiguousarray(np.hstack([np.broadcast_to(prefix, (size, prefix_bytes)), codes]))
            vec_parts.append(self.index.sa_decode(standalone))
        return np.concatenate(id_parts), np.concatenate(vec_parts)

    # -- changes ------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self.index.is_trained:
            self.train(vectors)
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        self._changed()

    def train(self, vectors: np.ndarray, seed: int = 1234) -> None:
        """Train an ivf/ivfpq index on a sample of `vectors` (TRAIN_POINTS_PER_LIST a list), on the GPU when there is one."""
        if self.index.is_trained:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        want = max(TRAIN_POINTS_PER_LIST * self.index.nlist, 256 if self.kind == "ivfpq" else 0)
        if len(vectors) > want:
            pick = np.random.default_rng(seed).choice(len(vectors), want, replace=False)
            vectors = vectors[np.sort(pick)]
        self.index.cp.min_points_per_centroid = 1  # the sample size is chosen above; no warnings
        if self.kind == "ivfpq":
            self.index.pq.cp.min_points_per_centroid = 1
        gpu = None
        if gpu_available():
            try:
                res = faiss.StandardGpuResources()
                gpu = (res, faiss.GpuIndexFlatIP(res, self.dimension))
                self.index.clustering_index = gpu[1]  # k-means assignment on the GPU
            except (RuntimeError, AttributeError):
                gpu = None
        try:
            self.index.train(vectors)
        finally:
            if gpu is not None:
                self.index.clustering_index = None

    def remove(self, ids) -> int:
        ids = np.ascontiguousarray(np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64))
        if len(ids) == 0 or self.index.ntotal == 0:
            return 0
        self._changed()
        if self.kind != "hnsw":
            return int(self.index.remove_ids(faiss.IDSelectorBatch(ids)))
        id_map = faiss.vector_to_array(self.index.id_map)
        hit = np.isin(id_map, ids) & (id_map >= 0)
        removed = int(np.count_nonzero(hit))
        if removed:
            id_map[hit] = -1 - id_map[hit]  # tombstone: skipped by every search
            faiss.copy_array_to_vector(id_map, self.index.id_map)
            self.index.construct_rev_map()
            self._tombstones += removed
        return removed

    def _changed(self) -> None:
        """Forget what was derived from the vectors held: the GPU copy, list layout, selectors."""
        self._gpu_index = None
        self._layout = None
        with self._selectors_lock:
            self._selectors.clear()

    def replan(self, index_type: str, search_params: dict | None = None) -> "FaissVectorIndex":
        """This index, or a rebuild of it as `index_type`'s plan for its size asks (see module
        doc), with the `search_params` a user chose (the manifest's) applied."""
        wanted = plan(index_type, len(self), self.dimension, self)
        compact = self.kind == "hnsw" and self._tombstones > HNSW_COMPACT_SHARE * self.index.ntotal
        if wanted == self.describe() and not compact:
            rebuilt = self
        else:
            # The rebuild starts from the defaults for its size (nprobe is capped by nlist, so
            # copying a small index's nprobe would cripple a larger one), then the user's settings.
            ids, vectors = self.export()
            rebuilt = FaissVectorIndex.create(self.dimension, wanted, self.use_gpu)
            rebuilt.add(ids, vectors)
            rebuilt.index_type = self.index_type
        rebuilt.set_search_params(**(search_params or {}))
        return rebuilt

    # -- search -------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k nearest vectors to each query; ids are -1 where fewer exist.
        `allowed`: the candidates, through an IDSelector in FAISS's search parameters, so the
        filter runs inside the search. An inverted-list index chooses its lists by where the
        allowed vectors are (`_search_lists`): every list holding one when few ids are allowed
        (FILTER_SCAN_ALL_BELOW), so a selective filter still finds its best. The selector of a
        read-only `allowed` array (a bitmap when ids are dense) and its count of allowed
        vectors per list are made once and kept (SELECTOR_CACHE): the Index hands out the same
        read-only array for a cached filter, and making them costs O(N) (a hash-set
        IDSelectorBatch of half a million ids took 50-350 ms here)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if len(self) == 0 or (allowed is not None and len(allowed) == 0):
            n = len(queries)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        # A few queries run on this thread alone: FAISS splits work by query, so a second
        # OpenMP thread adds nothing but a wake-up, which costs milliseconds whenever the
        # other core is busy (omp_set_num_threads applies to the calling thread only).
        threads = faiss.omp_get_max_threads()
        if len(queries) < SINGLE_THREAD_BELOW and threads > 1:
            faiss.omp_set_num_threads(1)
        try:
            if allowed is not None:
                return self._search_allowed(queries, k, allowed)
            k = max(1, min(k, len(self)))
            if self._tombstones:
                params = faiss.SearchParametersHNSW(efSearch=int(self.inner.hnsw.efSearch), sel=_LIVE)
                return self.index.search(queries, k, params=params)
            return self._searcher().search(queries, k)
        finally:
            if threads > 1:
                faiss.omp_set_num_threads(threads)

    def _search_allowed(self, queries: np.ndarray, k: int, allowed: np.ndarray):
        allowed = np.asarray(allowed)  # the caller's array itself (its identity keys the cache)
        k = max(1, min(k, len(allowed)))
        selector, counts = self._selector(allowed)
        if self.kind in ("ivf", "ivfpq"):
            return self._search_lists(queries, k, selector, counts)
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(int(self.inner.hnsw.efSearch), k))
        else:
            params = faiss.SearchParameters(sel=selector)
        return self.index.search(queries, k, params=params)

    def _search_lists(self, queries: np.ndarray, k: int, selector, counts: np.ndarray):
        """A filtered inverted-list search that visits, nearest first, the lists holding allowed
        vectors until it has seen FILTER_CANDIDATES times as many of them as an unfiltered
        search sees vectors (nprobe lists' worth): a filter keeping 10% of the vectors visits
        about 5x nprobe lists, one whose vectors sit in a few lists (a folder of one topic)
        visits those, and one allowing fewer than FILTER_SCAN_ALL_BELOW ids visits every list
        that holds one (an exact search). Lists without an allowed vector are never scanned.
        (A plain nprobe search with the selector sees a tenth of the candidates at 10%, and
        few of a topical filter's when the query is about another topic: recall@10 0.96 at 1M.)
        The cost is about the allowed vectors scored (FAISS skips the others of a visited list
        at a bitmap test each)."""
        n, nlist = len(queries), self.index.nlist
        allowed = int(counts.sum())
        target = allowed if allowed < FILTER_SCAN_ALL_BELOW else FILTER_CANDIDATES * self.index.nprobe * len(self) / nlist
        centroid_dis, lists = self.index.quantizer.search(queries, nlist)  # every list, nearest first
        rows = []
        for i in range(n):
            holding = counts[lists[i]] > 0
            near, dis = lists[i][holding], centroid_dis[i][holding]
            enough = int(np.searchsorted(np.cumsum(counts[near]), target)) + 1
            rows.append((near[:enough], dis[:enough]))
        width = max(len(near) for near, _ in rows)
        if width == 0:  # no allowed id is in this index
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        assign = np.full((n, width), -1, dtype=np.int64)  # -1: no list (FAISS skips it)
        assign_dis = np.zeros((n, width), dtype=np.float32)
        for i, (near, dis) in enumerate(rows):
            assign[i, : len(near)], assign_dis[i, : len(dis)] = near, dis
        scores = np.empty((n, k), dtype=np.float32)
        ids = np.empty((n, k), dtype=np.int64)
        params = faiss.SearchParametersIVF(sel=selector, nprobe=width)
        self.index.search_preassigned_c(n, faiss.swig_ptr(queries), k, faiss.swig_ptr(assign),
                                        faiss.swig_ptr(assign_dis), faiss.swig_ptr(scores), faiss.swig_ptr(ids),
                                        False, params)
        return scores, ids

    def _selector(self, allowed: np.ndarray):
        """(IDSelector of `allowed`, allowed vectors in each inverted list or None): cached
        while the array is read-only (it cannot change under its cached selector), made
        afresh for a writable one."""
        if allowed.flags.writeable:
            return self._make_selector(allowed)
        key = id(allowed)
        with self._selectors_lock:
            hit = self._selectors.get(key)
            if hit is not None and hit[0] is allowed:
                self._selectors.move_to_end(key)
                return hit[1]
        made = self._make_selector(allowed)
        with self._selectors_lock:
            self._selectors[key] = (allowed, made)  # the array is kept with it: its id stays its own
            while len(self._selectors) > SELECTOR_CACHE:
                self._selectors.popitem(last=False)
        return made

    def _make_selector(self, allowed: np.ndarray):
        allowed = np.ascontiguousarray(allowed, dtype=np.int64)
        counts = None
        if self.kind in ("ivf", "ivfpq"):
            ids, lists = self._list_layout()
            counts = np.bincount(lists[is_member(ids, allowed)], minlength=self.index.nlist)
        return id_selector(allowed), counts

    def _list_layout(self) -> tuple[np.ndarray, np.ndarray]:
        """(every id held, in inverted-list order; the list each is in), kept until the next add
        or remove (about 0.1 s to make at a million vectors; 12 bytes a vector)."""
        if self._layout is None:
            lists = self.index.invlists
            sizes = np.array([lists.list_size(no) for no in range(self.index.nlist)], dtype=np.int64)
            self._layout = (self.ids(), np.repeat(np.arange(self.index.nlist, dtype=np.int32), sizes))
        return self._layout

    def _searcher(self):
        if not self.use_gpu or self.kind == "hnsw":
            return self.index
        if self._gpu_index is None:
            try:
                res = faiss.StandardGpuResources()
                options = faiss.GpuClonerOptions()
                options.useFloat16 = self.kind == "ivfpq"  # float16 lookup tables: needed for many sub-quantizers
                self._gpu_res = res
                self._gpu_index = faiss.index_cpu_to_gpu(res, 0, self.index, options)
            except (RuntimeError, AttributeError):
                self.use_gpu = False  # this index type has no GPU version: stay on the CPU
                return self.index
        return self._gpu_index


def is_member(ids: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """For each of `ids`, whether it is in `allowed` (both non-negative int64): a byte mask
    indexed by id when ids are dense enough (chunk ids are), else np.isin."""
    top = max(int(ids.max(initial=-1)), int(allowed.max(initial=-1)))
    if top < 0:
        return np.zeros(len(ids), dtype=bool)
    if top > 8 * (len(ids) + len(allowed)) + (1 << 24) or int(allowed.min(initial=0)) < 0:
        return np.isin(ids, allowed)
    mask = np.zeros(top + 1, dtype=bool)
    mask[allowed] = True
    return mask[ids]


def id_selector(allowed) -> faiss.IDSelector:
    """A FAISS IDSelector accepting exactly the ids in `allowed` (non-negative integers, any
    order). A bitmap (one bit per id up to the largest: 125 kB below a million; a member test
    is one bit) when it takes at most BITMAP_SLACK_BYTES more than IDSelectorBatch's hash set
    (about 16 bytes an id), else that hash set."""
    allowed = np.ascontiguousarray(allowed, dtype=np.int64)
    top = int(allowed.max()) if len(allowed) else -1
    if top < 0 or int(allowed.min()) < 0 or top // 8 > 16 * len(allowed) + BITMAP_SLACK_BYTES:
        return faiss.IDSelectorBatch(allowed)
    mask = np.zeros(top + 1, dtype=bool)
    mask[allowed] = True
    bitmap = np.packbits(mask, bitorder="little")  # id i is bit i % 8 of byte i // 8, as FAISS reads it
    selector = faiss.IDSelectorBitmap(bitmap)
    selector.bitmap_array = bitmap  # FAISS keeps a pointer only: the array must live as long as the selector
    return selector


def build_index(index_type: str, ids: np.ndarray, vectors: np.ndarray, use_gpu: bool = False) -> FaissVectorIndex:
    """A new index of `index_type` planned for these vectors, trained on a sample of them and filled."""
    factory = plan(index_type, len(ids), vectors.shape[1])
    index = FaissVectorIndex.create(vectors.shape[1], factory, use_gpu)
    index.add(ids, vectors)
    return index
