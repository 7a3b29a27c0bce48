"""Suggestion latency (GET /api/suggest, Index.suggest) on a synthetic index: N documents of
Zipf-distributed words from a vocabulary of V, on the fake encoder (encoding is not what is
measured). Reports the vocabulary build time and p50/p95 of lookups for random prefixes of
1-6 letters, in process and through the Flask test client.

    PYTHONPATH=. python benchmarks/suggest_latency.py --documents 5000
    PYTHONPATH=. python benchmarks/suggest_latency.py --index /tmp/eval-scifact   # an existing index
    PYTHONPATH=. python benchmarks/suggest_latency.py --chunks 1000000            # the vocabulary alone
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
    parser.add_argument("--index", help="measure this existing index instead (e.g. /tmp/eval-scifact): "
                                        "prefixes of its own words")
    parser.add_argument("--chunks", type=int,
                        help="only lookups, in a vocabulary of the size this many chunks would have (no index): "
                             "a scale this machine cannot index in minutes, e.g. 1000000")
    args = parser.parse_args()
    rng = random.Random(7)
    if args.chunks:
        vocabulary_only(args, rng)
        return
    if args.index:
        index = Index.open(args.index, load_model=False)
        measure(index, rng, _words_of(index, rng), args.lookups)
        index.close()
        return
    vocab = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 11))) for _ in range(args.vocabulary)]
    weights = 1 / np.arange(1, len(vocab) + 1)
    picks = np.random.default_rng(7).choice(len(vocab), size=(args.documents, args.words), p=weights / weights.sum())
    docs = ({"id": str(i), "title": " ".join(vocab[j] for j in row[:4]).title(), "text": " ".join(vocab[j] for j in row)}
            for i, row in enumerate(picks))
    with tempfile.TemporaryDirectory() as folder:
        index = Index.create(Path(folder) / "idx", encoder=FakeEncoder())
        started = time.perf_counter()
        index.add_documents(docs)
        print(f"indexed in {time.perf_counter() - started:.0f} s")
        measure(index, rng, vocab, args.lookups)
        index.close()


def vocabulary_only(args, rng) -> None:
    """Lookups in a vocabulary of the size `args.chunks` chunks would have, built directly
    (generating and counting that much text takes longer than the lookups are worth): its
    distinct words by Heaps' law, V = 30 * sqrt(tokens) (180 words a chunk: about 400,000 at
    1,000,000 chunks), counts by Zipf's law, and a title for every second chunk."""
    from searcher.search.suggest import Vocabulary

    tokens = args.chunks * args.words
    size = int(30 * tokens ** 0.5)
    words: dict[str, int] = {}
    while len(words) < size:
        words["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 12)))] = 0
    for rank, word in enumerate(words, 1):
        words[word] = max(1, int(args.chunks / rank))
    pool = list(words)
    titles = {}
    for _ in range(args.chunks // 2):
        title = " ".join(rng.choice(pool[:5000]) for _ in range(4)).title()
        titles[title.lower()] = (title, 1)
    started = time.perf_counter()
    vocabulary = Vocabulary(words, titles)
    made = time.perf_counter() - started
    prefixes = [w[: rng.randint(1, min(6, len(w)))] for w in rng.choices(pool[:50000], k=args.lookups)]
    seconds = []
    for p in prefixes:
        t = time.perf_counter()
        vocabulary.suggest(p)
        seconds.append(time.perf_counter() - t)
    print(f"a vocabulary for {args.chunks} chunks: {len(words)} words, {len(titles)} titles "
          f"(sorted in {made:.1f} s)")
    print(f"Vocabulary.suggest  p50 {percentile(seconds, 50):.2f} ms  p95 {percentile(seconds, 95):.2f} ms")


def _words_of(index, rng) -> list[str]:
    """Words of a sample of the index's chunks: prefixes typed as its documents write them."""
    texts = [t for batch in index.store.chunk_texts() for t in batch][:20000]
    return [w for t in rng.sample(texts, min(len(texts), 2000)) for w in index.analyzer.surface_words(t) if len(w) > 2]


def measure(index, rng, vocab: list[str], lookups: int) -> None:
    started = time.perf_counter()
    index.suggest("a", fresh=True)
    build = time.perf_counter() - started
    prefixes = [w[: rng.randint(1, min(6, len(w)))] for w in rng.choices(vocab, k=lookups)]
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
    counts = index.counts()
    print(f"{counts['documents']} documents, {counts['chunks']} chunks, {len(index.queried.vocabulary())} "
          f"words; vocabulary built in {build:.2f} s")
    print(f"Index.suggest  p50 {percentile(library, 50):.2f} ms  p95 {percentile(library, 95):.2f} ms")
    print(f"/api/suggest   p50 {percentile(web, 50):.2f} ms  p95 {percentile(web, 95):.2f} ms")


if __name__ == "__main__":
    main()
