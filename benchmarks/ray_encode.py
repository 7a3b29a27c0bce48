"""Encoding on Ray against the plain `searcher index`: same texts, same machine (issue 16).

    python benchmarks/ray_encode.py [--dataset ../shared/datasets/scifact] [--limit 1000]
        [--workers 1,2] [--rounds 2] [--commit-every N] [--parts commands,encode,driver] [--json FILE]

Three parts, on the first --limit corpus documents (one JSON Lines file), device cpu, the
configurations rotating over --rounds so that load from other processes falls on all alike:

commands  the whole `searcher index` command in a subprocess, into a new index folder: plain,
          and with `--ray --ray-workers N` for each --workers count (a local Ray of the
          command's own on 127.0.0.1: the machine's cores, 256 MB object store). chunks/s over
          the command's own indexing time (reading, chunking, encoding, committing; with Ray
          it includes starting the actor pool at each commit, not starting Ray), the command's
          wall time (Python, the model, Ray starting and stopping), and both as overheads
          against the plain command.
encode    in one process, one Ray started once (its start timed): the chunks the writer would
          encode (its own inputs, title tokens included, recorded by an indexing run) encoded
          in one call, as one commit does, by the local encoder and by a RayEncoder of N
          workers (its actor pool started in the call, as at each commit). chunks/s and
          the overhead.
driver    the driver's own rate, the ceiling of any cluster (docs/cluster.md): indexing in this
          process with an encoder that returns a constant vector at no cost, so what is timed
          is reading, tokenizing and chunking, and committing (FAISS, SQLite, tantivy).

On a machine with few cores expect no gain from more workers: they share the same cores; the
figure that matters is the overhead.
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

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only, before Ray is imported

from searcher import Index  # noqa: E402


def rotations(names: list[str], rounds: int):
    """(round, name) in an order that rotates by one each round."""
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            yield r, name


def commands(corpus: Path, tmp: Path, workers: list[int], rounds: int, commit_every: int | None) -> dict:
    configs = {"plain": []}
    for n in workers:
        configs[f"ray, {n} worker{'s' if n > 1 else ''}"] = ["--ray", "--ray-workers", str(n)]
    totals = {n: {"seconds": 0.0, "wall": 0.0, "chunks": 0, "runs": 0} for n in configs}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for r, name in rotations(list(configs), rounds):
        cmd = [sys.executable, "-m", "searcher", "index", str(corpus), "--index", str(tmp / f"cmd-{r}-{len(name)}"),
               "--device", "cpu", "--json", *configs[name]]
        if commit_every:
            cmd += ["--commit-every", str(commit_every)]
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
        print(f"round {r + 1}: {name}: {report['chunks'] / report['seconds']:.1f} chunks/s "
              f"({report['seconds']:.1f}s indexing, {wall:.1f}s wall)", file=sys.stderr, flush=True)
    base = totals["plain"]
    return {name: {"chunks_per_s": round(t["chunks"] / t["seconds"], 1), "index_s": round(t["seconds"] / t["runs"], 1),
                   "overhead": round(t["seconds"] / base["seconds"] - 1, 3), "wall_s": round(t["wall"] / t["runs"], 1),
                   "wall_overhead": round(t["wall"] / base["wall"] - 1, 3)}
            for name, t in totals.items()}


class NoEncoding:
    """The writer's encoder with the model's tokenizer and a constant unit vector for every
    chunk; it keeps the inputs it was given (`inputs`)."""

    def __init__(self, local):
        self.tokenizer, self.with_special_tokens = local.tokenizer, local.with_special_tokens
        self.name, self.fingerprint, self.dimension = local.name, local.fingerprint, local.dimension
        self.inputs: list = []

    def encode_ids(self, input_ids, batch_size=None, progress=None):
        self.inputs.extend(input_ids)
        out = np.zeros((len(input_ids), self.dimension), dtype=np.float32)
        out[:, 0] = 1.0
        return out


def driver(corpus: Path, folder: Path) -> tuple[dict, NoEncoding]:
    """chunks/s of `Index.add_paths` without encoding (see the module docstring)."""
    with Index.create(folder, device="cpu") as idx:
        stand_in = NoEncoding(idx.encoder)
        report = idx.add_paths([corpus], encoder=stand_in)
    return {"chunks": report.chunks, "seconds": round(report.seconds, 2),
            "chunks_per_s": round(report.chunks / report.seconds, 1)}, stand_in


def encode(inputs: list, workers: list[int], rounds: int) -> dict:
    from searcher.encoding.encoder import get_encoder
    from searcher.cluster.ray_cluster import ray_session
    from searcher.cluster.ray_encoder import RayEncoder

    local = get_encoder(None, "cpu")
    local.encode_ids(inputs[:8])  # warm-up
    started = time.perf_counter()
    with ray_session("local"):
        ray_start = time.perf_counter() - started
        encoders = {"plain": local, **{f"ray, {n} worker{'s' if n > 1 else ''}": RayEncoder(local, n) for n in workers}}
        totals = {name: {"seconds": 0.0, "runs": 0} for name in encoders}
        reference = None
        for r, name in rotations(list(encoders), rounds):
            started = time.perf_counter()
            vectors = encoders[name].encode_ids(inputs, batch_size=32)
            seconds = time.perf_counter() - started
            reference = vectors if reference is None else reference
            cosine = float((vectors * reference).sum(axis=1).min())
            t = totals[name]
            t["seconds"] += seconds
            t["runs"] += 1
            print(f"round {r + 1}: encode, {name}: {len(inputs) / seconds:.1f} chunks/s ({seconds:.1f}s, "
                  f"min cosine to the first call {cosine:.5f})", file=sys.stderr, flush=True)
    base = totals["plain"]
    results = {name: {"chunks_per_s": round(len(inputs) * t["runs"] / t["seconds"], 1),
                      "seconds": round(t["seconds"] / t["runs"], 1), "overhead": round(t["seconds"] / base["seconds"] - 1, 3)}
               for name, t in totals.items()}
    return {"ray_start_s": round(ray_start, 1), "results": results}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact",
                    help="BEIR-layout folder (its corpus.jsonl)")
    ap.add_argument("--limit", type=int, default=1000, help="the first N corpus documents")
    ap.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    ap.add_argument("--rounds", type=int, default=2, help="runs of each configuration, rotating")
    ap.add_argument("--commit-every", type=int, help="chunks per commit of the commands (default: searcher's, 4096)")
    ap.add_argument("--parts", default="commands,encode,driver", help="which parts to run (see above)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    workers = [int(n) for n in args.workers.split(",")]

    rows = [line for line in (args.dataset / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()][: args.limit]
    out = {"documents": len(rows), "rounds": args.rounds, "commit_every": args.commit_every,
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
           "at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    with tempfile.TemporaryDirectory(prefix="ray-encode-bench-") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus.jsonl"
        corpus.write_text("\n".join(rows) + "\n", encoding="utf-8")
        if "commands" in parts:
            out["commands"] = commands(corpus, tmp, workers, args.rounds, args.commit_every)
        out["driver"], stand_in = driver(corpus, tmp / "driver")
        if "encode" in parts:
            out["encode"] = encode(stand_in.inputs, workers, args.rounds)
    import ray

    out["ray"] = ray.__version__
    print(f"\nthe first {len(rows)} SciFact documents, {out['driver']['chunks']} chunks, device cpu, "
          f"{out['machine']}, Ray {out['ray']}, {args.rounds} rotating runs each, {out['at']}")
    if "commands" in out:
        print(f"\n`searcher index`{f' --commit-every {args.commit_every}' if args.commit_every else ''}")
        print(f"{'configuration':<16} {'chunks/s':>9} {'index s':>8} {'overhead':>9} {'wall s':>7} {'wall overhead':>14}")
        for name, t in out["commands"].items():
            print(f"{name:<16} {t['chunks_per_s']:>9.1f} {t['index_s']:>8.1f} {t['overhead']:>+9.1%} "
                  f"{t['wall_s']:>7.1f} {t['wall_overhead']:>+14.1%}")
    if "encode" in out:
        print(f"\none encode call of all the chunks (Ray started once, in {out['encode']['ray_start_s']:.1f}s)")
        print(f"{'configuration':<16} {'chunks/s':>9} {'seconds':>8} {'overhead':>9}")
        for name, t in out["encode"]["results"].items():
            print(f"{name:<16} {t['chunks_per_s']:>9.1f} {t['seconds']:>8.1f} {t['overhead']:>+9.1%}")
    d = out["driver"]
    print(f"\ndriver only (no encoding): {d['chunks_per_s']:.0f} chunks/s ({d['seconds']:.1f}s)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
