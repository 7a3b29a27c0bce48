"""End-to-end: a real headless Chromium (Debian's package) against waitress on a free loopback port.

Playwright drives the system browser (`executable_path`), so nothing is downloaded.
"""

from __future__ import annotations

import os
import re
import shutil
from urllib.parse import parse_qs, urlparse

import pytest

from searcher.web.server import serving
from tests.web_support import XSS_TEXT, web_app, web_index  # noqa: F401 (fixtures)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python package) is not installed")
expect = sync_api.expect
expect.set_options(timeout=15_000)  # the CPU is shared: a search can take a while

CHROMIUM = os.environ.get("SEARCHER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
)


@pytest.fixture(scope="module")
def base_url(web_app):
    with serving(web_app) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, base_url):
    """A fresh page that fails the test on any dialog, console error or request off loopback."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1024, "height": 720})
    page = context.new_page()
    page.dialogs, page.errors, page.foreign = [], [], []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(base_url) else page.foreign.append(r.url))
    page.set_default_timeout(15_000)
    yield page
    assert page.dialogs == [], "a dialog opened: injected script ran"
    assert page.errors == []
    assert page.foreign == [], "the page asked for something outside the app"
    context.close()


def search(page, query: str) -> None:
    page.goto("/")
    box = page.locator("#q")
    expect(box).to_be_focused()  # autofocus: typing goes straight into the box
    page.keyboard.type(query)
    page.keyboard.press("Enter")
    expect(page.locator(".result").first).to_be_visible()


def test_type_a_query_see_results_open_a_document_see_the_highlight(page):
    search(page, "how to read a text file line by line")
    assert parse_qs(urlparse(page.url).query)["q"] == ["how to read a text file line by line"]
    expect(page.locator("#q")).to_have_value("how to read a text file line by line")
    expect(page.locator(".summary")).to_contain_text(re.compile(r"Results 1–\d+\s.*\d+ ms", re.S))
    first = page.locator(".result").first
    expect(first.locator("h2")).to_have_text("Python notes")
    expect(first.locator("mark.sentence")).to_contain_text("line by line")
    first.locator("h2 a").click()
    hit = page.locator("mark#hit")
    expect(hit).to_contain_text("To read a text file line by line")
    expect(hit).to_be_in_viewport()  # scrolled to, though the passage is far down the document
    assert page.evaluate("window.scrollY") > 0
    expect(page.locator("h1")).to_have_text("Python notes")
    page.go_back()
    expect(page.locator("#q")).to_have_value("how to read a text file line by line")


def test_injected_script_is_shown_as_text_and_never_runs(page):
    search(page, "injected web page markup script")
    result = page.locator(".result", has_text="Beware of injected")
    expect(result.locator(".passage")).to_contain_text(XSS_TEXT)
    expect(result.locator("h2")).to_have_text('<b>Injected</b> & "markup" <img src=x onerror=alert(2)>')
    assert page.locator("main script, main img").count() == 0
    result.locator("h2 a").click()
    expect(page.locator(".text")).to_contain_text(XSS_TEXT)
    assert page.locator("main script, main img").count() == 0
    # The page fixture asserts afterwards that no alert() dialog opened.


def test_back_button_restores_the_earlier_search(page):
    search(page, "kittens")
    page.locator("#q").fill("petrol engine")
    page.locator("#q").press("Enter")
    expect(page.locator(".result h2").first).to_have_text("Engines")
    page.go_back()
    expect(page.locator("#q")).to_have_value("kittens")
    expect(page.locator(".result h2").first).to_have_text("Cats")


def test_more_results_pages_through(page):
    page.goto("/?q=water&k=3")
    expect(page.locator(".summary")).to_contain_text("Results 1–3")
    page.get_by_role("link", name="More results").click()
    expect(page.locator(".summary")).to_contain_text("Results 4–6")
    expect(page.locator("ol.results")).to_have_attribute("start", "4")
    page.get_by_role("link", name="Previous").click()
    expect(page.locator(".summary")).to_contain_text("Results 1–3")


def test_keyboard_only(page):
    search(page, "compiler")
    page.locator("#q").press("Escape")
    expect(page.locator("#q")).not_to_be_focused()
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.type("source code")  # replaces the selected old query; no "/" typed
    expect(page.locator("#q")).to_have_value("source code")
    page.keyboard.press("Enter")
    expect(page.locator(".result h2").first).to_have_text("Compilers")
    # Tab reaches the first result link and Enter opens it.
    page.locator("#q").focus()
    for _ in range(5):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('.result') !== null"):
            break
    page.keyboard.press("Enter")
    expect(page.locator("mark#hit")).to_be_visible()


def test_empty_and_error_states(page):
    page.goto("/")
    expect(page.locator(".notice.empty h1")).to_have_text("Search 7 documents")
    page.goto("/?q=cats&k=0")
    expect(page.get_by_role("alert")).to_contain_text("k must be an integer")


def test_fits_a_phone_screen(browser, base_url):
    context = browser.new_context(base_url=base_url, viewport={"width": 360, "height": 740},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    for path in ("/?q=read+a+text+file+line+by+line", "/document?id=xss&start=0&end=30"):
        page.goto(path)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    box = page.locator("#q").bounding_box()
    assert box["width"] > 200  # the search box gets the full width
    context.close()


def test_click_a_facet_then_remove_the_filter(page):
    search(page, "water")
    total = page.locator(".result").count()
    pdf = page.locator('.facet[data-field="type"] a', has_text="pdf")
    expect(pdf).to_be_visible()  # beside the results on a desktop screen
    pdf.click()
    expect(page.locator(".active-filters")).to_contain_text("type: pdf")
    expect(page.locator(".result")).to_have_count(2)
    assert sorted(page.locator(".result h2").all_inner_texts()) == ["Engines", "Oceans"]  # the two PDFs
    assert '"type":"pdf"' in parse_qs(urlparse(page.url).query)["where"][0]
    # A new query from the box keeps the filter...
    page.locator("#q").fill("petrol")
    page.locator("#q").press("Enter")
    expect(page.locator(".active-filters")).to_contain_text("type: pdf")
    expect(page.locator(".result h2").first).to_have_text("Engines")
    # ...until it is removed.
    page.get_by_role("link", name="Remove the filter type: pdf").click()
    expect(page.locator(".active-filters")).to_have_count(0)
    assert "where" not in parse_qs(urlparse(page.url).query)
    page.goto("/?q=water")
    expect(page.locator(".result")).to_have_count(total)


def test_open_the_documents_like_a_result(page):
    search(page, "kittens")
    first = page.locator(".result").first
    expect(first.locator("h2")).to_have_text("Cats")
    first.get_by_role("link", name="Documents similar to Cats").click()
    expect(page.locator("h1")).to_contain_text("Documents like")
    titles = page.locator(".result h2").all_inner_texts()
    assert titles and "Cats" not in titles
    # From a similar document's view, its own similar list.
    page.locator(".result h2 a").first.click()
    expect(page.locator(".document h1")).to_be_visible()
    page.get_by_role("link", name="Similar documents").click()
    expect(page.locator("h1")).to_contain_text("Documents like")


# -- signing in (a server with API keys) -------------------------------------------------------

@pytest.fixture(scope="module")
def keyed_server(web_index, tmp_path_factory):
    """(base URL, read key) of a second server over the same index, with API keys."""
    from searcher.web import create_app
    from searcher.web.keys import KeyRing, add_key

    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    _, key = add_key(path, "read")
    with serving(create_app(web_index, keys=KeyRing.from_file(path))) as url:
        yield url, key


def test_sign_in_once_then_search_then_sign_out(browser, keyed_server):
    url, key = keyed_server
    context = browser.new_context(base_url=url, viewport={"width": 1024, "height": 720})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(15_000)

    page.goto("/?q=kittens")
    assert urlparse(page.url).path == "/sign-in"  # sent to sign in, the search kept for after
    expect(page.locator("#key")).to_be_focused()
    page.keyboard.type("srch_00000000_wrong")
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    assert context.cookies() == []

    page.locator("#key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".result h2").first).to_have_text("Cats")  # back at the search asked for
    assert parse_qs(urlparse(page.url).query)["q"] == ["kittens"]
    [cookie] = context.cookies()
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert key not in cookie["value"]
    assert page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
    # Signed in once: other pages and the API (same site) need nothing more.
    page.goto("/document?id=cat")
    expect(page.locator(".document h1")).to_have_text("Cats")
    assert page.evaluate("fetch('/api/health').then(r => r.status)") == 200
    # The cookie only reads: a write from the page is refused even with it.
    assert page.evaluate("fetch('/api/documents', {method: 'POST', headers: {'Content-Type': "
                         "'application/json'}, body: '{}'}).then(r => r.status)") == 403

    page.get_by_role("button", name="Sign out").click()
    expect(page.locator("#key")).to_be_visible()
    page.goto("/")
    assert urlparse(page.url).path == "/sign-in"
    assert errors == []
    context.close()
