"""Sharded search in process: latency for 1, 2 and 4 shards of one corpus, against the single
index, and what BM25's per-shard statistics cost in quality against DFS.

    python benchmarks/shards.py --dataset ../shared/datasets/scifact --work /tmp/shards-bench
    python benchmarks/shards.py --dataset ../shared/datasets/scifact --work /tmp/shards-bench --out /tmp/shards.json

In one run:
- the corpus is built once into --work/single with the real model (`Index.create`, flat
  vectors, tantivy: what `searcher index` makes at this size; reused when it is there), then
  split by `searcher shard`'s code (`split_index`) into 1, 2 and 4 shards (timed; rebuilt
  each run);
- for the single index and each sharded one: p50/p95 latency (ms) of a k=10 search, in
  process (`Index.search`, `ShardedIndex.search`: the shards are local Index objects, asked
  in turn or, with --threads, from a pool of that many threads), for dense, keyword and
  hybrid, over the distinct judged test queries, one client; the query-vector cache is on
  (as a server has it) and cleared before each configuration, so every query is encoded
  once (the shards then share the vector);
- nDCG@10 (100 results a query, as `searcher eval`) of each mode, with the sharded keyword
  side in both statistics modes (dfs: the collection's term statistics; shard: each shard's),
  and whether the dense rankings equal the single index's exactly.
The Ray Serve rows (one deployment a shard): benchmarks/ray_serve.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from latency import percentile  # noqa: E402

from searcher import Index, open_index  # noqa: E402
from searcher.quality.evaluate import compute_metrics, load_dataset  # noqa: E402
from searcher.cluster.shards import split_index  # noqa: E402

MODES = ("dense", "keyword", "hybrid")
SHARD_COUNTS = (1, 2, 4)


def build(dataset, folder: Path) -> dict | None:
    """The corpus in `folder` (None when it is already built)."""
    if (folder / "manifest.json").exists():
        return None
    started = time.perf_counter()
    with Index.create(folder, device="cpu", index_type="flat", keyword_engine="tantivy") as index:
        report = index.add_documents(dataset.corpus)
    seconds = time.perf_counter() - started
    return {"documents": report.indexed, "chunks": report.chunks, "seconds": round(seconds, 1)}


def latency(index, queries: list[str], mode: str, k: int = 10) -> dict:
    """p50/p95 ms of index.search over `queries`, one at a time (after two warm-up searches)."""
    for q in ("warm up", "warm up again"):
        index.search(q, k=k, mode=mode)
    clear_query_cache(index)
    times = []
    for q in queries:
        started = time.perf_counter()
        index.search(q, k=k, mode=mode)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": round(percentile(times, 50), 1), "p95_ms": round(percentile(times, 95), 1),
            "per_s": round(len(times) / (sum(times) / 1000), 1)}


def clear_query_cache(index) -> None:
    index.queries.clear()  # an Index's, or the one a ShardedIndex encodes every query with


def rankings(index, dataset, mode: str) -> dict[str, list[str]]:
    return {q: [h.doc_id for h in index.search(text, k=100, mode=mode)] for q, text in dataset.queries.items()}


def ndcg(dataset, run) -> float:
    return round(compute_metrics(dataset.qrels, run)["nDCG@10"], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="A BEIR-layout collection (corpus, queries, qrels/test.tsv).")
    parser.add_argument("--work", required=True, type=Path, help="Folder for the indexes (the single one is reused).")
    parser.add_argument("--queries", type=int, default=300, help="Judged test queries to time (at most).")
    parser.add_argument("--threads", type=int, default=None,
                        help="Also time the sharded indexes searched from a pool of this many threads "
                             "(the default pool size of this machine is always timed).")
    parser.add_argument("--out", type=Path, help="Also write the results as JSON here.")
    args = parser.parse_args()

    dataset = load_dataset(args.dataset, "test")
    queries = list(dict.fromkeys(dataset.queries.values()))[: args.queries]
    args.work.mkdir(parents=True, exist_ok=True)
    single_dir = args.work / "single"
    result = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "dataset": Path(args.dataset).name, "documents": len(dataset.corpus), "timed_queries": len(queries),
              "build": build(dataset, single_dir), "splits": [], "latency": [], "quality": []}
    single = Index.open(single_dir, device="cpu")
    configs: list[tuple[str, object, bool]] = [("single index", single, True)]  # (name, index, rank it for nDCG)
    for count in SHARD_COUNTS:
        out = args.work / f"shards-{count}"
        shutil.rmtree(out, ignore_errors=True)
        report = split_index(single_dir, out, count)
        result["splits"].append({"shards": count, "seconds": round(report.seconds, 2),
                                 "documents": report.documents, "chunks": report.chunks})
        index = open_index(out, device="cpu")
        configs.append((f"{count} shard{'s' if count > 1 else ''}, {index.threads} thread"
                        f"{'s' if index.threads > 1 else ''}", index, True))
        if args.threads and count > 1 and args.threads != index.threads:  # the same rankings: timed only
            configs.append((f"{count} shards, {args.threads} threads", open_index(out, device="cpu", threads=args.threads),
                            False))

    base = {mode: rankings(single, dataset, mode) for mode in MODES}
    result["quality"].append({"index": "single index", **{m: ndcg(dataset, base[m]) for m in MODES}})
    for name, index, ranked in configs[1:]:
        if not ranked:
            continue
        dense = rankings(index, dataset, "dense")
        row = {"index": name, "dense": ndcg(dataset, dense), "dense_equal": dense == base["dense"]}
        for stats in ("dfs", "shard"):
            index.keyword_statistics = stats
            for mode in ("keyword", "hybrid"):
                row[f"{mode} ({stats})"] = ndcg(dataset, rankings(index, dataset, mode))
        index.keyword_statistics = "dfs"
        result["quality"].append(row)
        print(json.dumps(row), flush=True)

    for name, index, _ in configs:
        for mode in MODES:
            variants = ("dfs", "shard") if hasattr(index, "shards") and mode != "dense" and len(index.shards) > 1 \
                else (None,)
            for stats in variants:
                if stats:
                    index.keyword_statistics = stats
                row = {"index": name, "mode": mode + (f" ({stats})" if stats else ""),
                       **latency(index, queries, mode)}
                result["latency"].append(row)
                print(json.dumps(row), flush=True)
            if hasattr(index, "shards"):
                index.keyword_statistics = "dfs"

    for _, index, _ in configs:
        index.close()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
