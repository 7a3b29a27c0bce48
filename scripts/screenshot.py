"""Save screenshots of the results page (docs/screenshot.png), the index's report page /about
(docs/about.png) and the map of the corpus (docs/map.png) with Debian's Chromium.

    python scripts/screenshot.py --index /tmp/web-pyd --query "read a file line by line" --pages results
    python scripts/screenshot.py --index /tmp/scifact --pages about   # after `searcher eval --index`
    python scripts/screenshot.py --index /tmp/map-dbpedia --pages map --query "rock band from England" --height 1040

Serves the index with waitress on a free loopback port, opens the pages in headless Chromium
through Playwright (no browser download: the system binary is used) and writes the PNGs.
Before /about it runs `--searches` searches (the queries of `--queries-file`, a BEIR
queries.jsonl, or the query repeated), so the page has latencies to show. The map is
computed first if the index has none cached for its generation (minutes for a large corpus
with UMAP), then shown with the query's best matches marked.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's `web` and `searcher`, not an installed copy

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from searcher.web import create_app  # noqa: E402
from searcher.web.server import serving  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
PAGES = ("results", "about", "map")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="indexes/default", help="index folder")
    parser.add_argument("--query", default="read a file line by line")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--about-out", type=Path, default=ROOT / "docs" / "about.png")
    parser.add_argument("--map-out", type=Path, default=ROOT / "docs" / "map.png")
    parser.add_argument("--pages", default="results,about", help=f"which to take, comma-separated: {', '.join(PAGES)}")
    parser.add_argument("--searches", type=int, default=50, help="searches run before /about")
    parser.add_argument("--queries-file", type=Path, help="a queries.jsonl to take those searches from")
    parser.add_argument("--about-height", type=int, default=960)
    parser.add_argument("--facets", default="kind,folder", help="the fields the results page lists beside them")
    parser.add_argument("--width", type=int, default=1200)
    parser.add_argument("--height", type=int, default=860)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    pages = {p.strip() for p in args.pages.split(",") if p.strip()}
    if not pages <= set(PAGES):
        parser.error(f"--pages takes {', '.join(PAGES)} (comma-separated)")
    facets = tuple(f.strip() for f in args.facets.split(",") if f.strip())
    app = create_app(index_dir=args.index, device="cpu", facets=facets)
    with serving(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height}, color_scheme="light")
        page.goto(f"{url}/api/search?q=warm+up")  # the first search is slow; time a warm one
        if "results" in pages:
            page.goto(f"{url}/?{urlencode({'q': args.query, 'k': args.k})}")
            expect(page.locator(".result").first).to_be_visible(timeout=30_000)
            page.locator("#q").blur()
            save(page, args.out)
        if "map" in pages:
            page.goto(f"{url}/api/map", timeout=0)  # computed (or read) once, before the page asks
            page.goto(f"{url}/map?{urlencode({'q': args.query})}")
            expect(page.locator("#map")).to_have_attribute("data-marked", re.compile(r"^[1-9]"), timeout=60_000)
            save(page, args.map_out)
        if "about" in pages:
            for query in sample_queries(args.queries_file, args.query, args.searches):
                page.request.get(f"{url}/api/search?{urlencode({'q': query, 'k': args.k})}")
            page.set_viewport_size({"width": args.width, "height": args.about_height})
            page.goto(f"{url}/about")
            expect(page.locator(".about h1")).to_be_visible(timeout=30_000)
            save(page, args.about_out, full_page=True)
        browser.close()


def sample_queries(path: Path | None, fallback: str, n: int) -> list[str]:
    """`n` queries: the first of a BEIR queries.jsonl, else `fallback` n times."""
    if path is None:
        return [fallback] * n
    with open(path, encoding="utf-8") as fh:
        texts = [json.loads(line)["text"] for line in fh if line.strip()]
    return [texts[i % len(texts)] for i in range(n)] if texts else [fallback] * n


def save(page, out: Path, full_page: bool = False) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=full_page)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
