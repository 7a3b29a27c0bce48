"""Map layout time (searcher/quality/corpus_map.py) for 10k and 100k documents, and how faithful each
layout is.

    python benchmarks/map_layout.py                         # synthetic 384-d vectors, 10k and 100k
    python benchmarks/map_layout.py --sizes 10000 --methods pca
    python benchmarks/map_layout.py --quality /tmp/map-dbpedia --sizes 1000,2000,5000

Timing (synthetic): documents are unit vectors scattered around --topics random topic
centres in 384 dimensions, three chunk vectors a document (what `document_vectors` averages).
For each size it times the steps of a map: averaging chunk vectors into document vectors,
the k-means clusters, the PCA layout, and the whole JSON-ready payload (`build_map`:
layout, clusters, titles and facets) with its size, by PCA and by UMAP (when umap-learn is
installed). UMAP's first fit in a process also compiles numba kernels; that one-off cost
is timed separately, on a warm-up fit before the others.

Quality (--quality INDEX): real document vectors from an index, subsampled to each size,
and the trustworthiness of each layout (scikit-learn: 1.0 when every point's 10 nearest
neighbours on the map are among its nearest in the 384-d space, lower as the map invents
neighbours).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searcher.quality.corpus_map import (build_map, clusters, fit_unit_square, mean_vectors, pca,  # noqa: E402
                                 umap_available, umap_layout)

DIM = 384
CHUNKS_PER_DOC = 3
WARM_UP = 5_000


def synthetic(n: int, topics: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(chunk vectors, document of each chunk): CHUNKS_PER_DOC unit vectors a document, each
    near its document's point, which is near one of `topics` centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, DIM)).astype(np.float32)
    docs = centres[rng.integers(0, topics, n)] + 0.9 * rng.standard_normal((n, DIM)).astype(np.float32)
    owner = np.repeat(np.arange(n), CHUNKS_PER_DOC)
    chunks = docs[owner] + 0.5 * rng.standard_normal((n * CHUNKS_PER_DOC, DIM)).astype(np.float32)
    chunks /= np.linalg.norm(chunks, axis=1, keepdims=True)
    return chunks, owner


def timed(fn, *args):
    started = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - started


def time_sizes(sizes: list[int], methods: list[str], topics: int) -> list[dict]:
    rows = []
    if "umap" in methods and umap_available():
        # 5,000 points: above 4,096 umap-learn finds neighbours by NN-descent, whose kernels
        # compile on first use too.
        warm = synthetic(WARM_UP, 10, seed=9)
        _, compile_s = timed(umap_layout, mean_vectors(warm[1], warm[0], WARM_UP)[0])
        print(f"umap warm-up (numba compilation, {WARM_UP} points): {compile_s:.1f} s", flush=True)
        rows.append({"step": f"umap warm-up: first fit in a process ({WARM_UP} points)", "n": WARM_UP,
                     "seconds": round(compile_s, 2)})
    for n in sizes:
        chunks, owner = synthetic(n, topics)
        vectors, s = timed(lambda: mean_vectors(owner, chunks, n)[0])
        rows.append({"step": "document vectors (mean of 3 chunks)", "n": n, "seconds": round(s, 3)})
        print(f"n={n}: document vectors {s:.2f} s", flush=True)
        _, s = timed(clusters, vectors)
        rows.append({"step": "clusters (faiss k-means)", "n": n, "seconds": round(s, 3)})
        print(f"n={n}: clusters {s:.2f} s", flush=True)
        documents = [(f"doc-{i}", f"Document {i}", {"type": "txt", "folder": f"/data/{i % 40}"}) for i in range(n)]
        for method in methods:
            if method == "umap" and not umap_available():
                print("umap-learn is not installed: skipping umap", flush=True)
                continue
            if method == "pca":  # UMAP's layout is nearly all of its whole map: not run twice
                _, s = timed(lambda: fit_unit_square(pca(vectors)))
                rows.append({"step": "layout (pca)", "n": n, "seconds": round(s, 3)})
                print(f"n={n}: layout pca {s:.2f} s", flush=True)
            payload, s = timed(build_map, 1, documents, vectors, method)
            size = len(json.dumps(payload, separators=(",", ":")))
            rows.append({"step": f"whole map ({method}), JSON {size / 1e6:.1f} MB", "n": n, "seconds": round(s, 3)})
            print(f"n={n}: whole map {method} {s:.2f} s, {size / 1e6:.1f} MB", flush=True)
    return rows


def quality(index_path: str, sizes: list[int], methods: list[str]) -> list[dict]:
    from sklearn.manifold import trustworthiness

    from searcher import Index
    from searcher.quality.corpus_map import document_vectors

    with Index.open(index_path, load_model=False) as index:
        vectors = document_vectors(index)["vectors"]
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        pick = rng.choice(len(vectors), min(n, len(vectors)), replace=False)
        x = vectors[np.sort(pick)]
        for method in methods:
            if method == "umap" and not umap_available():
                continue
            coords, s = timed(umap_layout if method == "umap" else pca, x)
            t = trustworthiness(x, coords, n_neighbors=10)
            rows.append({"n": len(x), "method": method, "trustworthiness": round(float(t), 3), "seconds": round(s, 2)})
            print(f"n={len(x)} {method}: trustworthiness {t:.3f} ({s:.1f} s)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--methods", default="pca,umap")
    parser.add_argument("--topics", type=int, default=50)
    parser.add_argument("--quality", metavar="INDEX", help="measure trustworthiness on this index's vectors instead")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    rows = quality(args.quality, sizes, methods) if args.quality else time_sizes(sizes, methods, args.topics)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
