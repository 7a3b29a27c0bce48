"""Request latency of GET /api/search against a real `searcher serve` process on loopback.

    python benchmarks/web_latency.py --index /tmp/web-pyd --requests 300 [--concurrency 4]

Starts the server on a free 127.0.0.1 port, sends a few warm-up searches, then `--requests`
searches (cycling through varied queries, keep-alive connections, `--concurrency` clients)
and prints client-side p50/p95/p99 with the server's own `took_ms` beside them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parents[1]
QUERIES = [
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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def start_server(index: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "searcher", "serve", "--index", index, "--host", "127.0.0.1", "--port", "0"],
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


def run(url: str, requests: int, concurrency: int, k: int) -> tuple[list[float], list[float]]:
    host = urlparse(url)
    local = threading.local()
    latencies, server_ms = [], []
    lock = threading.Lock()

    def one(i: int) -> None:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection(host.hostname, host.port, timeout=60)
        path = "/api/search?" + urlencode({"q": QUERIES[i % len(QUERIES)], "k": k})
        started = time.perf_counter()
        local.conn.request("GET", path)
        response = local.conn.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - started) * 1000
        if response.status != 200:
            raise RuntimeError(f"{path}: HTTP {response.status} {body[:200]!r}")
        with lock:
            latencies.append(elapsed)
            server_ms.append(json.loads(body)["took_ms"])

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    return latencies, server_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="indexes/default")
    parser.add_argument("--requests", type=int, default=300, help="measured requests (at most 5000)")
    parser.add_argument("--concurrency", type=int, default=1, help="simultaneous clients (at most 16)")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    requests, concurrency = min(max(args.requests, 1), 5000), min(max(args.concurrency, 1), 16)

    proc, url = start_server(args.index)
    try:
        run(url, args.warmup, 1, args.k)
        started = time.perf_counter()
        latencies, server_ms = run(url, requests, concurrency, args.k)
        wall = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    figures = {
        "requests": requests, "concurrency": concurrency, "k": args.k,
        "p50_ms": round(percentile(latencies, 50), 1), "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1), "mean_ms": round(statistics.fmean(latencies), 1),
        "max_ms": round(max(latencies), 1), "server_took_p50_ms": round(percentile(server_ms, 50), 1),
        "server_took_p95_ms": round(percentile(server_ms, 95), 1),
        "requests_per_s": round(requests / wall, 1),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{requests} searches, {concurrency} client(s), k={args.k}: "
              f"p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, p99 {figures['p99_ms']} ms, "
              f"max {figures['max_ms']} ms; server-side took_ms p50 {figures['server_took_p50_ms']}, "
              f"p95 {figures['server_took_p95_ms']}; {figures['requests_per_s']} requests/s")


if __name__ == "__main__":
    main()
