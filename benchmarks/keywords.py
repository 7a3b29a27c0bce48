"""Keyword engines side by side (FTS5 and tantivy): search latency, quality and indexing.

    python benchmarks/keywords.py --dataset ../shared/datasets/scifact --work /tmp/kw-bench
    python benchmarks/keywords.py --dataset ../shared/datasets/scifact --work /tmp/kw-bench --million

For each engine, in one run:
- SciFact built with the real model (`Index.create(keyword_engine=...)`, as `searcher index`
  does): documents a second, and the seconds spent in the keyword side (recording changes in
  the SQLite commit, applying them to tantivy);
- nDCG@10 of each mode over the 300 test queries;
- keyword and hybrid latency, p50 and p95, in process (`Index.search`) and over HTTP (a
  waitress server in its own process, `web.create_app`), with 1 and 4 clients, on distinct
  queries with the query-vector cache off;
- with `--million`: the same latencies on an index of at least 1,000,000 chunks of real text.
  Its documents are made from the sentences of the shared collections (SciFact's abstracts
  and DBpedia's entity abstracts), eight sentences drawn at random (seeded) a document, in
  chunks of 64 tokens; they are encoded by a deterministic hashing encoder
  (tests/fake_encoder.py, 384 dimensions: the real model would take hours here), so dense
  scores mean nothing, but every search still encodes its query with the real model, and
  FAISS searches 1M vectors of the real dimension. It is built once with FTS5 through
  `Index.add_documents`; the tantivy copy shares its SQLite and vectors and gets its keyword
  index from `check --repair` (timed).
Built indexes are kept under --work and reused.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from latency import load as http_load, percentile  # noqa: E402

from searcher import Index  # noqa: E402
from searcher.quality.evaluate import compute_metrics, load_dataset  # noqa: E402
from searcher.storage.keywords import ENGINES  # noqa: E402

MODES = ("keyword", "hybrid")
SENTENCE = re.compile(r"(?<=[.!?])\s+")
MILLION = 1_000_000


class KeywordClock:
    """Seconds spent in each engine's record and catch_up (the keyword side of a commit)."""

    def __init__(self):
        self.seconds = 0.0

    def __enter__(self):
        self.saved = []
        for cls in ENGINES.values():
            for name in ("record", "catch_up", "rebuild"):
                original = getattr(cls, name)
                self.saved.append((cls, name, original))
                setattr(cls, name, self._timed(original))
        return self

    def _timed(self, fn):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
        return timed

    def __exit__(self, *exc):
        for cls, name, original in self.saved:
            setattr(cls, name, original)


# -- SciFact ------------------------------------------------------------------------------------

def build_scifact(dataset, folder: Path, engine: str) -> dict | None:
    """Build the collection into `folder` with `engine` (None when it is already there)."""
    if (folder / "manifest.json").exists():
        return None
    started = time.perf_counter()
    with KeywordClock() as clock, Index.create(folder, device="cpu", keyword_engine=engine) as index:
        report = index.add_documents(dataset.corpus)
    seconds = time.perf_counter() - started
    return {"documents": report.indexed, "chunks": report.chunks, "seconds": round(seconds, 1),
            "documents_per_s": round(report.indexed / seconds, 2), "keyword_seconds": round(clock.seconds, 2)}


def quality(index: Index, dataset) -> dict:
    out = {}
    for mode in ("dense", "keyword", "hybrid"):
        run = {q: [h.doc_id for h in index.search(text, k=100, mode=mode)] for q, text in dataset.queries.items()}
        out[mode] = round(compute_metrics(dataset.qrels, run)["nDCG@10"], 4)
    return out


# -- latency --------------------------------------------------------------------------------------

def in_process(index: Index, queries: list[str], mode: str, clients: int, k: int = 10) -> dict:
    """p50/p95 ms of Index.search over distinct queries from `clients` threads."""
    index.queries.cache_size = 0  # every query is encoded: nothing comes from the cache
    for q in queries[:5]:
        index.search(q, k, mode=mode)
    times: list[float] = []
    lock = threading.Lock()

    def one(q):
        started = time.perf_counter()
        index.search(q, k, mode=mode)
        with lock:
            times.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, queries))
    wall = time.perf_counter() - started
    return {"p50_ms": round(percentile(times, 50), 1), "p95_ms": round(percentile(times, 95), 1),
            "per_s": round(len(times) / wall, 1)}


SERVER = """
import sys
sys.path[:0] = {paths!r}
from searcher import Index
from searcher.web import create_app
from searcher.web.server import make_server
from keywords import open_for_queries
index = open_for_queries({folder!r})
index.queries.cache_size = 0
index.search("warm up", k=1)
server = make_server(create_app(index), "127.0.0.1", 0, 4)
print(f"on http://127.0.0.1:{{server.effective_port}}/", flush=True)
server.run()
"""


def over_http(folder: Path, queries: list[str], mode: str, clients: int) -> dict:
    code = SERVER.format(paths=sys.path[:3], folder=str(folder))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in proc.stdout:
            match = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
            if match:
                url = match.group(1)
                threading.Thread(target=proc.stdout.read, daemon=True).start()
                break
        if url is None:
            raise SystemExit(f"the server did not start: {proc.stdout.read()}")
        http_load(url, queries[:5], 5, 1, 10, mode, 60)
        r = http_load(url, queries, len(queries), clients, 10, mode, 300)
        return {"p50_ms": r["p50_ms"], "p95_ms": r["p95_ms"], "per_s": r["requests_per_s"], "errors": r["errors"]}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def open_for_queries(folder) -> Index:
    """An index, opened with the model it was built with; a hashed (million-chunk) index gets
    the real model for its queries (see the module docstring)."""
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    if manifest["model"] != "fake":
        return Index.open(folder, device="cpu")
    from fake_encoder import FakeEncoder
    from searcher.index.facade import get_encoder

    return Index.open(folder, encoder=QueriesByModel(FakeEncoder(dimension=manifest["dimension"]),
                                                     get_encoder(None, "cpu")))


class QueriesByModel:
    """The hashing encoder an index was built with, whose queries the real model encodes (so a
    search costs what it costs with the real model)."""

    def __init__(self, built_with, model):
        self._built_with, self._model = built_with, model

    def __getattr__(self, name):
        return getattr(self._built_with, name)

    def encode(self, texts, *args, **kwargs):
        return self._model.encode(texts, *args, **kwargs)


def latencies(folder: Path, queries: list[str]) -> list[dict]:
    rows = []
    index = open_for_queries(folder)
    try:
        for mode in MODES:
            for clients in (1, 4):
                rows.append({"mode": mode, "clients": clients, "where": "in process",
                             **in_process(index, queries, mode, clients)})
    finally:
        index.close()
    for mode in MODES:
        for clients in (1, 4):
            rows.append({"mode": mode, "clients": clients, "where": "HTTP", **over_http(folder, queries, mode, clients)})
    return rows


# -- a million chunks -----------------------------------------------------------------------------

def sentences(dataset_dirs: list[Path]) -> tuple[list[str], list[str]]:
    pool, titles = [], []
    for folder in dataset_dirs:
        with open(folder / "corpus.jsonl", encoding="utf-8") as fh:
            for line in fh:
                doc = json.loads(line)
                titles.append(doc.get("title") or "")
                pool.extend(s for s in SENTENCE.split(doc.get("text") or "") if len(s) > 20)
    return pool, titles


def million_documents(pool: list[str], titles: list[str], chunks: int, seed: int = 7):
    """Documents of eight random real sentences until about `chunks` 64-token chunks."""
    rng = random.Random(seed)
    budget = chunks * 64 * 4.2  # characters: about 4.2 a token on this text
    n = 0
    while budget > 0:
        text = " ".join(rng.choice(pool) for _ in range(8))
        budget -= len(text)
        n += 1
        yield {"id": f"m{n}", "title": rng.choice(titles), "text": text}


def build_million(folder: Path, datasets: list[Path], chunks: int) -> dict | None:
    if (folder / "manifest.json").exists():
        return None
    from fake_encoder import FakeEncoder

    pool, titles = sentences(datasets)
    started = time.perf_counter()
    with KeywordClock() as clock, Index.create(folder, encoder=FakeEncoder(dimension=384), chunk_tokens=64,
                                               overlap=0, keyword_engine="fts5") as index:
        index.commit_chunks = 100_000
        report = index.add_documents(million_documents(pool, titles, chunks))
    seconds = time.perf_counter() - started
    return {"documents": report.indexed, "chunks": report.chunks, "seconds": round(seconds, 1),
            "keyword_seconds": round(clock.seconds, 1)}


def tantivy_copy(source: Path, folder: Path) -> dict | None:
    """The same index with tantivy as its engine: SQLite and vectors copied, keywords rebuilt."""
    if (folder / "manifest.json").exists():
        return None
    from searcher.index.check import check_index
    import sqlite3

    shutil.copytree(source, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "keyword_engine": "tantivy"}, indent=2))
    with sqlite3.connect(folder / "content.db") as db:
        db.execute("drop table chunks_fts")
    started = time.perf_counter()
    report = check_index(folder, repair=True)
    assert report.ok, report.summary()
    return {"tantivy_build_seconds": round(time.perf_counter() - started, 1)}


# -- main -----------------------------------------------------------------------------------------

def table(title: str, rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = [f"**{title}**", "", "| " + " | ".join(keys) + " |", "| " + " | ".join("---" for _ in keys) + " |"]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kw-bench"))
    parser.add_argument("--queries", type=int, default=300, help="distinct queries per latency figure")
    parser.add_argument("--million", action="store_true", help="also the index of a million chunks")
    parser.add_argument("--million-queries", type=int, default=100,
                        help="distinct queries per latency figure there (FTS5 takes a quarter second each)")
    parser.add_argument("--chunks", type=int, default=MILLION)
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(args.dataset, "test")
    everything = [json.loads(line)["text"] for line in open(args.dataset / "queries.jsonl", encoding="utf-8")]
    queries = list(dict.fromkeys(everything))[: args.queries]
    figures: dict = {"machine": f"{platform.machine()}, {date.today()}", "queries": len(queries)}
    print(f"# keyword engines: {figures['machine']}, {len(queries)} distinct queries a figure "
          f"({args.million_queries} at a million chunks)\n")

    if not args.skip_scifact:
        builds, quality_rows, latency_rows = [], [], []
        for engine in ENGINES:
            folder = args.work / f"scifact-{engine}"
            built = build_scifact(dataset, folder, engine)
            if built:
                builds.append({"engine": engine, **built})
            with Index.open(folder, device="cpu") as index:
                quality_rows.append({"engine": engine, **quality(index, dataset)})
            latency_rows += [{"engine": engine, **r} for r in latencies(folder, queries)]
        figures["scifact"] = {"builds": builds, "ndcg@10": quality_rows, "latency": latency_rows}
        if builds:
            print(table("SciFact: building with the real model", builds))
        print(table("SciFact: nDCG@10 (300 test queries)", quality_rows))
        print(table("SciFact: latency", latency_rows))

    if args.million:
        datasets = [args.dataset, args.dataset.parent / "dbpedia-entity"]
        fts5, tantivy = args.work / "million-fts5", args.work / "million-tantivy"
        builds = {"fts5": build_million(fts5, datasets, args.chunks), "tantivy": tantivy_copy(fts5, tantivy)}
        latency_rows = []
        for engine, folder in (("fts5", fts5), ("tantivy", tantivy)):
            with open_for_queries(folder) as index:
                size = index.info()
            latency_rows += [{"engine": engine, "chunks": size["chunks"], **r}
                             for r in latencies(folder, queries[: args.million_queries])]
        figures["million"] = {"builds": builds, "latency": latency_rows}
        print("million-chunk builds:", json.dumps(builds))
        print(table("A million chunks: latency", latency_rows))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
