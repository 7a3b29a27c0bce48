"""Suggestion latency (GET /api/suggest, Index.suggest) on a synthetic index: N documents of
Zipf-distributed words from a vocabulary of V, on the fake encoder (encoding is not what is
measured). Reports the vocabulary build time and p50/p95 of lookups for random prefixes of
1-6 letters, in process and through the Flask test client.

    PYTHONPATH=. python benchmarks/suggest_latency.py --documents 5000
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searcher import Index  # noqa: E402
from searcher.web import create_app  # noqa: E402
from tests.fake_encoder import FakeEncoder  # noqa: E402


def percentile(values, q):
    return float(np.percentile(np.array(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=5000)
    parser.add_argument("--vocabulary", type=int, default=40000)
    parser.add_argument("--words", type=int, default=180, help="words a document")
    parser.add_argument("--lookups", type=int, default=2000)
    args = parser.parse_args()
    rng = random.Random(7)
    vocab = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 11))) for _ in range(args.vocabulary)]
    weights = 1 / np.arange(1, len(vocab) + 1)
    picks = np.random.default_rng(7).choice(len(vocab), size=(args.documents, args.words), p=weights / weights.sum())
    docs = [{"id": str(i), "title": " ".join(vocab[j] for j in row[:4]).title(), "text": " ".join(vocab[j] for j in row)}
            for i, row in enumerate(picks)]
    with tempfile.TemporaryDirectory() as folder:
        index = Index.create(Path(folder) / "idx", encoder=FakeEncoder())
        index.add_documents(docs)
        started = time.perf_counter()
        index.suggest("a", fresh=True)
        build = time.perf_counter() - started
        prefixes = [w[: rng.randint(1, min(6, len(w)))] for w in rng.choices(vocab, k=args.lookups)]
        library = []
        for p in prefixes:
            t = time.perf_counter()
            index.suggest(p)
            library.append(time.perf_counter() - t)
        client = create_app(index).test_client()
        web = []
        for p in prefixes:
            t = time.perf_counter()
            assert client.get("/api/suggest", query_string={"q": p}).status_code == 200
            web.append(time.perf_counter() - t)
        chunks = index.counts()["chunks"]
        print(f"{args.documents} documents, {chunks} chunks, {len(index.queried.vocabulary())} "
              f"words; vocabulary built in {build:.2f} s")
        print(f"Index.suggest  p50 {percentile(library, 50):.2f} ms  p95 {percentile(library, 95):.2f} ms")
        print(f"/api/suggest   p50 {percentile(web, 50):.2f} ms  p95 {percentile(web, 95):.2f} ms")
        index.close()


if __name__ == "__main__":
    main()
