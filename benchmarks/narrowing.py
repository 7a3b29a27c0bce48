"""What facets, date order and the recency boost cost a search, against the plain search in
the same run (in process, `Index.search`/`Index.facets`, hybrid mode, one client).

    python benchmarks/narrowing.py --index /tmp/kw-bench/scifact-tantivy --dataset ../shared/datasets/scifact

The index is any built index (benchmarks/keywords.py leaves SciFact's under its --work; or
`searcher index ../shared/datasets/scifact/corpus.jsonl --index DIR`); the queries are the
collection's. Each variant runs every query once with the query-vector cache on and warm (so
the figures are the ranking and counting, not the encoder, which the plain search pays too);
the page (/?q=) runs `search_with_facets`: one ranking for its results and facets.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

from keywords import open_for_queries  # noqa: E402
from latency import percentile  # noqa: E402

from searcher.quality.evaluate import load_dataset  # noqa: E402
from searcher.search.facets import DEFAULT_FACETS  # noqa: E402

VARIANTS = {
    "search k=10": lambda ix, q: ix.search(q, 10),
    "facets (type, folder, year)": lambda ix, q: ix.facets(q, DEFAULT_FACETS),
    "search, then facets (two rankings)": lambda ix, q: (ix.search(q, 10), ix.facets(q, DEFAULT_FACETS)),
    "search_with_facets (the page: one ranking)": lambda ix, q: ix.search_with_facets(q, 10, 0, DEFAULT_FACETS),
    "sort=modified": lambda ix, q: ix.search(q, 10, sort="modified"),
    "recency=365": lambda ix, q: ix.search(q, 10, recency=365),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, type=Path)
    parser.add_argument("--dataset", required=True, type=Path)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    queries = list(load_dataset(args.dataset).queries.values())[: args.queries]
    index = open_for_queries(args.index)
    for q in queries:
        index.search(q, 10)  # every query vector is in the cache from here on
    rows = []
    for name, run in VARIANTS.items():
        times = []
        for q in queries:
            started = time.perf_counter()
            run(index, q)
            times.append((time.perf_counter() - started) * 1000)
        rows.append({"variant": name, "p50_ms": round(percentile(times, 50), 2), "p95_ms": round(percentile(times, 95), 2)})
    base = rows[0]["p50_ms"]
    for row in rows:
        row["p50_vs_search"] = round(row["p50_ms"] / base, 2)
    info = index.info()
    result = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {platform.python_version()}",
              "index": str(args.index), "documents": info["documents"], "chunks": info["chunks"],
              "keyword_engine": info["keyword_engine"], "queries": len(queries), "rows": rows}
    print(f"{info['documents']:,} documents, {info['chunks']:,} chunks, {len(queries)} queries, hybrid, warm query cache")
    print("| variant | p50 | p95 | p50 / search |\n| --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['variant']} | {row['p50_ms']} ms | {row['p95_ms']} ms | {row['p50_vs_search']} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
