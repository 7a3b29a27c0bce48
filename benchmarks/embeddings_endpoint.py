"""POST /v1/embeddings under load: a real `searcher serve` process on loopback, 1, 4 and 16 clients.

    python benchmarks/embeddings_endpoint.py [--dataset ../shared/datasets/scifact] [--index DIR]
        [--clients 1,4,16] [--shapes 1,64] [--seconds 20] [--rounds 2] [--batch-wait-ms 0]
        [--device cpu|cuda] [--threads 16]

Builds a small index of the dataset's first --docs documents (unless --index names one), starts
`searcher serve` on a free 127.0.0.1 port with --threads request threads, and for each request
shape (1: one sentence a request; 64: 64 texts a request) and client count sends requests from
that many keep-alive clients (threads of this process; `encoding_format` base64, as the `openai`
client asks) for --seconds, cycling through the dataset's queries (short claims, about 20
tokens each) so that every request holds different texts. Rounds repeat every cell, the
client counts in a rotating order, so that load from other processes falls on all alike.

--in-process measures the encode queue alone instead (searcher/encoding/queries.py, no HTTP):
threads of this process call `EncodeQueue.encode` with the same requests, --requests of each
shape per cell, and it prints requests/s and the encoder passes per request.

Per cell: requests/s, texts/s, p50/p95 latency in ms, "x 1 client": throughput against the
same requests sent one at a time by a single client (the 1-client row of the same shape),
which is what a caller without concurrency gets, and the CPU time per request of the server
process and of the clients (this process: they share the machine's cores with the server, so
on a small machine their cost is part of what a cell measures). In process, the CPU time per
request is the queue's and encoder's alone: the difference to the server's is what HTTP costs. Several --batch-wait-ms values (comma-separated)
each get their own server and rows.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency import percentile, start_server  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, all threads) of this process, or of `pid` (Linux /proc)."""
    if pid is None:
        return time.process_time()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def load(url: str, texts: list[str], shape: int, clients: int, seconds: float, offset: int,
         server_pid: int | None = None) -> dict:
    """Requests of `shape` texts from `clients` clients for `seconds`; latencies in ms, and the
    CPU seconds the server (`server_pid`) and this process spent meanwhile."""
    host = urlparse(url)
    latencies, errors = [], []
    lock = threading.Lock()
    counter = iter(range(offset, 10**9))
    stop_at = time.monotonic() + seconds

    def client() -> None:
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=300)
        while time.monotonic() < stop_at:
            with lock:
                i = next(counter)
            batch = [texts[(i * shape + j) % len(texts)] for j in range(shape)]
            body = json.dumps({"input": batch if shape > 1 else batch[0], "encoding_format": "base64"})
            started = time.perf_counter()
            try:
                conn.request("POST", "/v1/embeddings", body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection(host.hostname, host.port, timeout=300)
                with lock:
                    errors.append(repr(e))
                continue
            elapsed = (time.perf_counter() - started) * 1000
            with lock:
                if response.status != 200:
                    errors.append(f"HTTP {response.status}: {data[:200]!r}")
                else:
                    latencies.append(elapsed)
        conn.close()

    started = time.perf_counter()
    own, served = cpu_seconds(), cpu_seconds(server_pid) if server_pid else 0.0
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "wall": wall, "client_cpu": cpu_seconds() - own,
            "server_cpu": cpu_seconds(server_pid) - served if server_pid else 0.0}


def in_process(texts: list[str], shapes: list[int], clients: list[int], rounds: int, requests: int,
               wait_ms: float, device: str) -> None:
    """The queue without HTTP: requests/s and passes per request for each shape and client count."""
    from searcher.encoding.encoder import get_encoder
    from searcher.encoding.queries import EncodeQueue

    encoder = get_encoder(None, device)
    queue = EncodeQueue(encoder, max_wait_ms=wait_ms)
    figures: dict = {}

    def run(c: int, shape: int, n: int) -> tuple[float, float, float]:
        counter, lock = iter(range(n)), threading.Lock()

        def client():
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                batch = [texts[(i * shape + j) % len(texts)] for j in range(shape)]
                queue.encode(lambda: encoder.model_inputs(batch), len(batch))

        passes, started, cpu = queue.batches, time.perf_counter(), cpu_seconds()
        threads = [threading.Thread(target=client) for _ in range(c)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return n / (time.perf_counter() - started), (queue.batches - passes) / n, (cpu_seconds() - cpu) * 1000 / n

    run(1, 8, 2)  # warm-up
    for r in range(rounds):
        for shape in shapes:
            n = max(4, requests // shape)
            for c in clients[r % len(clients):] + clients[: r % len(clients)]:
                rps, passes, cpu_ms = run(c, shape, n)
                figures.setdefault((shape, c), []).append((rps, passes, cpu_ms))
                print(f"round {r + 1}: {shape} texts x {c} clients: {rps:.1f} requests/s", file=sys.stderr, flush=True)
    print(f"\nEncodeQueue in process (no HTTP), device {device}, batch wait {wait_ms:g} ms, {rounds} rounds, "
          f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print("| texts/request | clients | requests/s | texts/s | passes/request | x 1 client | CPU ms/request |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for (shape, c), rows in figures.items():
        rps = sum(r[0] for r in rows) / len(rows)
        one = sum(r[0] for r in figures[(shape, min(clients))]) / len(rows)
        passes = sum(r[1] for r in rows) / len(rows)
        cpu_ms = sum(r[2] for r in rows) / len(rows)
        print(f"| {shape} | {c} | {rps:.1f} | {rps * shape:.0f} | {passes:.2f} | {rps / one:.2f} | {cpu_ms:.1f} |")


def build_index(dataset: Path, docs: int, folder: Path, device: str) -> None:
    rows = [line for line in (dataset / "corpus.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    corpus = folder.parent / "corpus.jsonl"
    corpus.write_text("\n".join(rows[:docs]) + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "searcher", "index", str(corpus), "--index", str(folder),
                    "--device", device, "--json"], cwd=ROOT, check=True, capture_output=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    ap.add_argument("--index", type=Path, help="an index to serve (default: one of --docs documents, built here)")
    ap.add_argument("--docs", type=int, default=50)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--shapes", default="1,64", help="texts per request (comma-separated)")
    ap.add_argument("--seconds", type=float, default=20, help="seconds per cell and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-wait-ms", default="0", help="the server's --batch-wait-ms (comma-separated: one server each)")
    ap.add_argument("--threads", type=int, default=16, help="server request threads")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--in-process", action="store_true", help="the encode queue alone, without HTTP")
    ap.add_argument("--requests", type=int, default=400, help="--in-process: texts per cell (requests x texts)")
    args = ap.parse_args(argv)
    texts = list(dict.fromkeys(json.loads(line)["text"] for line in
                               (args.dataset / "queries.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()))
    clients = [int(c) for c in args.clients.split(",")]
    shapes = [int(s) for s in args.shapes.split(",")]
    waits = [float(w) for w in args.batch_wait_ms.split(",")]
    if args.in_process:
        device = "cpu" if args.device == "auto" else args.device
        for wait in waits:
            in_process(texts, shapes, clients, args.rounds, args.requests, wait, device)
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as tmp:
        index = args.index
        if index is None:
            index = Path(tmp) / "index"
            build_index(args.dataset, args.docs, index, args.device)
        for wait in waits:
            proc, url = start_server(str(index), args.threads, "--batch-wait-ms", str(wait), "--device", args.device)
            try:
                load(url, texts[-200:], 8, 2, 3, 0)  # warm-up (texts not used below... mostly)
                cells = {(s, c): {"latencies": [], "errors": [], "wall": 0.0, "client_cpu": 0.0, "server_cpu": 0.0}
                         for s in shapes for c in clients}
                offset = 0
                for r in range(args.rounds):
                    for shape in shapes:
                        for c in clients[r % len(clients):] + clients[: r % len(clients)]:
                            out = load(url, texts, shape, c, args.seconds, offset, proc.pid)
                            offset += len(out["latencies"]) + len(out["errors"])
                            cell = cells[(shape, c)]
                            cell["latencies"] += out["latencies"]
                            cell["errors"] += out["errors"]
                            for key in ("wall", "client_cpu", "server_cpu"):
                                cell[key] += out[key]
                            print(f"wait {wait:g} ms, round {r + 1}: {shape} texts x {c} clients: "
                                  f"{len(out['latencies']) / out['wall']:.1f} requests/s", file=sys.stderr, flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            for (shape, c), cell in cells.items():
                lat = cell["latencies"]
                rps = len(lat) / cell["wall"] if cell["wall"] else 0.0
                results.append({"batch_wait_ms": wait, "texts": shape, "clients": c, "requests": len(lat),
                                "errors": len(cell["errors"]), "requests_per_s": rps, "texts_per_s": rps * shape,
                                "p50_ms": percentile(lat, 50) if lat else None,
                                "p95_ms": percentile(lat, 95) if lat else None,
                                "server_cpu_ms": cell["server_cpu"] * 1000 / len(lat) if lat else None,
                                "client_cpu_ms": cell["client_cpu"] * 1000 / len(lat) if lat else None,
                                "first_errors": cell["errors"][:3]})
    print(f"\nPOST /v1/embeddings, `searcher serve --threads {args.threads} --device {args.device}`, "
          f"{platform.machine()}, {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, "
          f"{args.rounds} rounds of {args.seconds:g} s a cell, client counts alternating")
    print("| batch wait ms | texts/request | clients | requests | requests/s | texts/s | p50 ms | p95 ms | x 1 client "
          "| server CPU ms/request | client CPU ms/request | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in results:
        one = next(r for r in results if r["batch_wait_ms"] == row["batch_wait_ms"] and r["texts"] == row["texts"]
                   and r["clients"] == min(clients))
        ratio = row["requests_per_s"] / one["requests_per_s"] if one["requests_per_s"] else float("nan")
        p50 = f"{row['p50_ms']:.1f}" if row["p50_ms"] is not None else "-"
        p95 = f"{row['p95_ms']:.1f}" if row["p95_ms"] is not None else "-"
        cpu = [f"{row[k]:.1f}" if row[k] is not None else "-" for k in ("server_cpu_ms", "client_cpu_ms")]
        print(f"| {row['batch_wait_ms']:g} | {row['texts']} | {row['clients']} | {row['requests']} | "
              f"{row['requests_per_s']:.1f} | {row['texts_per_s']:.0f} | {p50} | {p95} | {ratio:.2f} | {cpu[0]} | "
              f"{cpu[1]} | {row['errors']} |")
        for e in row["first_errors"]:
            print(f"  error: {e}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
