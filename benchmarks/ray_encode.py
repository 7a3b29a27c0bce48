"""Encoding on Ray against the plain `searcher index`: same texts, same machine (issue 16).

    python benchmarks/ray_encode.py [--dataset ../shared/datasets/scifact] [--limit 1000]
        [--workers 1,2] [--rounds 2] [--commit-every N] [--json FILE]

Each run is the whole `searcher index` command in a subprocess on the first --limit corpus
documents (one JSON Lines file), into a new index folder, device cpu: once plain, and once per
--workers count with `--ray --ray-workers N` (a local Ray of the command's own, on 127.0.0.1,
the machine's cores, 256 MB object store), the configurations rotating over --rounds so that
load from other processes falls on all of them alike. Per configuration it prints chunks/s
over the command's own indexing time (reading, chunking, encoding, committing; a Ray run's
includes starting its actor pool at each commit, not starting Ray), the wall time of the
command (Python, the model, Ray starting and stopping) and the overhead ratios of both
against the plain command. On a machine with few cores expect no gain from more workers:
they share the same cores; the figure that matters is the overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def configurations(workers: list[int]) -> dict[str, list[str]]:
    """Name -> the extra arguments of `searcher index`."""
    configs = {"plain": []}
    for n in workers:
        configs[f"ray, {n} worker{'s' if n > 1 else ''}"] = ["--ray", "--ray-workers", str(n)]
    return configs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact",
                    help="BEIR-layout folder (its corpus.jsonl)")
    ap.add_argument("--limit", type=int, default=1000, help="the first N corpus documents")
    ap.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each configuration, rotating")
    ap.add_argument("--commit-every", type=int, help="chunks per commit (default: searcher's, 4096)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    rows = [line for line in (args.dataset / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()][: args.limit]
    configs = configurations([int(n) for n in args.workers.split(",")])
    names = list(configs)
    totals = {n: {"seconds": 0.0, "wall": 0.0, "chunks": 0, "runs": 0} for n in names}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    with tempfile.TemporaryDirectory(prefix="ray-encode-bench-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("\n".join(rows) + "\n", encoding="utf-8")
        for r in range(args.rounds):
            for name in names[r % len(names):] + names[: r % len(names)]:
                folder = Path(tmp) / f"index-{names.index(name)}-{r}"
                cmd = [sys.executable, "-m", "searcher", "index", str(corpus), "--index", str(folder),
                       "--device", "cpu", "--json", *configs[name]]
                if args.commit_every:
                    cmd += ["--commit-every", str(args.commit_every)]
                started = time.perf_counter()
                done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - started
                if done.returncode:
                    sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
                report = json.loads(done.stdout)
                t = totals[name]
                t["seconds"] += report["seconds"]
                t["wall"] += wall
                t["chunks"] += report["chunks"]
                t["runs"] += 1
                where = f", nodes {report['ray']['nodes']}" if "ray" in report else ""
                print(f"round {r + 1}: {name}: {report['chunks'] / report['seconds']:.1f} chunks/s "
                      f"({report['seconds']:.1f}s indexing, {wall:.1f}s wall{where})", file=sys.stderr, flush=True)
    base = totals["plain"]
    print(f"\n`searcher index` on the first {len(rows)} SciFact documents ({base['chunks'] // base['runs']} chunks), "
          f"device cpu, {os.cpu_count()} CPUs, {args.rounds} rotating runs each, "
          f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"{'configuration':<16} {'chunks/s':>9} {'index s':>8} {'overhead':>9} {'wall s':>7} {'wall overhead':>14}")
    results = {}
    for name, t in totals.items():
        rate = t["chunks"] / t["seconds"]
        overhead = t["seconds"] / base["seconds"] - 1
        wall_overhead = t["wall"] / base["wall"] - 1
        results[name] = {"chunks_per_s": round(rate, 2), "index_s": round(t["seconds"] / t["runs"], 2),
                         "wall_s": round(t["wall"] / t["runs"], 2), "overhead": round(overhead, 4),
                         "wall_overhead": round(wall_overhead, 4)}
        print(f"{name:<16} {rate:>9.1f} {t['seconds'] / t['runs']:>8.1f} {overhead:>+9.1%} "
              f"{t['wall'] / t['runs']:>7.1f} {wall_overhead:>+14.1%}")
    if args.json:
        import ray

        args.json.write_text(json.dumps({
            "documents": len(rows), "commit_every": args.commit_every, "rounds": args.rounds,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "ray": ray.__version__,
            "results": results}, indent=2))


if __name__ == "__main__":
    main()
