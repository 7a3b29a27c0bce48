"""Save a screenshot of the results page (docs/screenshot.png) with Debian's Chromium.

    python scripts/screenshot.py --index /tmp/web-pyd --query "read a file line by line"

Serves the index with waitress on a free loopback port, opens the page in headless Chromium
through Playwright (no browser download: the system binary is used) and writes the PNG.
"""

from __future__ import annotations

import argparse
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
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--width", type=int, default=1000)
    parser.add_argument("--height", type=int, default=860)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    app = create_app(index_dir=args.index, device="cpu")
    with serving(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height}, color_scheme="light")
        page.goto(f"{url}/api/search?q=warm+up")  # the first search is slow; time a warm one
        page.goto(f"{url}/?{urlencode({'q': args.query, 'k': args.k})}")
        expect(page.locator(".result").first).to_be_visible(timeout=30_000)
        page.locator("#q").blur()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
