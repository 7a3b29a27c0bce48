"""HTML extraction: the share of chunks that are navigation or boilerplate, before (all the
visible text, `html_to_text`) and after (the main text through trafilatura, `main_text`), on
real pages with navigation: the Python documentation that Debian's `python3-doc` installs.

    apt-get install -y python3-doc                       # /usr/share/doc/python3/html
    python benchmarks/html_extraction.py                 # 200 pages, a fixed sample
    python benchmarks/html_extraction.py --pages 0 --out benchmarks/html-extraction-results.json

Each page is read both ways and split into chunks as an index of the default model splits it
(its tokenizer, 256 tokens, an overlap of 25). What counts as boilerplate is decided by the
page's own structure, not by a list of words: a Sphinx page keeps its content in
`<div role="main">`; everything else (the sidebar's table of contents, "Previous topic",
"Report a Bug", "Show Source", the "index | modules | next | previous | Python » 3.x
Documentation »" bars, the theme selector, the copyright footer) is navigation or
boilerplate. A chunk's text is cut into its lines; a line is content when its letters and
digits (all else removed: spaces, punctuation, the "- " trafilatura puts before a list item)
occur in a row in the main division's text (reduced the same way), else it is boilerplate. A chunk's boilerplate share is the boilerplate lines' characters over all its
characters; a chunk is a navigation chunk when that share is at least --threshold (0.5).

The detector is lenient towards boilerplate, and so towards the old extraction: a short nav
line that happens to occur in the content ("index", a section title the sidebar repeats) is
counted as content. The cost of the new extraction is measured too: the share of the main
division's lines (by characters) that the extraction keeps.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searcher.readers.html_text import html_to_text, main_text  # noqa: E402

DOCS = Path("/usr/share/doc/python3/html")
SPACE = re.compile(r"[\W_]+")  # compared on letters and digits alone: markup marks ("- ", "|", "¶") differ


def squeeze(text: str) -> str:
    return SPACE.sub("", text)


def main_division(html: str) -> str | None:
    """The visible text of the page's `<div role="main">` (Sphinx's content), or None."""
    import lxml.html

    tree = lxml.html.fromstring(html)
    found = tree.xpath('//div[@role="main"]')
    if not found:
        return None
    return html_to_text(lxml.html.tostring(found[0], encoding="unicode"))[1]


def sample(pages: int) -> list[Path]:
    files = sorted(p for p in DOCS.rglob("*.html")
                   if not p.relative_to(DOCS).parts[0].startswith("_") and p.name not in ("genindex.html", "search.html"))
    files = [p for p in files if not p.name.startswith("genindex-")]
    if pages and len(files) > pages:
        step = len(files) / pages
        files = [files[int(i * step)] for i in range(pages)]
    return files


def measure(chunker, text: str, content: str, threshold: float, tally: Counter) -> dict:
    chunks = chunker.split(text) if text.strip() else []
    nav = some = 0
    nav_chars = total_chars = 0
    for chunk in chunks:
        bad = chars = 0
        for line in chunk.text.split("\n"):
            s = squeeze(line)
            if not s:
                continue
            chars += len(s)
            if s not in content:
                bad += len(s)
                tally[" ".join(line.split())[:60]] += 1
        nav_chars += bad
        total_chars += chars
        if chars and bad / chars >= threshold:
            nav += 1
        some += bad > 0
    return {"chunks": len(chunks), "nav_chunks": nav, "some_chunks": some, "nav_chars": nav_chars,
            "chars": total_chars}


def kept(text: str, content_text: str, lost: Counter) -> tuple[int, int]:
    """Characters of the main division's lines found in `text`, and of all its lines."""
    have = squeeze(text)
    found = total = 0
    for line in content_text.split("\n"):
        s = squeeze(line)
        if s:
            total += len(s)
            if s in have:
                found += len(s)
            else:
                lost[" ".join(line.split())[:60]] += len(s)
    return found, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=200, help="pages in the sample, spread over the tree (0: all)")
    parser.add_argument("--threshold", type=float, default=0.5, help="boilerplate share that makes a navigation chunk")
    parser.add_argument("--out", help="write the figures to this JSON file")
    args = parser.parse_args()
    if not DOCS.is_dir():
        sys.exit(f"{DOCS} is missing: apt-get install -y python3-doc")

    from transformers import AutoTokenizer

    from searcher.encoding.chunker import Chunker
    from searcher.encoding.encoder import default_model_path

    chunker = Chunker(AutoTokenizer.from_pretrained(str(default_model_path())), 256, 25)
    files = sample(args.pages)
    totals = {name: Counter() for name in ("before", "after")}
    tallies = {name: Counter() for name in ("before", "after")}
    lost = {name: Counter() for name in ("before", "after")}
    seconds = {"before": 0.0, "after": 0.0}
    kept_chars = {"before": [0, 0], "after": [0, 0]}
    per_page_share = {"before": [], "after": []}
    poor = {"before": [], "after": []}  # pages that keep less than half their main division's text
    fallbacks = used = 0
    for path in files:
        html = path.read_text(encoding="utf-8", errors="replace")
        content_text = main_division(html)
        if content_text is None:
            continue
        used += 1
        content = squeeze(content_text)
        t = time.perf_counter()
        before = html_to_text(html)[1]
        seconds["before"] += time.perf_counter() - t
        t = time.perf_counter()
        page = main_text(html)
        seconds["after"] += time.perf_counter() - t
        fallbacks += page.metadata.get("extraction") != "main"
        for name, text in (("before", before), ("after", page.text)):
            row = measure(chunker, text, content, args.threshold, tallies[name])
            totals[name].update(row)
            if row["chunks"]:
                per_page_share[name].append(row["nav_chunks"] / row["chunks"])
            f, n = kept(text, content_text, lost[name])
            kept_chars[name][0] += f
            kept_chars[name][1] += n
            if n and f / n < 0.5:
                poor[name].append((str(path.relative_to(DOCS)), round(f / n, 3), n))

    rows = {}
    for name in ("before", "after"):
        t = totals[name]
        rows[name] = {
            "extraction": "html_to_text (all visible text)" if name == "before" else "main_text (trafilatura)",
            "chunks": t["chunks"],
            "nav_chunks": t["nav_chunks"],
            "nav_chunk_share": round(t["nav_chunks"] / max(1, t["chunks"]), 4),
            "chunks_with_some_boilerplate": t["some_chunks"],
            "some_boilerplate_share": round(t["some_chunks"] / max(1, t["chunks"]), 4),
            "mean_page_nav_chunk_share": round(statistics.mean(per_page_share[name] or [0]), 4),
            "boilerplate_char_share": round(t["nav_chars"] / max(1, t["chars"]), 4),
            "content_kept": round(kept_chars[name][0] / max(1, kept_chars[name][1]), 4),
            "pages_keeping_under_half": sorted(poor[name], key=lambda p: p[1]),  # (page, share kept, characters)
            "ms_per_page": round(1000 * seconds[name] / max(1, used), 1),
            "top_boilerplate_lines": tallies[name].most_common(12),
            "top_main_text_lost": lost[name].most_common(12),  # (line, characters lost)
        }
    result = {"pages": used, "sample": len(files), "threshold": args.threshold,
              "after_fell_back_to_visible_text": fallbacks, "date": time.strftime("%Y-%m-%d"),
              "source": str(DOCS), "rows": rows}

    print(f"{used} pages of {DOCS} (chunks of 256 tokens; navigation chunk: >= {args.threshold:.0%} boilerplate)\n")
    print("| extraction | chunks | navigation chunks | share | chunks with any boilerplate | "
          "boilerplate characters | main text kept | ms/page |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows.values():
        print(f"| {r['extraction']} | {r['chunks']:,} | {r['nav_chunks']:,} | {r['nav_chunk_share']:.1%} "
              f"| {r['chunks_with_some_boilerplate']:,} ({r['some_boilerplate_share']:.1%}) "
              f"| {r['boilerplate_char_share']:.1%} | {r['content_kept']:.1%} | {r['ms_per_page']} |")
    print(f"\npages where trafilatura found no main text (visible text kept instead): {fallbacks}")
    for name, r in rows.items():
        print(f"\nmost frequent boilerplate lines, {name}:")
        for line, n in r["top_boilerplate_lines"][:8]:
            print(f"  {n:5d}  {line}")
    print(f"\npages keeping under half their main text, after: {len(rows['after']['pages_keeping_under_half'])}")
    for page, share, n in rows["after"]["pages_keeping_under_half"][:12]:
        print(f"  {share:6.1%} of {n:7,} characters  {page}")
    print("\nmain text the new extraction loses, most characters first:")
    for line, n in rows["after"]["top_main_text_lost"][:10]:
        print(f"  {n:6d}  {line}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
