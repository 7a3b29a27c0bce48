"""A map of the corpus: every document as a point in two dimensions, placed by meaning.

    document_vectors(index)   one unit vector per document: the mean of its chunks' stored
                              vectors (nothing is re-encoded), normalised
    layout(vectors, method)   2-D coordinates in [0, 1]: UMAP (umap-learn) or PCA
    clusters(vectors)         k-means (faiss.Kmeans) over the document vectors, for colours
    distinctive_terms(...)    each cluster's name: its top words by c-TF-IDF (BERTopic's
                              class-based TF-IDF over the cluster's chunks)
    corpus_map(index)         the map of the live generation as a JSON-ready dict, cached in
                              the index folder as map.<generation>.json

Which layout: "auto" uses UMAP when umap-learn is importable and the corpus has at least
UMAP_MIN_DOCS documents, PCA otherwise. PCA (the top two principal axes, numpy) takes
milliseconds at any size this index holds and, for a few thousand documents, already
separates the main topics. UMAP keeps neighbourhoods far better (what is near on the map is
near in meaning: trustworthiness in benchmarks/README.md, "Map layout") but costs at least
about ten seconds even for a small corpus (numba compiles its kernels in every new process,
and its optimisation runs a fixed number of epochs), and its result differs from run to run.
Below UMAP_MIN_DOCS a map is recomputed after each commit cheaply; above it, where a PCA map
becomes one blob, the layout is worth its cost.

Vectors come from the vector backend (`Index.chunk_vectors`): exact for flat, hnsw and ivf;
an ivfpq index keeps only product-quantised codes, and gives their reconstructions (close
enough to place a point). A document without chunks has no vector and is left off the map
(counted as "unplaced").

The cache: one file a generation, written atomically (temporary file, fsync, rename) after
the map is computed; older generations' map files are removed then. A folder that cannot be
written (read-only, full) only costs the cache: the map is computed and kept in memory for
this Index object instead. A damaged or foreign cache file is ignored and replaced.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import re
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Callable

import numpy as np

from searcher.storage.files import write_atomic
from searcher.storage.keywords.base import STOP_WORDS

log = logging.getLogger(__name__)

MAP_FORMAT = 2  # bump when the cached payload changes shape
METHODS = ("auto", "pca", "umap")
UMAP_MIN_DOCS = 2_000  # auto: UMAP from this many documents (see the module doc)
UMAP_NEIGHBOURS = 15  # umap-learn's default: local structure against global
UMAP_MIN_DIST = 0.1
MAX_CLUSTERS = 20  # colours a reader can tell apart
FACETS = ("type", "folder")  # metadata fields a map can be coloured by (files' type and folder)
TITLE_CHARS = 200  # a hover shows the title; longer ones are cut
LABEL_TERMS = 3  # words that name a cluster
LABEL_CHUNKS = 1_000  # chunks read per cluster to name it, spread over its documents (bounds the cost)
# Besides the keyword engine's stop words, the function words that would otherwise name a
# cluster of a small corpus (c-TF-IDF weighs them down, but with two clusters not enough).
LABEL_STOP_WORDS = STOP_WORDS | frozenset(
    "about after all also am any been before between both can could did do does each from had has have he her "
    "here his how i its may me more most my nor now only other our out over she should so some than them those "
    "through under up us very was we were what when where which while who why would you your".split())
DECIMALS = 4  # coordinates in [0, 1]: a 10,000-pixel-wide map before rounding shows
_MAP_NAME = re.compile(r"map\.(\d+)\.json")

_memo: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # Index -> (key, payload)
_locks: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # Index -> Lock
_memo_lock = threading.Lock()


def map_path(folder: Path, generation: int) -> Path:
    return Path(folder) / f"map.{generation}.json"


def umap_available() -> bool:
    try:
        importlib.import_module("umap")
    except ImportError:
        return False
    return True


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown map layout {method!r}: use one of {', '.join(METHODS)}")
    return method


def choose_method(n: int, method: str = "auto") -> str:
    """The layout `method` means for n documents: "pca" or "umap". ValueError when "umap" is
    asked for and umap-learn is missing. Fewer points than UMAP's neighbourhood get PCA."""
    check_method(method)
    if method == "umap" and not umap_available():
        raise ValueError("the umap layout needs umap-learn: pip install -e '.[map]' (in the searcher checkout)")
    if method == "auto":
        method = "umap" if n >= UMAP_MIN_DOCS and umap_available() else "pca"
    if method == "umap" and n <= UMAP_NEIGHBOURS + 1:
        return "pca"
    return method


# -- vectors ----------------------------------------------------------------------------
def mean_vectors(owner: np.ndarray, vectors: np.ndarray, n: int,
                 rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(unit mean vector of each of n groups, how many rows each had) from rows `vectors`
    (or only those numbered `rows`) belonging to groups `owner` (0..n-1, one per row used).
    A group without rows gets a zero vector. (np.add.at: about 1 s for 300,000 rows of 384 on
    2 cores, three times faster than np.add.reduceat over rows sorted by group.)"""
    d = vectors.shape[1] if vectors.ndim == 2 else 0
    owner = np.asarray(owner, np.int64)
    counts = np.bincount(owner, minlength=n)
    sums = np.zeros((n, d), np.float32)
    if len(owner):
        np.add.at(sums, owner, vectors if rows is None else vectors[rows])
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0), counts


def document_vectors(index, retries: int = 5):
    """(generation, documents, vectors): the live generation's documents that have vectors, as
    (id, title, metadata) sorted by id, and one unit vector a document (the mean of its
    chunks' vectors), plus how many documents had none. Returns a dict with those keys."""
    for attempt in range(retries):
        generation, chunk_ids, vectors = index.chunk_vectors()
        store = index.store
        with store.db.atomic():  # the rows of one commit
            current = store.generation
            owners = store.chunk_owners()
            docs = store.document_summaries()
        if current == generation or attempt == retries - 1:
            break
        time.sleep(0.05)  # a commit landed between the two reads: read both again
    position = {doc_id: i for i, (doc_id, _, _) in enumerate(docs)}
    owner_chunk = np.array([c for c, _ in owners], np.int64)
    owner_doc = np.array([position.get(d, -1) for _, d in owners], np.int64)
    order = np.argsort(owner_chunk)
    owner_chunk, owner_doc = owner_chunk[order], owner_doc[order]
    # Each vector's document: its chunk id looked up among the chunk rows (a vector the store
    # does not name yet, from a write in progress, is dropped).
    if len(owner_chunk):
        at = np.minimum(np.searchsorted(owner_chunk, chunk_ids), len(owner_chunk) - 1)
        doc_of = np.where(owner_chunk[at] == chunk_ids, owner_doc[at], -1)
    else:
        doc_of = np.full(len(chunk_ids), -1, np.int64)
    rows = np.flatnonzero(doc_of >= 0)
    if len(rows) == len(doc_of):  # every vector has its document (no write in progress): no copy
        means, counts = mean_vectors(doc_of, vectors, len(docs))
    else:
        means, counts = mean_vectors(doc_of[rows], vectors, len(docs), rows)
    placed = counts > 0
    return {
        "generation": generation,
        "documents": [docs[i] for i in np.flatnonzero(placed)],
        "vectors": means[placed],
        "unplaced": int(len(docs) - placed.sum()),
    }


# -- layout and clusters ----------------------------------------------------------------
def fit_unit_square(coords: np.ndarray) -> np.ndarray:
    """Scale and shift 2-D points into [0, 1] (both axes by the same factor, so distances
    keep their proportions; the shorter axis is centred)."""
    coords = np.asarray(coords, np.float64)
    if len(coords) == 0:
        return np.zeros((0, 2), np.float32)
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = float((high - low).max())
    if not math.isfinite(span) or span <= 0:
        return np.full((len(coords), 2), 0.5, np.float32)
    return ((coords - (low + high) / 2) / span + 0.5).astype(np.float32)


def pca(vectors: np.ndarray) -> np.ndarray:
    """The points on their top two principal axes (eigenvectors of the covariance, each
    signed so its largest loading is positive: the same input gives the same map)."""
    x = np.asarray(vectors, np.float32)
    n, d = x.shape
    if n < 2 or d == 0:
        return np.zeros((n, 2), np.float32)
    x = x - x.mean(axis=0)
    cov = (x.T @ x).astype(np.float64) / (n - 1)
    values, axes = np.linalg.eigh(cov)  # ascending
    axes = axes[:, ::-1][:, :2]
    if axes.shape[1] < 2:
        axes = np.hstack([axes, np.zeros((d, 2 - axes.shape[1]))])
    signs = np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])
    axes = axes * np.where(signs == 0, 1, signs)
    return (x @ axes.astype(np.float32)).astype(np.float32)


def umap_layout(vectors: np.ndarray) -> np.ndarray:
    """UMAP (umap-learn) over unit vectors: euclidean distance ranks neighbours as cosine does."""
    import umap

    n = len(vectors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # umap-learn warns about n_jobs and numba on every fit
        reducer = umap.UMAP(n_components=2, n_neighbors=min(UMAP_NEIGHBOURS, n - 1), min_dist=UMAP_MIN_DIST,
                            metric="euclidean", low_memory=True)
        return np.asarray(reducer.fit_transform(np.asarray(vectors, np.float32)), np.float32)


def layout(vectors: np.ndarray, method: str = "auto") -> np.ndarray:
    """(n, 2) float32 coordinates in [0, 1] for n unit vectors (see `choose_method`)."""
    method = choose_method(len(vectors), method)
    coords = umap_layout(vectors) if method == "umap" else pca(vectors)
    return fit_unit_square(coords)


def cluster_count(n: int) -> int:
    """About sqrt(n/2) clusters, at most MAX_CLUSTERS (1 for a single document)."""
    return max(1, min(MAX_CLUSTERS, round(math.sqrt(n / 2)), n))


def clusters(vectors: np.ndarray, k: int | None = None, seed: int = 1234) -> tuple[np.ndarray, np.ndarray]:
    """(cluster of each vector, the central row of each cluster): spherical k-means
    (faiss.Kmeans), clusters numbered by size, largest first; the central row is the vector
    nearest its centroid (its document names the cluster)."""
    import faiss

    x = np.ascontiguousarray(vectors, np.float32)
    n = len(x)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = cluster_count(n) if k is None else max(1, min(k, n))
    if k == 1:
        centre = x.mean(axis=0, keepdims=True)
        return np.zeros(n, np.int64), np.array([int(np.argmax(x @ centre.T))])
    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, spherical=True, min_points_per_centroid=1,
                      max_points_per_centroid=512)
    km.train(x)
    _, assigned = km.index.search(x, 1)
    assigned = assigned[:, 0].astype(np.int64)
    sizes = np.bincount(assigned, minlength=k)
    rank = np.empty(k, np.int64)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(k)  # old number -> number by size
    labels = rank[assigned]
    used = np.unique(labels)  # k-means may leave a centroid without points
    renumber = np.full(k, -1, np.int64)
    renumber[used] = np.arange(len(used))
    labels = renumber[labels]
    centroids = km.centroids[np.argsort(-sizes, kind="stable")][used]
    central = np.empty(len(used), np.int64)
    for c in range(len(used)):
        members = np.flatnonzero(labels == c)
        central[c] = members[int(np.argmax(x[members] @ centroids[c]))]
    return labels, central


def label_word(word: str) -> bool:
    """Whether a word may name a cluster: two letters or more, not only digits, no stop word."""
    return len(word) > 1 and not word.isdigit() and word not in LABEL_STOP_WORDS


def distinctive_terms(cluster_texts: list[list[str]], words: Callable[[str], list[str]],
                      n: int = LABEL_TERMS) -> list[list[str]]:
    """The `n` most distinctive words of each cluster by c-TF-IDF (BERTopic's): the cluster's
    texts as one document, a word's weight tf(w, c) / |c| * log(1 + A / f(w)), where |c| is
    the cluster's word count, A the mean word count of a cluster and f(w) the word's count in
    all clusters. A word common everywhere weighs little; one frequent in a cluster and rare
    elsewhere names it. `words`: the keyword engine's analysis (folded, not stemmed)."""
    counts = []
    for texts in cluster_texts:
        counter: dict[str, int] = {}
        for text in texts:
            for word in words(text):
                if label_word(word):
                    counter[word] = counter.get(word, 0) + 1
        counts.append(counter)
    total: dict[str, int] = {}
    for counter in counts:
        for word, c in counter.items():
            total[word] = total.get(word, 0) + c
    average = sum(total.values()) / max(1, len(counts))
    out = []
    for counter in counts:
        size = sum(counter.values()) or 1
        weight = {w: c / size * math.log(1 + average / total[w]) for w, c in counter.items()}
        out.append([w for w, _ in sorted(weight.items(), key=lambda item: (-item[1], item[0]))[:n]])
    return out


def cluster_texts(index, documents: list, labels: np.ndarray, k: int, limit: int = LABEL_CHUNKS) -> list[list[str]]:
    """Each cluster's text to name it by: its documents' titles and up to `limit` of their
    chunks, spread evenly over them."""
    store = index.store
    out = []
    for c in range(k):
        ids = [documents[i][0] for i in np.flatnonzero(labels == c)]
        chunk_ids = sorted(store.chunk_ids_of(ids)) if ids else []
        if len(chunk_ids) > limit:
            chunk_ids = [chunk_ids[i] for i in np.linspace(0, len(chunk_ids) - 1, limit).astype(int)]
        chunks = store.chunks(chunk_ids) if chunk_ids else {}
        out.append([documents[i][1] or "" for i in np.flatnonzero(labels == c)] + [ch.text for ch in chunks.values()])
    return out


# -- the map ----------------------------------------------------------------------------
def _facet(metadata: dict, name: str) -> str | None:
    value = metadata.get(name) if isinstance(metadata, dict) else None
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def build_map(generation: int, documents: list, vectors: np.ndarray, method: str = "auto",
              unplaced: int = 0, name_clusters: Callable[[np.ndarray, int], list[list[str]]] | None = None) -> dict:
    """The JSON-ready map of these documents ((id, title, metadata) each) and their vectors.
    `name_clusters(labels, k)`: each cluster's distinctive words (its label; without it, or
    for a cluster without words, the title of its most central document).

    Points are parallel arrays (compact at 100,000 documents): id, title, x, y, cluster and,
    for each facet in FACETS, the index of the document's value in `facets[name]` (null when
    it has none)."""
    started = time.perf_counter()
    used = choose_method(len(documents), method)
    coords = layout(vectors, used)
    labels, central = clusters(vectors)
    titles = [(title or doc_id)[:TITLE_CHARS] for doc_id, title, _ in documents]
    facet_values: dict[str, list] = {}
    facet_points: dict[str, list] = {}
    for name in FACETS:
        values: dict[str, int] = {}
        column = []
        for _, _, metadata in documents:
            value = _facet(metadata, name)
            column.append(None if value is None else values.setdefault(value, len(values)))
        facet_values[name], facet_points[name] = list(values), column
    sizes = np.bincount(labels, minlength=len(central)) if len(labels) else np.zeros(0, np.int64)
    terms = name_clusters(labels, len(central)) if name_clusters is not None and len(central) else []
    terms = list(terms) + [[]] * (len(central) - len(terms))
    return {
        "format": MAP_FORMAT,
        "generation": generation,
        "method": used,
        "requested": method,
        "documents": len(documents),
        "unplaced": unplaced,
        "seconds": round(time.perf_counter() - started, 3),
        "clusters": [{"size": int(sizes[c]), "label": ", ".join(terms[c]) or titles[int(central[c])],
                      "terms": terms[c], "title": titles[int(central[c])]} for c in range(len(central))],
        "facets": facet_values,
        "points": {
            "id": [doc_id for doc_id, _, _ in documents],
            "title": titles,
            "x": [round(float(v), DECIMALS) for v in coords[:, 0]],
            "y": [round(float(v), DECIMALS) for v in coords[:, 1]],
            "cluster": [int(c) for c in labels],
            **facet_points,
        },
    }


def read_cached(folder: Path, generation: int, method: str) -> dict | None:
    """The cached map of this generation and requested method, or None (absent, unreadable,
    another format: then it is recomputed)."""
    path = map_path(folder, generation)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        log.warning("%s is unreadable (%s); computing the map again", path, e)
        return None
    if not (isinstance(payload, dict) and payload.get("format") == MAP_FORMAT
            and payload.get("generation") == generation and payload.get("requested") == method
            and isinstance(payload.get("points"), dict)):
        return None
    return payload


def write_cache(folder: Path, payload: dict) -> bool:
    """Write the map as its generation's file and remove older generations' maps; False (and
    a log line) when the folder cannot be written."""
    generation = payload["generation"]
    try:
        write_atomic(map_path(folder, generation),
                     lambda tmp: tmp.write_text(json.dumps(payload, ensure_ascii=False, separators=(",", ":")),
                                                encoding="utf-8"))
    except OSError as e:
        log.info("cannot cache the corpus map in %s (%s); it is kept in memory", folder, e)
        return False
    remove_old_maps(folder, generation)
    return True


def remove_old_maps(folder: Path, generation: int) -> int:
    """Delete the map files of generations before `generation` (a newer one, written by a
    process that saw a later commit first, stays)."""
    removed = 0
    for path in Path(folder).glob("map.*.json"):
        m = _MAP_NAME.fullmatch(path.name)
        if m and int(m.group(1)) < generation:
            try:
                path.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def _lock_for(index) -> threading.Lock:
    with _memo_lock:
        lock = _locks.get(index)
        if lock is None:
            lock = _locks[index] = threading.Lock()
        return lock


def corpus_map(index, method: str = "auto") -> dict:
    """The map of the index's live generation: from memory, else from its cache file, else
    computed (and cached). One computation at a time per Index; concurrent callers wait for
    it and share the result."""
    check_method(method)
    with _lock_for(index):
        generation = index.live_generation()
        key = (generation, method)
        with _memo_lock:
            memo = _memo.get(index)
        if memo is not None and memo[0] == key:
            return memo[1]
        payload = read_cached(index.path, generation, method)
        if payload is None:
            data = document_vectors(index)
            payload = build_map(data["generation"], data["documents"], data["vectors"], method, data["unplaced"],
                                lambda labels, k: distinctive_terms(cluster_texts(index, data["documents"], labels, k),
                                                                    index.analyzer.surface_words))
            write_cache(index.path, payload)
            key = (payload["generation"], method)
        with _memo_lock:
            _memo[index] = (key, payload)
        return payload


def visible_map(payload: dict, visible: Callable[[str], bool]) -> dict:
    """The map as a viewer may see it (searcher/search/access.py): only the points of the
    documents `visible(id)` keeps, the clusters' sizes counted again, a cluster's title (its
    most central document's) replaced by a visible member's, and the facet values of hidden
    documents dropped. The layout and the cluster words are the whole collection's, as the
    suggestions' words are."""
    points = payload["points"]
    keep = [i for i, doc_id in enumerate(points["id"]) if visible(doc_id)]
    if len(keep) == len(points["id"]):
        return payload
    shown = {name: [column[i] for i in keep] for name, column in points.items()}
    facets = {}
    for name, values in payload["facets"].items():
        used: dict[int, int] = {}
        shown[name] = [None if v is None else used.setdefault(v, len(used)) for v in shown[name]]
        facets[name] = [values[v] for v in used]
    clusters = []
    for c, cluster in enumerate(payload["clusters"]):
        members = [t for t, label in zip(shown["title"], shown["cluster"]) if label == c]
        title = cluster["title"] if cluster["title"] in members else (members[0] if members else "")
        clusters.append({**cluster, "size": len(members), "title": title,
                         "label": ", ".join(cluster["terms"]) or title})
    return {**payload, "documents": len(keep), "clusters": clusters, "facets": facets, "points": shown}


def readers_by_document(index) -> dict[str, list]:
    """{id: readers} of the documents of the index that have readers (the others every viewer sees)."""
    rows = index.store.db.execute("select id, json_extract(metadata, '$.readers') from documents "
                                  "where json_extract(metadata, '$.readers') is not null").fetchall()
    out = {}
    for doc_id, raw in rows:
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[doc_id] = value if isinstance(value, list) else [value]
    return out
