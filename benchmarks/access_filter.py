"""What per-document access costs a search: p50 and p95 latency with a viewer's filter
(searcher/search/access.py) against the same search without one, with 1% and 50% of the
documents visible, at a million chunks.

    python benchmarks/access_filter.py                       # builds the index once (kept in --work), measures
    python benchmarks/access_filter.py --n 200000 --queries 100

The index (built once under --work, default /tmp/searcher-access, and reused): --n chunks
(1,000,000 by default) in documents of 4 chunks each, index type auto (IVF above 50,000
chunks), tantivy keywords, made through `Index.create` and `Index.add_documents` as any caller
would (one commit). Encoding a million chunks with the model is out of reach on this CPU, so
the encoder is a stand-in that hands out synthetic random unit vectors (Gaussian, normalised;
the chunker's tokenizer and chunking are the real ones, chunk_tokens 8 so that a document of
24 one-token words is exactly 4 chunks). Random vectors have no neighbourhoods, so IVF's
recall is poor on them: this measures latency only. Texts are 24 words drawn uniformly from
5,000 words of the tokenizer's vocabulary, so a two-word keyword query matches about 0.2% of the chunks.

Readers: every document has one reader, `group:bNN`, NN uniform in 0..99. The viewers:
- none: no access filter (what the command line and an admin key do);
- 1%: a viewer in group b00;
- 50%: a viewer in groups b00..b49.

Measured per viewer and mode (dense, hybrid), k=10, one query at a time on this thread,
query encoding left out (a lookup of a prepared random query vector):
- first use: the first search of a viewer in a fresh process's generation (the `readers`
  filter column read from SQLite, the allowed chunk ids computed);
- cold: the allowed set computed again for every query (the filter cache emptied; the
  column kept), what a server pays for a viewer the cache has dropped;
- warm: the allowed set cached (a viewer's next search in the same generation).
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
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

WORK = Path(tempfile.gettempdir()) / "searcher-access"
CHUNKS_PER_DOC = 4
WORDS_PER_CHUNK = 6  # chunk_tokens 8 = 6 words + [CLS] and [SEP]
VOCABULARY = 5_000
GROUPS = 100
DIMENSION = 384


_WORDS: list[str] = []


def word(i: int) -> str:
    """The i-th of VOCABULARY words that the model's tokenizer keeps whole (one token each, so
    a document is exactly 4 chunks), and that the keyword engine does not drop as stop words."""
    if not _WORDS:
        from fake_encoder import FakeEncoder

        from searcher.storage.keywords.base import STOP_WORDS

        vocab = FakeEncoder(DIMENSION).tokenizer.get_vocab()
        whole = sorted((i, w) for w, i in vocab.items() if w.isascii() and w.isalpha() and len(w) >= 4
                       and w not in STOP_WORDS)
        _WORDS.extend(w for _, w in whole[:VOCABULARY])
        assert len(_WORDS) == VOCABULARY
    return _WORDS[i]


def unit(rng, n: int, d: int = DIMENSION) -> np.ndarray:
    v = rng.standard_normal((n, d), dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


class RandomEncoder:
    """The tests' FakeEncoder (the real tokenizer, no model) handing out random unit vectors."""

    def __new__(cls, seed: int = 0):
        from fake_encoder import FakeEncoder

        class Random(FakeEncoder):
            def __init__(self):
                super().__init__(DIMENSION)
                self.rng, self.count = np.random.default_rng(seed), 0

            def encode_ids(self, input_ids, batch_size=None, progress=None):
                self.count += len(input_ids)
                if progress:
                    progress(len(input_ids))
                return unit(self.rng, len(input_ids))

        return Random()


class QueryLookup:
    """Stands in for the index's query encoder: any text gets a random unit vector, the same
    one for the same text."""

    def encode(self, text: str) -> np.ndarray:
        seed = int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little")
        return unit(np.random.default_rng(seed), 1)


def documents(docs: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    for start in range(0, docs, 10_000):
        size = min(10_000, docs - start)
        words = rng.integers(0, VOCABULARY, (size, CHUNKS_PER_DOC * WORDS_PER_CHUNK))
        groups = rng.integers(0, GROUPS, size)
        for j in range(size):
            yield {"id": f"d{start + j}", "title": "", "text": " ".join(word(w) for w in words[j]),
                   "readers": [f"group:b{groups[j]:02d}"]}


def build(work: Path, n: int) -> dict:
    from searcher import Index

    done = work / "built.json"
    if done.exists() and json.loads(done.read_text())["n"] == n:
        return json.loads(done.read_text())
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    encoder = RandomEncoder()
    with Index.create(work / "index", encoder=encoder, index_type="auto", chunk_tokens=8, overlap=0) as index:
        index.commit_chunks = n  # one commit: the auto plan for n vectors, trained once
        report = index.add_documents(documents(n // CHUNKS_PER_DOC))
        info = {"n": n, "documents": n // CHUNKS_PER_DOC, "chunks": report.chunks,
                "build_s": round(time.perf_counter() - started, 1)}
    done.write_text(json.dumps(info))
    print(f"built {info}", file=sys.stderr, flush=True)
    return info


def ms(values) -> dict:
    return {"p50": round(float(np.percentile(values, 50)), 2), "p95": round(float(np.percentile(values, 95)), 2)}


def viewers():
    from searcher.search.access import Viewer

    return [("none (no access filter)", None),
            ("1% visible (group b00)", Viewer("u1", ("b00",))),
            ("50% visible (groups b00..b49)", Viewer("u50", tuple(f"b{g:02d}" for g in range(50))))]


def measure(index, name: str, viewer, mode: str, queries: list[str], cold_n: int) -> dict:
    from searcher.search.access import scoped

    live = index.live
    visible = None
    if viewer is not None:
        from searcher.search.filters import compile_where

        visible = len(index.store.chunk_ids_where(*compile_where(scoped(None, viewer))))
    first = None
    if viewer is not None:
        live._filter_cache.clear()
        live._columns = type(live._columns)(index.store, index.generation)  # no readers column yet
        t = time.perf_counter()
        index.search(queries[0], k=10, mode=mode, access=viewer)
        first = (time.perf_counter() - t) * 1000
    cold = []
    for i in range(cold_n):
        live._filter_cache.clear()
        t = time.perf_counter()
        index.search(queries[i % len(queries)], k=10, mode=mode, access=viewer)
        cold.append((time.perf_counter() - t) * 1000)
    index.search(queries[0], k=10, mode=mode, access=viewer)
    warm, got = [], []
    for q in queries:
        t = time.perf_counter()
        hits = index.search(q, k=10, mode=mode, access=viewer)
        warm.append((time.perf_counter() - t) * 1000)
        got.append(len(hits))
    if viewer is not None:  # every hit is one the viewer may read
        for hit in index.search(queries[0], k=10, mode=mode, access=viewer):
            assert viewer.can_read(hit.metadata), hit
    return {"viewer": name, "mode": mode, "chunks_visible": visible, "first_ms": None if first is None else round(first, 1),
            "cold_ms": ms(cold), "warm_ms": ms(warm), "hits_mean": round(float(np.mean(got)), 2),
            "queries": len(queries), "cold_queries": cold_n}


def print_table(results: dict) -> None:
    info = results["index"]
    print(f"{info['n']:,} chunks in {info['documents']:,} documents, `{info['factory']}` {info['search_params']}; "
          f"{results['machine']}; {results['date']}; filter columns built in {results['columns_ms']:.0f} ms\n")
    print("| mode | viewer | chunks visible | first use ms | cold p50 (p95) ms | warm p50 (p95) ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results["rows"]:
        first = "" if r["first_ms"] is None else f"{r['first_ms']:.1f}"
        visible = "all" if r["chunks_visible"] is None else f"{r['chunks_visible']:,}"
        print(f"| {r['mode']} | {r['viewer']} | {visible} | {first} | {r['cold_ms']['p50']:.2f} ({r['cold_ms']['p95']:.2f}) | "
              f"{r['warm_ms']['p50']:.2f} ({r['warm_ms']['p95']:.2f}) |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="chunks (4 a document)")
    ap.add_argument("--work", type=Path, default=WORK, help="where the index is built once and kept")
    ap.add_argument("--queries", type=int, default=200, help="warm queries a viewer and mode")
    ap.add_argument("--cold", type=int, default=20, help="cold queries a viewer and mode")
    ap.add_argument("--modes", default="dense,hybrid")
    ap.add_argument("--out", type=Path, help="JSON results file")
    ap.add_argument("--table", action="store_true", help="print the results in --out as a Markdown table")
    args = ap.parse_args(argv)
    if args.table:
        print_table(json.loads(args.out.read_text()))
        return 0
    import faiss

    from searcher import Index
    from searcher.search.filter_columns import FilterColumns

    info = build(args.work, args.n)
    index = Index.open(args.work / "index", encoder=RandomEncoder())
    index.queried.queries = QueryLookup()
    rng = np.random.default_rng(7)
    queries = [f"{word(a)} {word(b)}" for a, b in rng.integers(0, VOCABULARY, (args.queries, 2))]
    started = time.perf_counter()
    index.live._columns = FilterColumns(index.store, index.generation)
    results = {"index": {**info, "factory": index.vectors.describe(), "search_params": index.vectors.search_params()},
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, faiss {faiss.__version__}, "
                          f"{faiss.omp_get_max_threads()} OpenMP threads",
               "date": str(date.today()), "columns_ms": round((time.perf_counter() - started) * 1000, 1), "rows": []}
    for mode in args.modes.split(","):
        for name, viewer in viewers():
            row = measure(index, name, viewer, mode, queries, args.cold)
            print(json.dumps(row), flush=True)
            results["rows"].append(row)
            if args.out:
                args.out.write_text(json.dumps(results, indent=2))
    index.close()
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
