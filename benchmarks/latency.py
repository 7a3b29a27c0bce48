"""Search latency under load: a real `searcher serve` process on loopback, several clients.

    python benchmarks/latency.py --index /tmp/scifact-index --dataset ../shared/datasets/scifact
    python benchmarks/latency.py --index indexes/default --concurrency 1,4 --requests 500
    python benchmarks/latency.py --index /tmp/scifact-index --breakdown   # where the time goes

Starts the server on a free 127.0.0.1 port, warms it up, then for each concurrency sends at
most `--requests` searches (or stops at `--time-limit` seconds) from that many keep-alive
clients, cycling through distinct queries (the dataset's queries.jsonl when given, else a
built-in list), and prints p50/p95/p99 latency, requests a second and errors, with the
server's own `took_ms` beside them. `--breakdown` instead times the stages of a search in
process (query encoding, FAISS, keyword search, SQLite, the Flask request) over the same queries.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_QUERIES = [
    "read a file line by line", "join two paths", "parse command line arguments", "current date and time",
    "sort a list of dictionaries by key", "random number between two values", "compress data with gzip",
    "send an HTTP request", "regular expression match at start of string", "copy a directory tree",
    "environment variables", "run a subprocess and capture its output", "serialize an object to JSON",
    "thread pool for parallel tasks", "temporary file that is deleted on close", "hash a password",
    "decode base64", "format a number with thousands separators", "read a CSV file", "unit test assertions",
    "measure elapsed time", "default dictionary with a factory", "iterate over pairs of items",
    "send an email", "log messages to a file", "convert string to bytes", "queue between threads",
    "split a string on whitespace", "check if a path exists", "pretty print nested data",
]


def load_queries(dataset: str | None) -> list[str]:
    """Distinct query texts: the dataset's queries.jsonl, or the built-in list."""
    if not dataset:
        return BUILTIN_QUERIES
    with open(Path(dataset) / "queries.jsonl", encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]
    return list(dict.fromkeys(texts))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def start_server(index: str, threads: int, *options: str) -> tuple[subprocess.Popen, str]:
    """`searcher serve` of `index` on a free loopback port (with more `options`), and its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "searcher", "serve", "--index", index, "--host", "127.0.0.1",
         "--port", "0", "--threads", str(threads), *options],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        match = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
        if match:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, match.group(1)
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"the server did not start: {proc.stdout.read() if proc.stdout else ''}")


def load(url: str, queries: list[str], requests: int, concurrency: int, k: int, mode: str | None,
         time_limit: float) -> dict:
    """Send up to `requests` searches from `concurrency` clients; stop early at `time_limit` s."""
    host = urlparse(url)
    local = threading.local()
    latencies, server_ms, errors = [], [], []
    lock = threading.Lock()
    stop_at = time.monotonic() + time_limit

    def one(i: int) -> None:
        if time.monotonic() > stop_at:
            return
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        params = {"q": queries[i % len(queries)], "k": k}
        if mode:
            params["mode"] = mode
        started = time.perf_counter()
        try:
            local.conn.request("GET", "/api/search?" + urlencode(params))
            response = local.conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            local.conn.close()
            del local.conn
            with lock:
                errors.append(repr(e))
            return
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            if response.status != 200:
                errors.append(f"HTTP {response.status}: {body[:200]!r}")
            else:
                latencies.append(elapsed)
                server_ms.append(json.loads(body)["took_ms"])

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    if not latencies:
        raise SystemExit(f"no search succeeded: {errors[:3]}")
    return {
        "concurrency": concurrency, "requests": len(latencies) + len(errors), "errors": len(errors),
        "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1), "mean_ms": round(statistics.fmean(latencies), 1),
        "max_ms": round(max(latencies), 1), "requests_per_s": round(len(latencies) / wall, 1),
        "server_took_p50_ms": round(percentile(server_ms, 50), 1),
        "server_took_p99_ms": round(percentile(server_ms, 99), 1),
        "first_errors": errors[:3],
    }


def breakdown(index_dir: str, queries: list[str], k: int, mode: str | None) -> dict:
    """Median ms of each stage of a search, in this process (no HTTP)."""
    from searcher.index.facade import Index
    from searcher.web import create_app

    index = Index.open(index_dir)
    index.queries.cache_size = 0  # measure encoding itself, not the query cache
    client = create_app(index).test_client()
    stages: dict[str, list[float]] = {s: [] for s in ("encode", "faiss", "keyword", "search", "request")}

    def timed(stage, fn, *a, **kw):
        t = time.perf_counter()
        out = fn(*a, **kw)
        stages[stage].append((time.perf_counter() - t) * 1000)
        return out

    want = max(k + 1, 100)
    for q in queries[:5]:  # warm-up
        index.search(q, k, mode=mode)
    for q in queries[:300]:
        qv = timed("encode", index.encoder.encode, [q])
        timed("faiss", index.vectors.search, qv, want * 5)
        timed("keyword", index.keywords.search, index.store, q, want * 5)
        timed("search", index.search, q, k + 1, mode=mode)
        params = {"q": q, "k": k, **({"mode": mode} if mode else {})}
        timed("request", client.get, "/api/search?" + urlencode(params))
    return {s: round(statistics.median(v), 2) for s, v in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="indexes/default")
    parser.add_argument("--dataset", help="BEIR folder whose queries.jsonl supplies the queries")
    parser.add_argument("--requests", type=int, default=1000, help="searches per concurrency (at most 20000)")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated client counts (each at most 32)")
    parser.add_argument("--time-limit", type=float, default=120, help="seconds per concurrency, at most")
    parser.add_argument("--threads", type=int, default=4, help="server threads")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--mode", choices=["dense", "keyword", "hybrid"], help="default: the server's")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--breakdown", action="store_true", help="time the stages in process instead")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    queries = load_queries(args.dataset)

    if args.breakdown:
        figures = breakdown(args.index, queries, args.k, args.mode)
        print(json.dumps(figures) if args.json else
              "median ms per stage: " + ", ".join(f"{s} {v}" for s, v in figures.items()))
        return

    requests = min(max(args.requests, 1), 20000)
    levels = [min(max(int(c), 1), 32) for c in args.concurrency.split(",")]
    rows = []
    for concurrency in levels:
        # A fresh server per level, warmed up on other queries: no answer comes from a cache.
        proc, url = start_server(args.index, args.threads)
        try:
            load(url, BUILTIN_QUERIES, args.warmup, 1, args.k, args.mode, 60)
            rows.append(load(url, queries, requests, concurrency, args.k, args.mode, args.time_limit))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{len(queries)} distinct queries, k={args.k}, mode={args.mode or 'default'}, "
          f"server threads {args.threads}; {platform.machine()}, {date.today()}")
    print("| clients | requests | errors | p50 ms | p95 ms | p99 ms | requests/s | server took p50 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['p50_ms']} | {r['p95_ms']} | "
              f"{r['p99_ms']} | {r['requests_per_s']} | {r['server_took_p50_ms']} |")
        for e in r["first_errors"]:
            print(f"  error: {e}")


if __name__ == "__main__":
    main()
