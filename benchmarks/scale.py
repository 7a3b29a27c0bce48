"""Index types at scale: build time, memory, latency and recall@10 of each type on N vectors.

    python benchmarks/scale.py --prepare                      # encode SciFact once (cached)
    python benchmarks/scale.py --n 1000000 --types flat,ivf,ivfpq,hnsw --out /tmp/scale.json
    python benchmarks/scale.py --grow 600000    # an auto index grown commit by commit: its switches

Vectors: every SciFact chunk (title prefixed, 256-token windows, as `searcher index` makes
them) encoded with all-MiniLM-L6-v2 and cached under /tmp, then grown to N by
interpolating each real chunk vector towards one of its 10 nearest real neighbours (a
random fraction up to a half) plus isotropic noise, renormalised. The vectors therefore
stay on the model's own manifold (its anisotropy, its principal directions, the cosine
ranges of real neighbours), filling the space between related chunks the way a larger
collection of similar documents would, rather than stacking N/10k near-copies of each
chunk (which makes every index look perfect) or drawing uniform random vectors (which has
no neighbour structure at all). Queries are the SciFact claims (1,109) encoded by the same
model: real queries, none of them in the index. Recall@10 is measured against exact
(Flat) inner-product search over the same N vectors; the exact top 10 is cached.

Each type is built through `searcher.storage.vectors.build_index` (the code `searcher index` uses:
the same factory strings, training sample, search parameters), and reported with:
build time (train + add), bytes a vector (size of the serialised index / N), single-query
latency (p50 and p95 over the queries, one at a time) and batched latency (batches of
100, time per query), recall@10. `--types` runs several types in one process one after
the other; run one type per process to keep each hold of the machine short, merging into
the same `--out` file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATASET = ROOT.parent / "shared" / "datasets" / "scifact"
CACHE = Path(tempfile.gettempdir()) / "searcher-scale"
THREADS = os.cpu_count() or 1


def prepare(dataset: Path) -> tuple[np.ndarray, np.ndarray]:
    """(chunk vectors, query vectors) of SciFact, encoded once and cached as .npy."""
    CACHE.mkdir(exist_ok=True)
    base_file, query_file = CACHE / "scifact_chunks.npy", CACHE / "scifact_queries.npy"
    if base_file.exists() and query_file.exists():
        return np.load(base_file), np.load(query_file)
    from searcher.encoding.chunker import Chunker
    from searcher.index.facade import get_encoder, title_token_ids

    encoder = get_encoder(None, "cpu")
    chunker = Chunker(encoder.tokenizer, encoder.max_tokens, encoder.max_tokens // 10)
    inputs = []
    with open(dataset / "corpus.jsonl") as fh:
        for line in fh:
            doc = json.loads(line)
            title = title_token_ids(encoder.tokenizer, doc.get("title") or "", chunker.budget)
            for chunk in chunker.split(doc["text"], reserved=len(title)):
                inputs.append(encoder.with_special_tokens(title + chunk.ids))
    started = time.perf_counter()
    base = encoder.encode_ids(inputs, batch_size=32)
    print(f"encoded {len(base)} chunks in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    with open(dataset / "queries.jsonl") as fh:
        queries = [json.loads(line)["text"] for line in fh]
    qv = encoder.encode(queries)
    np.save(base_file, base)
    np.save(query_file, qv)
    return base, qv


def synthesize(base: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n unit vectors: the real ones first, then interpolations towards real neighbours plus noise."""
    rng = np.random.default_rng(seed)
    d = base.shape[1]
    neighbours = real_neighbours(base)
    out = np.empty((n, d), dtype=np.float32)
    m = min(n, len(base))
    out[:m] = base[:m]
    step = 200_000
    for start in range(m, n, step):
        size = min(step, n - start)
        out[start : start + size] = toward_neighbours(base, neighbours, rng.integers(0, len(base), size), rng)
    return out


def real_neighbours(base: np.ndarray) -> np.ndarray:
    """Each real vector's 10 nearest real vectors (exact inner product), after itself in column 0."""
    import faiss

    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    return flat.search(base, 11)[1]


def toward_neighbours(base: np.ndarray, neighbours: np.ndarray, src: np.ndarray, rng) -> np.ndarray:
    """For each of the real vectors `base[src]`, a unit vector moved up to half-way towards one
    of its 10 nearest real neighbours (`neighbours`, column 0 itself), plus a little noise."""
    size, d = len(src), base.shape[1]
    dst = neighbours[src, rng.integers(1, 11, size)]
    t = rng.uniform(0.0, 0.5, size).astype(np.float32)[:, None]
    v = base[src] * (1 - t) + base[dst] * t
    v += rng.standard_normal((size, d), dtype=np.float32) * np.float32(0.15 / np.sqrt(d))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def exact_top(data: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k ids (Flat inner product), cached per N."""
    import faiss

    file = CACHE / f"truth_{len(data)}_{len(queries)}.npy"
    if file.exists():
        return np.load(file)
    flat = faiss.IndexFlatIP(data.shape[1])
    flat.add(data)
    _, ids = flat.search(queries, k)
    np.save(file, ids)
    return ids


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k]) & set(t)) / k for f, t in zip(found, truth)]))


def measure(index_type: str, data: np.ndarray, ids: np.ndarray, queries: np.ndarray, truth: np.ndarray,
            sweep: bool) -> dict:
    from searcher.storage.vectors import FaissVectorIndex, build_index

    started = time.perf_counter()
    index = build_index(index_type, ids, data)
    build_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "v.faiss"
        index.save(file)
        size = file.stat().st_size
        reloaded = FaissVectorIndex.load(file)
        assert len(reloaded) == len(data)
    row = {"type": index_type, "factory": index.describe(), "n": len(data), "build_s": round(build_s, 1),
           "bytes_per_vector": round(size / len(data), 1), "search_params": index.search_params()}

    if index.kind == "flat":  # exact: recall is 1 by definition, and each query scans all N
        queries, truth = queries[:200], truth[:200]

    def run(params=None):
        if params:
            index.set_search_params(**params)
        index.search(queries[:20], 10)  # warm up
        single = []
        found = np.empty((len(queries), 10), dtype=np.int64)
        for i in range(len(queries)):
            t = time.perf_counter()
            _, found[i] = index.search(queries[i : i + 1], 10)
            single.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        for b in range(0, len(queries), 100):
            index.search(queries[b : b + 100], 10)
        batch_ms = (time.perf_counter() - t) * 1000 / len(queries)
        return {"recall_at_10": round(recall_at(found - 1, truth), 4),  # ids are row + 1
                "single_ms_p50": round(float(np.percentile(single, 50)), 3),
                "single_ms_p95": round(float(np.percentile(single, 95)), 3),
                "batch100_ms_per_query": round(batch_ms, 3), "search_params": index.search_params()}

    row.update(run())
    if sweep:
        values = {"ivf": [("nprobe", v) for v in (16, 32, 64, 128, 256)],
                  "ivfpq": [("nprobe", v) for v in (16, 32, 64, 128, 256)],
                  "hnsw": [("ef_search", v) for v in (64, 128, 256, 512, 1024)]}.get(index.kind, [])
        default = index.search_params()
        row["sweep"] = [run({name: v}) for name, v in values]
        index.set_search_params(**default)
    return row


def grow(base: np.ndarray, queries: np.ndarray, n: int) -> dict:
    """Grow an auto index commit by commit (a tenth of the index each, as `searcher index`) and time its switches."""
    import faiss

    from searcher.storage.vectors import FaissVectorIndex, plan

    data = synthesize(base, n, seed=1)[np.random.default_rng(0).permutation(n)]  # arrival order mixed
    ids = np.arange(1, n + 1, dtype=np.int64)
    flat = faiss.IndexFlatIP(data.shape[1])
    flat.add(data)
    _, truth = flat.search(queries, 10)
    del flat
    index = FaissVectorIndex.create(data.shape[1], plan("auto", 0, data.shape[1]))
    done, switches, started = 0, [], time.perf_counter()
    while done < n:
        step = min(n - done, max(4096, done // 10))
        index.add(ids[done : done + step], data[done : done + step])
        done += step
        before, t = index.describe(), time.perf_counter()
        index = index.replan("auto")
        if index.describe() != before:
            switches.append({"at": done, "from": before, "to": index.describe(), "s": round(time.perf_counter() - t, 1)})
            print(json.dumps(switches[-1]), flush=True)
    _, found = index.search(queries, 10)
    return {"n": n, "seconds": round(time.perf_counter() - started, 1), "switches": switches,
            "factory": index.describe(), "search_params": index.search_params(),
            "recall_at_10": round(recall_at(found - 1, truth), 4)}


def print_table(results: dict) -> None:
    print(f"machine: {results['machine']}\n")
    print("| type | FAISS index | N | build s | bytes/vector | search params | recall@10 | ms/query single p50 (p95) | ms/query in batches of 100 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, row in results["rows"].items():
        if row["type"] == "auto":
            print(f"| auto | picks {row['picks']} | {row['n']:,} | | | | | | |")
            continue
        params = ", ".join(f"{k} {v}" for k, v in row["search_params"].items()) or "exact"
        print(f"| {row['type']} | `{row['factory']}` | {row['n']:,} | {row['build_s']} | {row['bytes_per_vector']:.0f} | "
              f"{params} | {row['recall_at_10']:.4f} | {row['single_ms_p50']:.2f} ({row['single_ms_p95']:.2f}) | "
              f"{row['batch100_ms_per_query']:.2f} |")
    sweeps = [(row["type"], row["n"], s) for row in results["rows"].values() for s in row.get("sweep", [])]
    if sweeps:
        print("\n| type | N | search params | recall@10 | ms/query single p50 | ms/query in batches of 100 |")
        print("| --- | --- | --- | --- | --- | --- |")
        for kind, n, s in sweeps:
            params = ", ".join(f"{k} {v}" for k, v in s["search_params"].items())
            print(f"| {kind} | {n:,} | {params} | {s['recall_at_10']:.4f} | {s['single_ms_p50']:.2f} | {s['batch100_ms_per_query']:.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--types", default="auto,flat,ivf,ivfpq,hnsw")
    ap.add_argument("--dataset", type=Path, default=DATASET)
    ap.add_argument("--threads", type=int, default=THREADS, help="FAISS OpenMP threads (default: all cores)")
    ap.add_argument("--sweep", action="store_true", help="also measure other nprobe / efSearch values")
    ap.add_argument("--prepare", action="store_true", help="only encode and cache the SciFact vectors")
    ap.add_argument("--out", type=Path, help="JSON file to merge the results into")
    ap.add_argument("--table", action="store_true", help="print the results in --out as a Markdown table")
    ap.add_argument("--grow", type=int, metavar="N", help="instead: grow an auto index to N vectors in commits and time its switches")
    args = ap.parse_args(argv)
    if args.table:
        print_table(json.loads(args.out.read_text()))
        return 0

    import faiss

    faiss.omp_set_num_threads(args.threads)
    base, queries = prepare(args.dataset)
    print(f"{len(base)} SciFact chunk vectors, {len(queries)} queries", file=sys.stderr)
    if args.prepare:
        return 0
    if args.grow:
        result = grow(base, queries, args.grow)
        print(json.dumps(result), flush=True)
        if args.out:
            results = json.loads(args.out.read_text()) if args.out.exists() else {}
            results.setdefault("growth", {})[str(args.grow)] = result
            args.out.write_text(json.dumps(results, indent=2))
        return 0
    started = time.perf_counter()
    data = synthesize(base, args.n)
    ids = np.arange(1, args.n + 1, dtype=np.int64)  # like chunk ids: 1, 2, ...
    truth = exact_top(data, queries)
    print(f"{args.n} vectors and exact top 10 in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    results = json.loads(args.out.read_text()) if args.out and args.out.exists() else {}
    results.setdefault("rows", {})
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, faiss {faiss.__version__}"
    from searcher.storage.vectors import FaissVectorIndex, plan

    for index_type in args.types.split(","):
        if index_type == "auto":  # the type auto picks for N, measured under its own name
            picked = FaissVectorIndex.create(data.shape[1], plan("auto", args.n, data.shape[1])).kind
            results["rows"][f"auto@{args.n}"] = {"type": "auto", "picks": picked, "n": args.n}
            print(f"auto picks {picked} at {args.n}", flush=True)
            if f"{picked}@{args.n}" in results["rows"] or picked in args.types.split(","):
                continue
            index_type = picked
        row = measure(index_type, data, ids, queries, truth, args.sweep)
        row.update(threads=args.threads, date=str(date.today()))
        results["rows"][f"{index_type}@{args.n}"] = row
        print(json.dumps(row), flush=True)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
