"""Soak: many search clients against `searcher serve` while a writer adds and deletes documents
through the write API, every answer checked against the generation it names.

    python benchmarks/soak.py --clients 16 --seconds 60 --out /tmp/soak.json

It builds a small index (the real default model, --documents of them, in a temporary folder),
writes a key file with an admin key, starts `searcher serve --api-keys` in its own process on a
free loopback port, then runs for --seconds: --clients threads searching (hybrid and keyword in
turn, each a query that matches the writer's documents too), and one writer posting batches of
new documents and deleting older ones of its own. Afterwards every answer is checked:

- no 5xx, no other error, no connection failure;
- consistency with one generation: an answer names a generation g, and each of its hits must
  be a document that was live at g: one of the starting documents, or a writer's document
  posted before g (its POST sent when the index was at a generation below g) and not deleted
  at or before g (its DELETE's answer names the generation that removed it).

`soak()` is the loop itself, on any server URL; tests/test_soak.py runs a short version of it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency import percentile  # noqa: E402
WORDS = ("river meadow lantern harbour comet orchard glacier violin ledger anchor beacon canyon "
         "falcon garden island jungle kettle lagoon marble nectar").split()


def words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def starting_documents(n: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"base-{i}", "title": f"Base {i}", "text": f"{words(rng, 30)}. Soak marker text."} for i in range(n)]


@dataclass
class Log:
    """What the clients saw and what the writer did, for the checks afterwards."""

    answers: list = field(default_factory=list)  # (generation, [doc ids])
    latencies: list = field(default_factory=list)  # ms of each search
    errors: list = field(default_factory=list)  # (what, detail)
    posted_below: dict = field(default_factory=dict)  # doc id -> generation before its POST was sent
    deleted_at: dict = field(default_factory=dict)  # doc id -> generation its DELETE made
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Client:
    """One keep-alive HTTP connection with the key."""

    def __init__(self, url: str, key: str):
        u = urlparse(url)
        self.host, self.port, self.key = u.hostname, u.port, key
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method: str, path: str, body=None) -> tuple[int, dict | None]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        for attempt in (0, 1):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                try:
                    return r.status, json.loads(raw)
                except ValueError:
                    return r.status, None
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def searcher_loop(url: str, key: str, log: Log, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    client = Client(url, key)
    n = 0
    while not stop.is_set():
        mode = ("hybrid", "keyword")[n % 2]
        n += 1
        query = f"soak marker {words(rng, 2)}"
        started = time.perf_counter()
        try:
            status, body = client.call("GET", f"/api/search?q={quote(query)}&k=20&mode={mode}")
        except OSError as e:
            with log.lock:
                log.errors.append(("connection", repr(e)))
            continue
        ms = (time.perf_counter() - started) * 1000
        with log.lock:
            if status != 200 or body is None:
                log.errors.append((f"search {status}", str(body)[:200]))
                continue
            log.latencies.append(ms)
            if body.get("generation") is None:
                log.errors.append(("search", "the answer names no generation"))
                continue
            log.answers.append((body["generation"], [r["doc_id"] for r in body["results"]]))


def writer_loop(url: str, key: str, log: Log, stop: threading.Event, batch: int, start_generation: int,
                seed: int = 2, pause: float = 0.05) -> None:
    rng = random.Random(seed)
    client = Client(url, key)
    generation, n, mine = start_generation, 0, []
    while not stop.is_set():
        docs = [{"id": f"w-{n + i}", "title": f"Written {n + i}", "text": f"{words(rng, 25)}. Soak marker written."}
                for i in range(batch)]
        n += batch
        with log.lock:
            for d in docs:
                log.posted_below[d["id"]] = generation
        try:
            status, body = client.call("POST", "/api/documents", docs)
        except OSError as e:
            with log.lock:
                log.errors.append(("connection", repr(e)))
            continue
        if status != 201 or body is None:
            with log.lock:
                log.errors.append((f"post {status}", str(body)[:200]))
            continue
        generation = body["generation"]
        mine.extend(d["id"] for d in docs)
        if len(mine) > 3 * batch:  # delete the oldest of its own
            victim = mine.pop(0)
            status, body = client.call("DELETE", f"/api/documents/{quote(victim)}")
            if status != 200 or body is None:
                with log.lock:
                    log.errors.append((f"delete {status}", str(body)[:200]))
            else:
                generation = body["generation"]
                with log.lock:
                    log.deleted_at[victim] = generation
        with log.lock:
            log.writes += 1
        stop.wait(pause)


def inconsistencies(log: Log, starting: set[str]) -> list[str]:
    """Each answer hit that was not live at the generation its answer names."""
    out = []
    for generation, ids in log.answers:
        for doc_id in ids:
            if doc_id in starting:
                continue
            if doc_id not in log.posted_below:
                out.append(f"generation {generation}: {doc_id!r} was never written")
            elif generation <= log.posted_below[doc_id]:
                out.append(f"generation {generation}: {doc_id!r} was posted when the index was at "
                           f"{log.posted_below[doc_id]}")
            elif doc_id in log.deleted_at and generation >= log.deleted_at[doc_id]:
                out.append(f"generation {generation}: {doc_id!r} was deleted by generation {log.deleted_at[doc_id]}")
    return out


def soak(url: str, key: str, starting: set[str], start_generation: int, clients: int, seconds: float,
         batch: int = 5) -> dict:
    """Run the clients and the writer against `url` for `seconds`; the figures and the checks."""
    log, stop = Log(), threading.Event()
    threads = [threading.Thread(target=searcher_loop, args=(url, key, log, stop, 100 + i), daemon=True)
               for i in range(clients)]
    threads.append(threading.Thread(target=writer_loop, args=(url, key, log, stop, batch, start_generation),
                                    daemon=True))
    started = time.perf_counter()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    wall = time.perf_counter() - started
    bad = inconsistencies(log, starting)
    generations = {g for g, _ in log.answers}
    return {"clients": clients, "seconds": round(wall, 1), "searches": len(log.answers),
            "searches_per_s": round(len(log.answers) / wall, 1), "writes": log.writes,
            "deleted": len(log.deleted_at), "generations_seen": len(generations),
            "p50_ms": round(percentile(log.latencies, 50), 1) if log.latencies else None,
            "p99_ms": round(percentile(log.latencies, 99), 1) if log.latencies else None,
            "errors": len(log.errors), "error_samples": log.errors[:5],
            "inconsistent": len(bad), "inconsistent_samples": bad[:5]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--documents", type=int, default=300, help="in the index at the start")
    ap.add_argument("--batch", type=int, default=5, help="documents a POST")
    ap.add_argument("--threads", type=int, default=8, help="the server's request threads")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from searcher import Index
    from searcher.web.keys import add_key

    work = Path(tempfile.mkdtemp(prefix="searcher-soak-"))
    docs = starting_documents(args.documents)
    with Index.create(work / "index", device="cpu") as index:
        index.add_documents(docs)
        start_generation = index.generation
    _, admin = add_key(work / "keys", "admin")
    server = subprocess.Popen(
        [sys.executable, "-m", "searcher", "serve", "--index", str(work / "index"), "--port", "0",
         "--threads", str(args.threads), "--api-keys", str(work / "keys"), "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        url = None
        for line in server.stdout:
            if "http://" in line:
                url = line.split("http://", 1)[1].split("/", 1)[0]
                url = "http://" + url
                threading.Thread(target=server.stdout.read, daemon=True).start()
                break
        if url is None:
            raise SystemExit("the server did not start")
        result = soak(url, admin, {d["id"] for d in docs}, start_generation, args.clients, args.seconds, args.batch)
    finally:
        server.terminate()
        server.wait(timeout=30)
    result["documents_at_start"] = args.documents
    result["server_threads"] = args.threads
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0 if result["errors"] == 0 and result["inconsistent"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
