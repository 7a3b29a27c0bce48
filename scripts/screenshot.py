"""Save a screenshot of the results page (docs/screenshot.png) or of the map (docs/map.png) with Debian's Chromium.

    python scripts/screenshot.py --index /tmp/web-pyd --query "read a file line by line"
    python scripts/screenshot.py --map --index /tmp/map-dbpedia --query "rock band from England"

Serves the index with waitress on a free loopback port, opens the page in headless Chromium
through Playwright (no browser download: the system binary is used) and writes the PNG.
With --map it shows /map instead, the query's best matches marked (the map is computed first
if the index has none cached for its generation: minutes for a large corpus with UMAP).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's `web` and `searcher`, not an installed copy

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from web import create_app  # noqa: E402
from web.server import serving  # noqa: E402

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="indexes/default", help="index folder")
    parser.add_argument("--query", default="read a file line by line")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--map", action="store_true", help="the map of the corpus (/map) instead of results")
    parser.add_argument("--out", type=Path, help="default: docs/screenshot.png, or docs/map.png with --map")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=860)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    app = create_app(index_dir=args.index, device="cpu")
    with serving(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height}, color_scheme="light")
        page.goto(f"{url}/api/search?q=warm+up")  # the first search is slow; time a warm one
        if args.map:
            page.goto(f"{url}/api/map", timeout=0)  # computed (or read) once, before the page asks
            page.goto(f"{url}/map?{urlencode({'q': args.query})}")
            expect(page.locator("#map")).to_have_attribute("data-marked", re.compile(r"^[1-9]"), timeout=60_000)
        else:
            page.goto(f"{url}/?{urlencode({'q': args.query, 'k': args.k})}")
            expect(page.locator(".result").first).to_be_visible(timeout=30_000)
            page.locator("#q").blur()
        out = args.out or ROOT / "docs" / ("map.png" if args.map else "screenshot.png")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
