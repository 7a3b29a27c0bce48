"""Filtered dense search at a million chunk vectors: latency and recall@10 per selectivity.

    python benchmarks/scale.py --prepare            # SciFact chunk and claim vectors (cached; shared with scale.py)
    python benchmarks/filtered.py --out benchmarks/filtered-results.json
    python benchmarks/filtered.py --out benchmarks/filtered-results.json --table

The index (built once under --work, default /tmp/searcher-filtered, and reused): 250,000
documents of 4 chunks each, 1,000,000 chunk vectors of 384 dimensions, index type auto (at
this size: IVF4096,Flat, nprobe 64), tantivy keywords, made through `Index.create` and
`Index.add_documents` as any caller would (one commit). Encoding a million chunks with the
model is out of reach on this CPU, so the encoder is a stand-in that hands out prepared
vectors in the order the writer asks for them (the chunker's tokenizer and chunking are the
real ones; chunk_tokens 8 so that a document of 24 one-token words is exactly 4 chunks):

- vectors: derived from the real ones, as benchmarks/scale.py does. Every SciFact chunk
  encoded with all-MiniLM-L6-v2 (9,824 vectors, cached by `scale.py --prepare`); each
  synthetic document picks one real chunk, and each of its 4 chunks is that vector
  interpolated towards one of its 10 nearest real neighbours (a random fraction up to a
  half) plus isotropic noise, renormalised. A document's chunks are therefore related, and
  the collection keeps the model's geometry (see scale.py for why not Gaussian clusters).
- metadata: `bucket` an integer drawn uniformly from 0..999 (independent of the vectors),
  so `{"bucket": {"$lt": B}}` keeps B/1000 of the documents: 0.1%, 1%, 10%, 50%; `type`
  drawn from pdf/docx/txt/html/md (10/20/30/20/20%), also independent; `folder`
  `/corpus/gA/sB` from the real chunk the document derives from (A, B = its position in
  SciFact's order in tenths and hundredths), so a folder filter is correlated with the
  vectors: its documents come from a few hundred neighbouring SciFact abstracts.
- queries: the SciFact claims encoded by the same model (real queries, none in the index),
  the first --queries of them.

Measured per filter, k=10, mode dense, one query at a time on the calling thread:
- cold: `Index.search` with a filter the index has not seen (its cache of allowed chunk ids
  is emptied before each query): the allowed set is computed in memory over the
  generation's filter columns (searcher/search/filter_columns.py), which are built once a
  generation (timed separately) and a field's column at the first filter naming it ("first
  use", the first cold query);
- warm: the same filter again (the allowed set cached, as a results page, its next page or a
  facet click ask for it);
- vector part alone: the backend's `search(query, 50, allowed)` that dense retrieval makes
  first (fetch 50 for k=10), and the SQL alone (`chunk_ids_where`);
- recall@10: the documents of the warm search against an exhaustive filtered search (numpy
  over every allowed chunk vector, a document scored by its best chunk). The allowed set is
  computed twice, in SQL by the engine and in numpy from the metadata drawn here; they must
  agree.
Query encoding is left out: the index's query encoder is replaced by a lookup of the
prepared claim vector (the model costs the same with or without a filter: benchmarks/README.md).
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
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from scale import DATASET, prepare, real_neighbours, toward_neighbours  # noqa: E402

WORK = Path(tempfile.gettempdir()) / "searcher-filtered"
CHUNKS_PER_DOC = 4
WORDS_PER_CHUNK = 6  # chunk_tokens 8 = 6 words + [CLS] and [SEP]
TYPES = ("pdf", "docx", "txt", "html", "md")
TYPE_SHARES = (0.1, 0.2, 0.3, 0.2, 0.2)
WORDS = ("apple river stone cloud green table music light paper night water house world field glass "
         "bread").split()
FILTERS = [  # (name, filter): the selectivities of the issue, then realistic ones
    ("bucket < 1 (0.1%)", {"bucket": {"$lt": 1}}),
    ("bucket < 10 (1%)", {"bucket": {"$lt": 10}}),
    ("bucket < 100 (10%)", {"bucket": {"$lt": 100}}),
    ("bucket < 500 (50%)", {"bucket": {"$lt": 500}}),
    ("type = pdf (10%)", {"type": "pdf"}),
    ("folder under /corpus/g3 (10%, topical)", {"folder": {"$under": "/corpus/g3"}}),
    ("folder under /corpus/g3/s35 (1%, topical)", {"folder": {"$under": "/corpus/g3/s35"}}),
]


def synthesize(base: np.ndarray, docs: int, seed: int = 0):
    """(vectors (docs*4, d), metadata arrays) for `docs` documents of CHUNKS_PER_DOC related chunks."""
    rng = np.random.default_rng(seed)
    d = base.shape[1]
    neighbours = real_neighbours(base)
    src = rng.integers(0, len(base), docs)
    n = docs * CHUNKS_PER_DOC
    out = np.empty((n, d), dtype=np.float32)
    step = 200_000
    for start in range(0, n, step):
        size = min(step, n - start)
        out[start : start + size] = toward_neighbours(base, neighbours, src[np.arange(start, start + size) // CHUNKS_PER_DOC], rng)
    meta = {
        "bucket": rng.integers(0, 1000, docs),
        "type": rng.choice(len(TYPES), docs, p=TYPE_SHARES),
        "tenth": src * 10 // len(base),
        "hundredth": src * 100 // len(base),
    }
    return out, meta


def allowed_docs(meta: dict, where: dict) -> np.ndarray:
    """The document numbers a FILTERS entry keeps, computed in numpy (the reference for the SQL)."""
    if "bucket" in where:
        return np.flatnonzero(meta["bucket"] < where["bucket"]["$lt"])
    if "type" in where:
        return np.flatnonzero(meta["type"] == TYPES.index(where["type"]))
    parts = where["folder"]["$under"].split("/")[2:]  # ["g3"] or ["g3", "s35"]
    keep = meta["tenth"] == int(parts[0][1:])
    if len(parts) > 1:
        keep &= meta["hundredth"] == int(parts[1][1:])
    return np.flatnonzero(keep)


class PreparedEncoder:
    """Builds on the tests' FakeEncoder (the real tokenizer, no model) but hands out the
    prepared vectors in the order the writer asks for them."""

    def __new__(cls, vectors: np.ndarray):
        from fake_encoder import FakeEncoder

        class Prepared(FakeEncoder):
            def __init__(self, vectors):
                super().__init__(vectors.shape[1])
                self.vectors, self.next = vectors, 0

            def encode_ids(self, input_ids, batch_size=None, progress=None):
                out = self.vectors[self.next : self.next + len(input_ids)]
                if len(out) != len(input_ids):
                    raise RuntimeError("more chunks than prepared vectors")
                self.next += len(input_ids)
                if progress:
                    progress(len(input_ids))
                return out

        return Prepared(vectors)


class QueryLookup:
    """Stands in for the index's query encoder: "q<i>" is the i-th prepared query vector."""

    def __init__(self, queries: np.ndarray):
        self.queries = queries

    def encode(self, text: str) -> np.ndarray:
        return self.queries[int(text[1:])][None, :]


def documents(meta: dict):
    for j in range(len(meta["bucket"])):
        words = [WORDS[(j + i * 7) % len(WORDS)] for i in range(CHUNKS_PER_DOC * WORDS_PER_CHUNK)]
        yield {"id": f"d{j}", "title": "", "text": " ".join(words),
               "metadata": {"bucket": int(meta["bucket"][j]), "type": TYPES[meta["type"][j]],
                            "folder": f"/corpus/g{meta['tenth'][j]}/s{meta['hundredth'][j]}"}}


def build(work: Path, n: int, base: np.ndarray) -> dict:
    """The cached index (and its vectors and metadata), built on first use."""
    from searcher import Index

    docs = n // CHUNKS_PER_DOC
    done = work / "built.json"
    if done.exists() and json.loads(done.read_text())["n"] == n:
        info = json.loads(done.read_text())
        meta = dict(np.load(work / "meta.npz"))
        return {"info": info, "vectors": np.load(work / "vectors.npy", mmap_mode="r"), "meta": meta}
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    vectors, meta = synthesize(base, docs)
    np.save(work / "vectors.npy", vectors)
    np.savez(work / "meta.npz", **meta)
    encoder = PreparedEncoder(vectors)
    with Index.create(work / "index", encoder=encoder, index_type="auto", chunk_tokens=8, overlap=0) as index:
        index.commit_chunks = n  # one commit: the auto plan for N vectors, trained once
        report = index.add_documents(documents(meta))
        assert encoder.next == n, f"{encoder.next} chunks encoded, not {n}"
        info = {"n": n, "documents": docs, "build_s": round(time.perf_counter() - started, 1),
                "factory": index.vectors.describe(), "search_params": index.vectors.search_params(),
                "chunks": report.chunks}
    done.write_text(json.dumps(info))
    print(f"built {info}", file=sys.stderr, flush=True)
    return {"info": info, "vectors": np.load(work / "vectors.npy", mmap_mode="r"), "meta": meta}


def exhaustive(vectors: np.ndarray, docs: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Top-k document numbers per query among `docs`, each document scored by its best chunk."""
    d = vectors.shape[1]
    best = np.empty((len(queries), 0), np.float32), np.empty((len(queries), 0), np.int64)
    for b in range(0, len(docs), 25_000):
        part = docs[b : b + 25_000]
        rows = (part[:, None] * CHUNKS_PER_DOC + np.arange(CHUNKS_PER_DOC)).ravel()
        scores = (np.asarray(vectors[rows]).reshape(-1, d) @ queries.T).reshape(len(part), CHUNKS_PER_DOC, -1).max(1).T
        scores = np.concatenate([best[0], scores], 1)
        ids = np.concatenate([best[1], np.broadcast_to(part, (len(queries), len(part)))], 1)
        top = np.argsort(-scores, 1)[:, :k]
        best = np.take_along_axis(scores, top, 1), np.take_along_axis(ids, top, 1)
    return best[1]


def ms(values) -> dict:
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2)}


def measure(index, name: str, where: dict, meta: dict, vectors: np.ndarray, queries: np.ndarray,
            cold_n: int) -> dict:
    from searcher.search.filters import compile_where

    docs = allowed_docs(meta, where)
    store = index.store
    compiled = compile_where(where)
    sql = []
    for _ in range(3):
        t = time.perf_counter()
        allowed = np.array(store.chunk_ids_where(*compiled), dtype=np.int64)
        sql.append((time.perf_counter() - t) * 1000)
    expected = np.sort((docs[:, None] * CHUNKS_PER_DOC + np.arange(CHUNKS_PER_DOC) + 1).ravel())  # chunk ids from 1
    assert np.array_equal(allowed, expected), f"{name}: SQL allows {len(allowed)} chunks, numpy {len(expected)}"

    cold = []
    first = None
    for i in range(cold_n):
        index._filter_cache.clear()  # a filter this index has not seen
        t = time.perf_counter()
        index.search(f"q{i}", k=10, mode="dense", where=where)
        cold.append((time.perf_counter() - t) * 1000)
        first = cold[0] if first is None else first
    index.search("q0", k=10, mode="dense", where=where)  # cached from here on
    warm, found = [], []
    for i in range(len(queries)):
        t = time.perf_counter()
        hits = index.search(f"q{i}", k=10, mode="dense", where=where)
        warm.append((time.perf_counter() - t) * 1000)
        found.append([int(h.doc_id[1:]) for h in hits])
    cached = next(iter(index._filter_cache.values()))
    vector = []
    for i in range(len(queries)):
        t = time.perf_counter()
        index.vectors.search(queries[i : i + 1], 50, cached)
        vector.append((time.perf_counter() - t) * 1000)
    truth = exhaustive(vectors, docs, queries)
    recall = float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth)]))
    return {"filter": name, "where": where, "documents": int(len(docs)), "chunks": int(len(allowed)),
            "share": round(len(docs) / len(meta["bucket"]), 4), "recall_at_10": round(recall, 4),
            "first_ms": round(first, 1), "cold_ms": ms(cold), "warm_ms": ms(warm), "vector_ms": ms(vector), "sql_ms": ms(sql),
            "queries": len(queries), "cold_queries": cold_n}


def print_table(results: dict) -> None:
    info = results["index"]
    print(f"{info['n']:,} chunk vectors in {info['documents']:,} documents, `{info['factory']}` "
          f"{info['search_params']}; {results['machine']}; {results['date']}\n")
    if "columns_ms" in results:
        print(f"The generation's filter columns (chunk ids and their documents) built in {results['columns_ms']:.0f} ms.\n")
    print("| filter | documents kept | chunks allowed | recall@10 | first use ms | cold p50 (p95) ms | "
          "warm p50 (p95) ms | vector search p50 (p95) ms | SQL p50 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results["rows"]:
        print(f"| {r['filter']} | {r['documents']:,} | {r['chunks']:,} | {r['recall_at_10']:.3f} | "
              f"{r.get('first_ms', float('nan')):.1f} | {r['cold_ms']['p50']:.1f} ({r['cold_ms']['p95']:.1f}) | {r['warm_ms']['p50']:.2f} ({r['warm_ms']['p95']:.2f}) | "
              f"{r['vector_ms']['p50']:.2f} ({r['vector_ms']['p95']:.2f}) | {r['sql_ms']['p50']:.1f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="chunk vectors (4 a document)")
    ap.add_argument("--work", type=Path, default=WORK, help="where the index is built once and kept")
    ap.add_argument("--dataset", type=Path, default=DATASET)
    ap.add_argument("--queries", type=int, default=200, help="warm queries a filter (recall is over these)")
    ap.add_argument("--cold", type=int, default=20, help="cold queries a filter")
    ap.add_argument("--filters", help="comma-separated numbers of FILTERS to run, replacing their rows in --out (default: all)")
    ap.add_argument("--out", type=Path, help="JSON results file")
    ap.add_argument("--table", action="store_true", help="print the results in --out as a Markdown table")
    args = ap.parse_args(argv)
    if args.table:
        print_table(json.loads(args.out.read_text()))
        return 0
    import faiss

    from searcher import Index

    base, claims = prepare(args.dataset)
    built = build(args.work, args.n, base)
    queries = np.ascontiguousarray(claims[: args.queries], dtype=np.float32)
    index = Index.open(args.work / "index", encoder=PreparedEncoder(np.zeros((0, base.shape[1]), np.float32)))
    index.queries = QueryLookup(queries)
    assert len(index.vectors) == args.n
    picks = range(len(FILTERS)) if not args.filters else [int(x) for x in args.filters.split(",")]
    results = {"index": {**built["info"], "factory": index.vectors.describe(),
                         "search_params": index.vectors.search_params()},
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, faiss {faiss.__version__}, "
                          f"{faiss.omp_get_max_threads()} OpenMP threads",
               "date": str(date.today()), "rows": []}
    from searcher.search.filter_columns import FilterColumns

    started = time.perf_counter()
    index._columns = FilterColumns(index.store, index.generation)  # what the first filtered search builds
    results["columns_ms"] = round((time.perf_counter() - started) * 1000, 1)
    previous = json.loads(args.out.read_text())["rows"] if args.filters and args.out and args.out.exists() else []
    for no in picks:  # with --filters, the other rows of --out are kept
        name, where = FILTERS[no]
        row = measure(index, name, where, built["meta"], built["vectors"], queries, args.cold)
        print(json.dumps(row), flush=True)
        previous = [r if r["filter"] != name else row for r in previous]
        results["rows"] = previous if any(r is row for r in previous) else [*previous, row]
        previous = results["rows"]
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))
    index.close()
    if args.out:
        print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
