"""Search quality on SciFact (or any BEIR-layout collection): the three modes, one index.

    python benchmarks/quality.py                      # ../shared/datasets/scifact, index in indexes/scifact
    python benchmarks/quality.py --no-write           # print the table, leave README.md alone

Builds the index once (or reuses --index, checked to hold exactly the corpus), evaluates
dense, keyword and hybrid search on the judged test queries, and writes a "Quality" section
with the figures beside the reference figures into benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from searcher.search.fusion import FUSION_METHODS, Fusion  # noqa: E402
from searcher import Index  # noqa: E402
from searcher.quality.evaluate import check_index_holds, evaluate, load_dataset  # noqa: E402
from searcher.index.facade import DEFAULT_MODE, MANIFEST, SEARCH_MODES  # noqa: E402

# From ../shared/datasets/README.md (nDCG@10 and Recall@100 over the 300 SciFact test queries).
REFERENCES = [
    ("BM25 (bm25s 0.3, English stop words)", 0.662, 0.876, "datasets README, measured on the 2-core machine"),
    ("BM25 (BEIR paper, Elasticsearch)", 0.665, None, "Thakur et al. 2021, table 2"),
    ("all-MiniLM-L6-v2, sentence-transformers, 256 tokens", 0.645, 0.925, "datasets README; MTEB leaderboard"),
    ("bge-small-en-v1.5", 0.72, None, "MTEB leaderboard (about)"),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    ap.add_argument("--index", type=Path, default=ROOT / "indexes" / "scifact",
                    help="index folder: built there if absent, reused if present")
    ap.add_argument("--split", default="test")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--readme", type=Path, default=ROOT / "benchmarks" / "README.md")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    ap.add_argument("--no-fusions", action="store_true",
                    help="skip the comparison of hybrid fusion methods (three more hybrid runs)")
    args = ap.parse_args()

    dataset = load_dataset(args.dataset, args.split)
    started = time.perf_counter()
    built = not (args.index / MANIFEST).exists()
    index = Index.open_or_create(args.index, device=args.device)
    if check_index_holds(index, dataset.corpus):
        print(f"indexing {len(dataset.corpus)} documents into {args.index} ...", file=sys.stderr)
        report = index.add_documents(dataset.corpus)
        print(report.summary(), file=sys.stderr)
    build_seconds = time.perf_counter() - started

    results = {}
    for mode in SEARCH_MODES:
        results[mode] = evaluate(args.dataset, mode=mode, split=args.split, index=index)
        r = results[mode]
        print(f"{mode:>8}: nDCG@10 {r['nDCG@10']:.4f}  Recall@100 {r['Recall@100']:.4f}  "
              f"MRR@10 {r['MRR@10']:.4f}  {r['ms_per_query']:.1f} ms/query", file=sys.stderr)
    fusions = {}
    if not args.no_fusions:
        default = index.fusion
        try:
            for method in FUSION_METHODS:
                index.fusion = Fusion(method=method)  # kept per index: evaluate() searches with it
                fusions[method] = results["hybrid"] if index.fusion == default else evaluate(
                    args.dataset, mode="hybrid", split=args.split, index=index)
                r = fusions[method]
                print(f"hybrid {method}: nDCG@10 {r['nDCG@10']:.4f}", file=sys.stderr)
        finally:
            index.fusion = default
    info = index.info()
    index.close()

    command = "python benchmarks/quality.py"
    if args.dataset.resolve() != (ROOT.parent / "shared" / "datasets" / "scifact").resolve():
        command += f" --dataset {args.dataset}"
    if args.index.resolve() != (ROOT / "indexes" / "scifact").resolve():
        command += f" --index {args.index}"
    section = render(results, fusions, info, dataset, args, command, build_seconds if built else None)
    print(section)
    if not args.no_write:
        write_section(args.readme, section)
        print(f"wrote the Quality section of {args.readme}", file=sys.stderr)
    return 0


def render(results, fusions, info, dataset, args, command, build_seconds) -> str:
    lines = [
        "## Quality",
        "",
        f"{dataset.name}, {len(dataset.queries)} judged {args.split} queries, {info['documents']} documents "
        f"({info['chunks']} chunks of at most {info['chunk_tokens']} tokens, overlap {info['overlap']}), "
        f"model {info['model']}, device {info['device']}. Measured {date.today().isoformat()} on "
        f"{platform.machine()} with {os.cpu_count()} CPUs, by:",
        "",
        "    " + command,
        "",
        "| system | nDCG@10 | Recall@100 | MRR@10 | ms/query |",
        "| --- | --- | --- | --- | --- |",
    ]
    for mode, r in results.items():
        name = f"searcher, {mode}" + (" (default)" if mode == DEFAULT_MODE else "")
        lines.append(f"| {name} | {r['nDCG@10']:.3f} | {r['Recall@100']:.3f} | {r['MRR@10']:.3f} "
                     f"| {r['ms_per_query']:.1f} |")
    for name, ndcg, recall, where in REFERENCES:
        lines.append(f"| {name} ({where}) | {ndcg:.3f} | {'' if recall is None else f'{recall:.3f}'} | | |")
    lines.append("")
    lines.append("Reference rows come from `../shared/datasets/README.md`. ms/query is the wall time of "
                 "the whole `Index.search` call for 100 documents (query encoding included, on the CPU it "
                 "dominates); it depends on how busy the machine was.")
    if build_seconds is not None:
        lines.append(f"Building the index took {build_seconds:.0f} s.")
    if fusions:
        default = Fusion()
        lines += [
            "",
            f"Hybrid fusion methods ({default.depth} candidates from each side; "
            f"the default is {default.method}):",
            "",
            "| fusion | nDCG@10 | Recall@100 | MRR@10 |",
            "| --- | --- | --- | --- |",
        ]
        for method, r in fusions.items():
            mark = " (default)" if method == default.method else ""
            lines.append(f"| {Fusion(method=method).describe()}{mark} | {r['nDCG@10']:.3f} | {r['Recall@100']:.3f} | {r['MRR@10']:.3f} |")
    return "\n".join(lines) + "\n"


def write_section(readme: Path, section: str) -> None:
    """Replace the "## Quality" section of `readme` (up to the next "## " heading), or append it."""
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Quality\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    readme.parent.mkdir(parents=True, exist_ok=True)
    readme.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
