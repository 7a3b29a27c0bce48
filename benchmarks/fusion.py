"""Fusion candidates across collections (issue 13): one dense and one keyword run per judged
query, cached, then every fusion rule scored offline on the cached lists.

    python benchmarks/fusion.py scifact=INDEX_DIR dbpedia-entity=INDEX_DIR
    python benchmarks/fusion.py ... --cache /tmp/fusion-runs   # where the runs are kept (JSON)

Each NAME=INDEX pairs a collection under --datasets (../shared/datasets) with an index built
from it (benchmarks/quality.py builds one). Every judged query goes once through
`Index.search(q, k=200, mode="dense")` and `mode="keyword"`; the two lists (doc ids with
scores, best first) are stored as NAME.json in --cache and reused on the next run. The
candidates then fuse the first `depth` of each list in pure Python and are scored with
searcher.quality.evaluate.compute_metrics (nDCG@10, Recall@100), so the whole table takes seconds.
The default's row runs searcher.search.fusion.Fusion() itself, so the table checks the shipped code.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from searcher.quality.evaluate import compute_metrics, load_dataset  # noqa: E402
from searcher.search.fusion import (Fusion, adaptive_fusion, keyword_confidence, reciprocal_rank_fusion,  # noqa: E402
                             score_fusion)
from searcher.sanitize import is_blank  # noqa: E402

RUN_DEPTH = 200  # documents cached per list: enough for every depth tried
Lists = list[tuple[str, float]]  # (doc id, score), best first


def cached_runs(name: str, dataset: Path, index_dir: Path, cache: Path, split: str = "test") -> dict:
    path = cache / (f"{name}.json" if split == "test" else f"{name}.{split}.json")
    if path.exists():
        return json.loads(path.read_text())
    from searcher import Index

    ds = load_dataset(dataset, split)
    index = Index.open(index_dir)
    runs: dict[str, dict[str, Lists]] = {}
    started = time.perf_counter()
    try:
        for qid, text in ds.queries.items():
            runs[qid] = {mode: [] if is_blank(text) else
                         [(h.doc_id, float(h.score)) for h in index.search(text, k=RUN_DEPTH, mode=mode)]
                         for mode in ("dense", "keyword")}
    finally:
        index.close()
    print(f"{name} ({split}): {len(runs)} queries run in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"qrels": ds.qrels, "runs": runs}))
    return {"qrels": ds.qrels, "runs": runs}


# -- candidates: (dense list, keyword list) -> {doc id: fused score}, best first ------------

def _sorted(fused: dict[str, float]) -> dict[str, float]:
    return dict(sorted(fused.items(), key=lambda item: -item[1]))


def scaled_fusion(dense: dict, keyword: dict, weight: float, floors: tuple[float | None, float | None]):
    """Weighted sum of each list's scores mapped to [floor, max] -> [0, 1]: floor None is the list's
    own minimum (min-max), a number is a theoretical floor. A missing doc gets the list's lowest value."""
    normed = []
    for run, floor in zip((dense, keyword), floors):
        if not run:
            normed.append(({}, 0.0))
            continue
        hi = max(run.values())
        lo = min(run.values()) if floor is None else floor
        span = hi - lo
        n = {d: (s - lo) / span if span > 0 else 1.0 for d, s in run.items()}
        normed.append((n, min(n.values())))
    docs = dict.fromkeys([*dense, *keyword])
    w = (weight, 1 - weight)
    return _sorted({d: sum(wi * n.get(d, floor) for wi, (n, floor) in zip(w, normed)) for d in docs})


def rank_fusion(dense: dict, keyword: dict, weight: float, depth: int):
    """Rank-based normalisation: a list's rank r (from 1) scores 1 - (r - 1) / depth; absent, 0."""
    fused: dict[str, float] = {}
    for run, w in zip((dense, keyword), (weight, 1 - weight)):
        for r, d in enumerate(run, 1):
            fused[d] = fused.get(d, 0.0) + w * (1 - (r - 1) / depth)
    return _sorted(fused)


def peakedness(run: dict, top: int = 10) -> float:
    """How far the first few scores stand above the rest: (s1 - mean of the top 10) / (s1 - last), in [0, 1]."""
    values = list(run.values())
    if len(values) < 2 or values[0] == values[-1]:
        return 0.0
    return (values[0] - statistics.fmean(values[:top])) / (values[0] - values[-1])


def peaked_weight(dense: dict, keyword: dict) -> float:
    """Dense weight in proportion to the two lists' peakedness (0.5 when neither is peaked)."""
    pd, pk = peakedness(dense), peakedness(keyword)
    return 0.5 if pd + pk == 0 else pd / (pd + pk)


def agreement_weight(dense: dict, keyword: dict, top: int = 10) -> float:
    """Even weights when the two top-10s agree, leaning to dense (up to 0.75) as they disagree."""
    a, b = list(dense)[:top], list(keyword)[:top]
    overlap = len(set(a) & set(b)) / max(1, min(len(a), len(b)))
    return 0.5 + 0.25 * (1 - overlap)


def candidates() -> list[tuple[str, int, Callable]]:
    """(name, depth, fuse) for every rule measured."""
    out: list[tuple[str, int, Callable]] = [
        ("dense", 100, lambda d, k: d),
        ("keyword", 100, lambda d, k: k),
    ]
    for w in (0.5, 0.6, 0.7, 0.8):
        out.append((f"min-max {w:g}/{1 - w:g}", 100, lambda d, k, w=w: score_fusion([d, k], [w, 1 - w], "minmax")))
    for w in (0.5, 0.6, 0.7):
        out.append((f"z-score {w:g}/{1 - w:g}", 100, lambda d, k, w=w: score_fusion([d, k], [w, 1 - w], "zscore")))
    for rk in (10, 30, 60, 100):
        out.append((f"RRF k={rk}", 100, lambda d, k, rk=rk: reciprocal_rank_fusion([d, k], k=rk)))
    for rk in (10, 60):
        out.append((f"RRF k={rk}, weights 0.6/0.4", 100,
                    lambda d, k, rk=rk: reciprocal_rank_fusion([d, k], k=rk, weights=[0.6, 0.4])))
    for w in (0.5, 0.6, 0.7):
        out.append((f"rank-normalised {w:g}/{1 - w:g}", 100, lambda d, k, w=w: rank_fusion(d, k, w, 100)))
    for floor in (0.0, -1.0):
        for w in (0.5, 0.6, 0.7):
            out.append((f"theoretical-min (cos {floor:g}, BM25 0) {w:g}/{1 - w:g}", 100,
                        lambda d, k, w=w, f=floor: scaled_fusion(d, k, w, (f, 0.0))))
    out.append(("min-max, per-query weight by peakedness", 100,
                lambda d, k: scaled_fusion(d, k, peaked_weight(d, k), (None, None))))
    out.append(("min-max, per-query weight by agreement", 100,
                lambda d, k: scaled_fusion(d, k, agreement_weight(d, k), (None, None))))
    # The chosen family: per query, keyword weight c = (s1 - s_n) / s1 of its BM25 list, dense 1 - c.
    for n in (5, 10, 20):
        out.append((f"max-normalised, keyword weight (s1 - s{n}) / s1", 100,
                    lambda d, k, n=n: scaled_fusion(d, k, 1 - keyword_confidence(k, n), (0.0, 0.0))))
    out.append(("min-max, keyword weight (s1 - s10) / s1", 100,
                lambda d, k: scaled_fusion(d, k, 1 - keyword_confidence(k), (None, None))))
    out.append(("z-score, keyword weight (s1 - s10) / s1", 100,
                lambda d, k: score_fusion([d, k], [1 - keyword_confidence(k), keyword_confidence(k)], "zscore")))
    for depth in (50, 200):
        out.append((f"max-normalised, keyword weight (s1 - s10) / s1, depth {depth}", depth,
                    lambda d, k: scaled_fusion(d, k, 1 - keyword_confidence(k), (0.0, 0.0))))
        for w in (0.5, 0.7):
            out.append((f"min-max {w:g}/{1 - w:g}, depth {depth}", depth,
                        lambda d, k, w=w: score_fusion([d, k], [w, 1 - w], "minmax")))
        out.append((f"RRF k=60, depth {depth}", depth, lambda d, k: reciprocal_rank_fusion([d, k], k=60)))
    # Counting each list's scores only down to rank E (lower ones count as the E-th's, as a
    # missed document does), still fusing all 100 of each: the default's E is 50.
    for evidence in (20, 30, 40, 70):
        out.append((f"max-normalised, keyword weight (s1 - s10) / s1, scores counted to rank {evidence}", 100,
                    lambda d, k, e=evidence: adaptive_fusion(d, k, evidence=e)))
    default = Fusion()
    out.append((f"default: {default.describe()}, depth {default.depth}", default.depth, default.fuse))
    return out


def score(data: dict, depth: int, fuse: Callable) -> dict[str, float]:
    run = {}
    for qid, lists in data["runs"].items():
        dense = dict((d, s) for d, s in lists["dense"][:depth])
        keyword = dict((d, s) for d, s in lists["keyword"][:depth])
        run[qid] = list(fuse(dense, keyword))[:100]
    return compute_metrics(data["qrels"], run)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("collections", nargs="+",
                    help="NAME=INDEX_DIR or NAME:SPLIT=INDEX_DIR (NAME a folder under --datasets; split test unless given)")
    ap.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/fusion-runs"))
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    data = {}
    for item in args.collections:
        label, _, index_dir = item.partition("=")
        name, _, split = label.partition(":")
        data[label] = cached_runs(name, args.datasets / name, Path(index_dir), args.cache, split or "test")
    names = list(data)
    rows = []
    for label, depth, fuse in candidates():
        rows.append((label, [score(data[n], depth, fuse) for n in names]))
    best_half = {n: max(m[i]["nDCG@10"] for label, m in rows[:2] for i in [names.index(n)]) for n in names}
    if args.markdown:
        print("| candidate | " + " | ".join(f"{n} nDCG@10 | {n} R@100" for n in names) + " |")
        print("| --- |" + " ---: | ---: |" * len(names))
        for label, ms in rows:
            cells = " | ".join(f"{m['nDCG@10']:.4f} | {m['Recall@100']:.3f}" for m in ms)
            print(f"| {label} | {cells} |")
    else:
        print(f"{'candidate':58s}" + "".join(f"{n[:18]:>20s}" for n in names) + "   >= better half on all")
        for label, ms in rows:
            ok = all(m["nDCG@10"] >= best_half[n] for m, n in zip(ms, names))
            cells = "".join(f"   {m['nDCG@10']:.4f} / {m['Recall@100']:.3f}" for m in ms)
            print(f"{label:58s}{cells}   {'yes' if ok else ''}")
        print("(nDCG@10 / Recall@100; " + ", ".join(f"{n}: {len(data[n]['qrels'])} queries" for n in names) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
