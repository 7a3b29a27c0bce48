"""Sharded search over Ray Serve against in process: latency for 1, 2 and 4 shards of one corpus.

    python benchmarks/ray_serve.py --dataset ../shared/datasets/scifact --work /tmp/shards-bench
    python benchmarks/ray_serve.py --dataset ../shared/datasets/scifact --work /tmp/shards-bench --out /tmp/ray-serve.json

The same corpus and splits as benchmarks/shards.py (--work/single, built there, or here
when missing; split into --work/shards-N when missing). For each shard count, p50/p95 ms of a
k=10 search, one client, over the distinct judged test queries, for dense, keyword (dfs) and
hybrid (dfs):
- in process: `open_index(shards-N)`, the shards local Index objects asked in turn;
- Ray Serve: `serve_sharded` (searcher/cluster/ray_serving.py, what `searcher serve --ray` runs), one
  deployment a shard, one replica each, on a Ray of this process's own on 127.0.0.1 (one
  node: the point is the cost of asking shards through Serve, not more machines); the
  front encodes the query and asks every shard at once through the handles.
The query-vector cache is cleared before each row, so every query is encoded once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from shards import build, latency  # noqa: E402

from searcher import open_index  # noqa: E402
from searcher.quality.evaluate import load_dataset  # noqa: E402
from searcher.cluster.ray_cluster import LocalRay, ray_session  # noqa: E402
from searcher.cluster.shards import split_index  # noqa: E402

MODES = ("dense", "keyword", "hybrid")
SHARD_COUNTS = (1, 2, 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="A BEIR-layout collection (corpus, queries, qrels/test.tsv).")
    parser.add_argument("--work", required=True, type=Path, help="Folder for the indexes (reused when there).")
    parser.add_argument("--queries", type=int, default=300, help="Judged test queries to time (at most).")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray.")
    parser.add_argument("--out", type=Path, help="Also write the results as JSON here.")
    args = parser.parse_args()

    from searcher.cluster.ray_serving import ServeSettings, serve_sharded

    dataset = load_dataset(args.dataset, "test")
    queries = list(dict.fromkeys(dataset.queries.values()))[: args.queries]
    args.work.mkdir(parents=True, exist_ok=True)
    result = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
              "load": os.getloadavg()[0], "dataset": Path(args.dataset).name, "timed_queries": len(queries),
              "build": build(dataset, args.work / "single"), "latency": []}
    with ray_session("local", LocalRay(num_cpus=args.cpus, object_store_mb=128)):
        for count in SHARD_COUNTS:
            folder = args.work / f"shards-{count}"
            if not (folder / "shards.json").is_file():
                split_index(args.work / "single", folder, count)
            local = open_index(folder, device="cpu", threads=1)
            with serve_sharded(folder, ServeSettings(replicas=1, num_cpus=0.25, app_prefix="bench"),
                               encoder=local.queries.encoder) as served:
                for mode in MODES:
                    for where, index in (("in process", local), ("Ray Serve", served.index)):
                        row = {"shards": count, "where": where, "mode": mode, **latency(index, queries, mode)}
                        result["latency"].append(row)
                        print(json.dumps(row), flush=True)
            local.close()
    result["load_after"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
