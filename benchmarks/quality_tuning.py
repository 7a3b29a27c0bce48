"""The exploration behind the hybrid and keyword defaults (the tables in benchmarks/README.md,
"Quality: how the defaults were chosen"). One-off measurements, kept so they can be re-run:

    python benchmarks/quality_tuning.py keyword --index indexes/scifact --split train
    python benchmarks/quality_tuning.py fusion --index indexes/scifact

`keyword` copies the chunks into an in-memory database and tries FTS5 tokenizers, stop-word
lists and per-document rows. `fusion` scores every document for every judged query (test and
train) once, then tries fusion methods, weights and candidate depths offline. Both need an
index of the collection (build one with benchmarks/quality.py).
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from searcher.storage.keywords import base as st  # noqa: E402
from searcher.quality.evaluate import compute_metrics, load_dataset  # noqa: E402
from searcher.search.fusion import normalise, reciprocal_rank_fusion, score_fusion  # noqa: E402

NLTK_STOP_WORDS = set(
    "i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her "
    "hers herself it its itself they them their theirs themselves what which who whom this that these "
    "those am is are was were be been being have has had having do does did doing a an the and but if or "
    "because as until while of at by for with about against between into through during before after "
    "above below to from up down in out on off over under again further then once here there when where "
    "why how all any both each few more most other some such no nor not only own same so than too very s "
    "t can will just don should now".split()
)
WORD = re.compile(r"[^\W_]+")


def keyword_variants(args) -> None:
    db = sqlite3.connect(":memory:")
    db.execute("attach ? as s", [str(args.index / "content.db")])
    db.execute("create table chunks (id integer primary key, doc_id text, text text)")
    db.execute("insert into chunks select id, doc_id, text from s.chunks")
    db.execute("create table documents (id text primary key, title text, text text)")
    db.execute("insert into documents select id, title, text from s.documents")
    ds = load_dataset(args.dataset, args.split)
    variants = {
        "porter, chunk rows": ("porter unicode61 remove_diacritics 2", "chunks"),
        "unicode61, chunk rows": ("unicode61 remove_diacritics 2", "chunks"),
        "porter, document rows": ("porter unicode61 remove_diacritics 2", "documents"),
    }
    stops = {"none": set(), "classic 33": set(st.STOP_WORDS), "NLTK 179": NLTK_STOP_WORDS}
    for i, (name, (tokenize, rows)) in enumerate(variants.items()):
        t = f"f{i}"
        db.execute(f"create virtual table {t} using fts5(title, text, tokenize='{tokenize}')")
        if rows == "chunks":
            db.execute(f"insert into {t}(rowid, title, text) select c.id, d.title, c.text "
                       "from chunks c join documents d on d.id = c.doc_id")
            sql = (f"select c.doc_id from {t} f join chunks c on c.id = f.rowid where {t} match ? "
                   f"order by bm25({t}) limit 2000")
        else:
            db.execute(f"insert into {t}(rowid, title, text) select rowid, title, text from documents")
            sql = (f"select d.id from {t} f join documents d on d.rowid = f.rowid where {t} match ? "
                   f"order by bm25({t}) limit 2000")
        for stop_name, stop in stops.items():
            started = time.perf_counter()
            run = {}
            for qid, text in ds.queries.items():
                words = list(dict.fromkeys(w.lower() for w in WORD.findall(text)))
                words = [w for w in words if w not in stop] or words
                expr = " OR ".join(f'"{w}"' for w in words)
                ranked = list(dict.fromkeys(d for (d,) in db.execute(sql, [expr])))
                run[qid] = ranked[:100]
            report(f"{name}; stop words: {stop_name}", args.split, compute_metrics(ds.qrels, run),
                   time.perf_counter() - started)


def fusion_variants(args) -> None:
    from searcher import Index

    index = Index.open(args.index, device=args.device)
    chunk_ids, matrix = index.vectors.export()  # exact vectors (flat, hnsw and ivf indexes)
    owner = dict(index.store.db.execute("select id, doc_id from chunks").fetchall())
    docs = sorted(set(owner.values()))
    position = {d: i for i, d in enumerate(docs)}
    row_doc = np.array([position[owner[int(c)]] for c in chunk_ids])
    splits = {}
    for split in ("test", "train"):
        ds = load_dataset(args.dataset, split)
        qids = list(ds.queries)
        qv = index.encoder.encode([ds.queries[q] for q in qids], batch_size=64)
        sims = matrix @ qv.T
        data = {}
        for j, q in enumerate(qids):
            dense = np.full(len(docs), -np.inf, dtype=np.float32)
            np.maximum.at(dense, row_doc, sims[:, j])  # a document scores as its best chunk
            keyword: dict[str, float] = {}
            for cid, score in index.keywords.search(index.store, ds.queries[q], 1_000_000):
                keyword.setdefault(owner[cid], score)
            data[q] = (dense, keyword)
        splits[split] = (ds.qrels, data)
    names = np.array(docs)

    def dense_top(dense, n):
        order = np.argsort(-dense, kind="stable")[:n]
        return {names[i]: float(dense[i]) for i in order}

    def keyword_top(keyword, n):
        return dict(list(keyword.items())[:n])

    def complete(dense, keyword, depth, weight, method):
        cands = list(dict.fromkeys([*dense_top(dense, depth), *keyword_top(keyword, depth)]))
        nd = normalise({c: float(dense[position[c]]) for c in cands}, method)
        nk = normalise({c: keyword.get(c, 0.0) for c in cands}, method)
        fused = {c: weight * nd[c] + (1 - weight) * nk[c] for c in cands}
        return dict(sorted(fused.items(), key=lambda x: -x[1]))

    def show(name, fn):
        for split, (qrels, data) in splits.items():
            run = {q: list(fn(dense, keyword))[:100] for q, (dense, keyword) in data.items()}
            report(name, split, compute_metrics(qrels, run))

    show("dense", lambda d, k: dense_top(d, 100))
    show("keyword", lambda d, k: keyword_top(k, 100))
    for depth in (100, 1000):
        for rrf_k in (10, 20, 60, 100):
            show(f"rrf k={rrf_k}, depth {depth}",
                 lambda d, k: reciprocal_rank_fusion([dense_top(d, depth), keyword_top(k, depth)], k=rrf_k))
        for method in ("minmax", "zscore"):
            for w in (0.3, 0.4, 0.5, 0.6, 0.7):
                show(f"{method} dense weight {w}, depth {depth}",
                     lambda d, k: score_fusion([dense_top(d, depth), keyword_top(k, depth)], [w, 1 - w], method))
    for method in ("minmax", "zscore"):
        for w in (0.4, 0.5, 0.6):
            show(f"{method} dense weight {w}, depth 100, missing scores computed",
                 lambda d, k: complete(d, k, 100, w, method))


def report(name, split, metrics, seconds=None) -> None:
    figures = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
    print(f"{split:>5}  {name:55s} {figures}" + (f"  {seconds:.1f}s" if seconds is not None else ""), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["keyword", "fusion"])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    ap.add_argument("--index", type=Path, default=ROOT / "indexes" / "scifact")
    ap.add_argument("--split", default="test", help="judgements for `keyword` (fusion runs test and train)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    keyword_variants(args) if args.what == "keyword" else fusion_variants(args)


if __name__ == "__main__":
    main()
