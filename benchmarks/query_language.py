"""Search the way people type, measured on a BEIR collection (issue 25's table).

For an index built from the collection (`searcher eval DATASET --index FOLDER` builds one):

- phrase: a quoted span of 5 words copied from a document: how often that document is
  first (top-1) and MRR@10; also the same words unquoted (what the quotes add);
- title: a document's exact title typed as it is: how often a document of that title is first;
- rare token: a document's rarest word of 6+ letters (a code, a name) as the whole query;
- typo: the judged queries with one seeded typo (a deletion, insertion, substitution or
  transposition) in every word of 5+ letters: nDCG@10 against the clean queries;
- exclusion: a judged query plus `-word`, a word of its clean first hit: the share of hits
  holding the excluded word (the goal is 0), in every mode;
- nonsense: the mean top score, and the share with `close_match`, of made-up words against
  the judged queries;
- plain nDCG@10 of the judged queries in each mode (read as plain words, as `searcher eval`);
- latency: search p50/p95 in process for plain, phrase, typo and field queries.

    PYTHONPATH=. python benchmarks/query_language.py ../shared/datasets/scifact --index /tmp/eval-scifact
    PYTHONPATH=. python benchmarks/query_language.py ../shared/datasets/dbpedia-entity --index /tmp/eval-dbpedia

Everything sampled is seeded (--seed), so two runs of one code measure the same queries.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from searcher import Index  # noqa: E402
from searcher.quality.evaluate import compute_metrics, load_dataset  # noqa: E402
from searcher.search.query import fold  # noqa: E402

WORD = re.compile(r"[^\W_]+")
SPAN_WORDS = 5


def words_of(text: str) -> list[str]:
    return [fold(w) for w in WORD.findall(text)]


def typo(word: str, rng: random.Random) -> str:
    """One edit inside the word (never its first letter, as people rarely miss that)."""
    i = rng.randrange(1, len(word))
    kind = rng.choice(("delete", "insert", "substitute", "transpose"))
    letters = string.ascii_lowercase
    if kind == "delete":
        return word[:i] + word[i + 1:]
    if kind == "insert":
        return word[:i] + rng.choice(letters) + word[i:]
    if kind == "substitute":
        return word[:i] + rng.choice([c for c in letters if c != word[i].lower()]) + word[i + 1:]
    if i == len(word) - 1:
        i -= 1
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def with_typos(query: str, rng: random.Random) -> str:
    return re.sub(r"[A-Za-z]{5,}", lambda m: typo(m.group(), rng), query)


def percentiles(seconds: list[float]) -> tuple[float, float]:
    values = np.array(seconds) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def timed(index: Index, query: str, **options):
    started = time.perf_counter()
    hits = index.search(query, **options)
    return hits, time.perf_counter() - started


def phrase_figures(index, corpus, rng, n, mode):
    docs = [d for d in corpus if len(d["text"].split()) >= 3 * SPAN_WORDS]
    top1 = rr = plain_top1 = plain_rr = 0.0
    seconds = []
    for doc in rng.sample(docs, n):
        tokens = doc["text"].replace('"', " ").split()
        start = rng.randrange(0, len(tokens) - SPAN_WORDS)
        span = " ".join(tokens[start:start + SPAN_WORDS])
        for quoted in (True, False):
            hits, took = timed(index, f'"{span}"' if quoted else span, k=10, mode=mode, syntax=quoted)
            ids = [h.doc_id for h in hits]
            rank = ids.index(doc["id"]) + 1 if doc["id"] in ids else None
            if quoted:
                seconds.append(took)
                top1 += rank == 1
                rr += 1 / rank if rank else 0
            else:
                plain_top1 += rank == 1
                plain_rr += 1 / rank if rank else 0
    return {"phrase_top1": top1 / n, "phrase_mrr10": rr / n, "unquoted_top1": plain_top1 / n,
            "unquoted_mrr10": plain_rr / n}, seconds


def title_figures(index, corpus, rng, n, mode):
    titled = [d for d in corpus if len(words_of(d["title"])) >= 2]
    first = 0
    for doc in rng.sample(titled, n):
        hits = index.search(doc["title"], k=1, mode=mode)
        first += bool(hits) and words_of(hits[0].title) == words_of(doc["title"])
    return {"title_top1": first / n}


def rare_token_figures(index, corpus, rng, n, mode):
    counts: dict[str, int] = {}
    for d in corpus:
        for w in set(words_of(d["title"] + " " + d["text"])):
            counts[w] = counts.get(w, 0) + 1
    first = asked = 0
    for doc in rng.sample(corpus, min(len(corpus), 4 * n)):
        rare = [w for w in set(words_of(doc["text"])) if counts[w] == 1 and len(w) >= 6 and not w.isdigit()]
        if not rare:
            continue
        hits = index.search(sorted(rare)[0], k=1, mode=mode)
        first += bool(hits) and hits[0].doc_id == doc["id"]
        asked += 1
        if asked == n:
            break
    return {"rare_token_top1": first / max(asked, 1), "rare_token_queries": asked}


def run_of(index, queries, mode, syntax=True):
    run, seconds = {}, []
    for qid, text in queries.items():
        hits, took = timed(index, text, k=100, mode=mode, syntax=syntax)
        run[qid] = [h.doc_id for h in hits]
        seconds.append(took)
    return run, seconds


def exclusion_figures(index, queries, rng, n, modes):
    out = {}
    sample = rng.sample(sorted(queries.items()), min(n, len(queries)))
    for mode in modes:
        held = total = 0
        for _, text in sample:
            first = index.search(text, k=1, mode=mode, syntax=False)
            if not first:
                continue
            asked = set(words_of(text))
            candidates = [w for w in dict.fromkeys(words_of(first[0].passage)) if len(w) >= 5 and w not in asked]
            if not candidates:
                continue
            word = candidates[0]
            for hit in index.search(f"{text} -{word}", k=10, mode=mode):
                total += 1
                held += word in set(words_of((hit.title or "") + " " + (index.get_document(hit.doc_id) or {}).get("text", "")))
        out[f"exclusion_violations_{mode}"] = held / max(total, 1)
    return out


def score_figures(index, queries, rng, n, mode):
    def pseudo():
        return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(5, 8)))
                        for _ in range(rng.randint(1, 3)))

    def top(text):
        hits = index.search(text, k=1, mode=mode, syntax=False)
        return hits

    real = [top(t) for t in rng.sample(sorted(queries.values()), min(n, len(queries)))]
    fake = [top(pseudo()) for _ in range(n)]

    def mean_score(found):
        return float(np.mean([h[0].score if h else 0.0 for h in found]))

    def mean_cosine(found):  # the score shown beside the fused one (before issue 25: none)
        values = [h[0].cosine for h in found if h and getattr(h[0], "cosine", None) is not None]
        return float(np.mean(values)) if values else float("nan")

    def close(found):  # a search before close_match existed reads as close
        return float(np.mean([bool(getattr(h, "close_match", True)) for h in found]))

    return {"real_top_score": mean_score(real), "nonsense_top_score": mean_score(fake),
            "real_top_cosine": mean_cosine(real), "nonsense_top_cosine": mean_cosine(fake),
            "real_close_match": close(real), "nonsense_close_match": close(fake)}


class Figures(dict):
    """The figures so far: each printed as it comes, and the file rewritten (a long run that
    fails late keeps what it measured)."""

    def __init__(self, path: str | None):
        super().__init__()
        self.path = path

    def __setitem__(self, name, value):
        super().__setitem__(name, value)
        shown = f"{value:.4f}" if isinstance(value, float) else value
        print(f"{name:<28}  {shown}", flush=True)
        if self.path:
            Path(self.path).write_text(json.dumps(self, indent=2) + "\n")

    def update(self, other):
        for name, value in other.items():
            self[name] = value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset")
    parser.add_argument("--index", required=True, help="an index built from the dataset (searcher eval --index)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--spans", type=int, default=200)
    parser.add_argument("--titles", type=int, default=300)
    parser.add_argument("--sample", type=int, default=100, help="queries for exclusions, tokens and scores")
    parser.add_argument("--seed", type=int, default=25)
    parser.add_argument("--json", dest="json_out", help="write the figures here too")
    args = parser.parse_args()

    data = load_dataset(args.dataset, args.split)
    corpus = [d for d in data.corpus if d["text"].strip()]
    index = Index.open(args.index)
    figures = Figures(args.json_out)
    figures.update({"dataset": Path(args.dataset).name, "documents": len(index), "queries": len(data.queries)})
    mode = "hybrid"
    latency = {}

    found, seconds = phrase_figures(index, corpus, random.Random(args.seed), args.spans, mode)
    figures.update(found)
    latency["phrase"] = percentiles(seconds)
    figures.update(title_figures(index, corpus, random.Random(args.seed), min(args.titles, len(corpus)), mode))
    figures.update(rare_token_figures(index, corpus, random.Random(args.seed), args.sample, mode))

    for each in ("dense", "keyword", "hybrid"):
        run, seconds = run_of(index, data.queries, each, syntax=False)
        figures[f"plain_ndcg10_{each}"] = compute_metrics(data.qrels, run)["nDCG@10"]
        if each == mode:
            latency["plain"] = percentiles(seconds)
    run, _ = run_of(index, data.queries, mode)
    figures["clean_ndcg10"] = compute_metrics(data.qrels, run)["nDCG@10"]
    rng = random.Random(args.seed)
    typed = {q: with_typos(t, rng) for q, t in data.queries.items()}
    run, seconds = run_of(index, typed, mode)
    figures["typo_ndcg10"] = compute_metrics(data.qrels, run)["nDCG@10"]
    figures["typo_queries_changed"] = sum(typed[q] != data.queries[q] for q in typed)
    latency["typo"] = percentiles(seconds)

    field_queries = {}
    for qid, text in sorted(data.queries.items())[: args.sample]:
        words = [w for w in words_of(text) if len(w) >= 4]
        if words:
            field_queries[qid] = f"title:{words[0]} {text}"
    _, seconds = run_of(index, field_queries, mode)
    latency["field"] = percentiles(seconds)

    figures.update(exclusion_figures(index, data.queries, random.Random(args.seed), args.sample,
                                     ("dense", "keyword", "hybrid")))
    figures.update(score_figures(index, data.queries, random.Random(args.seed), args.sample, mode))
    figures["latency_ms"] = {name: {"p50": round(p50, 2), "p95": round(p95, 2)} for name, (p50, p95) in latency.items()}
    index.close()


if __name__ == "__main__":
    main()
