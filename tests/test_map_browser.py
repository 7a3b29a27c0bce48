"""The map page (/map) in a real headless Chromium, as tests/test_web_browser.py drives it: a
point is drawn for every document, hovering shows a title as text, a click opens that
document, a query marks its hits."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest

from tests import test_web_browser as browser_tests
from tests import web_support
from tests.web_support import DOCS

# The browser, page and server fixtures of the search page's browser tests (and their skip
# when Chromium or playwright is missing), over the same small index.
pytestmark = browser_tests.pytestmark
web_index, web_app = web_support.web_index, web_support.web_app
base_url, browser, page = browser_tests.base_url, browser_tests.browser, browser_tests.page
expect = browser_tests.sync_api.expect
SOME = re.compile(r"^[1-9][0-9]*$")  # data-marked once a search's hits are marked


def open_map(page, path: str = "/map"):
    page.goto(path)
    expect(page.locator("#map")).to_have_attribute("data-state", "ready", timeout=60_000)
    return page.locator("#map-canvas")


def position(page, canvas, doc_id: str) -> tuple[float, float, str]:
    """Where document `doc_id` is drawn (page coordinates), and the id of the point the map
    finds there (another document drawn on the very same spot may win)."""
    i = page.evaluate("(id) => window.searcherMap.ids().indexOf(id)", doc_id)
    assert i >= 0, f"{doc_id} is not on the map"
    p = page.evaluate("(i) => window.searcherMap.screenPoint(i)", i)
    found = page.evaluate("([x, y]) => window.searcherMap.at(x, y)", [p["x"], p["y"]])
    box = canvas.bounding_box()
    return box["x"] + p["x"], box["y"] + p["y"], found


def test_a_point_is_drawn_for_every_document_and_a_click_opens_one(page):
    canvas = open_map(page)
    expect(page.locator("#map")).to_have_attribute("data-points", str(len(DOCS)))
    assert page.evaluate("window.searcherMap.count()") == len(DOCS)
    assert sorted(page.evaluate("window.searcherMap.ids()")) == sorted(d["id"] for d in DOCS)
    expect(page.locator("#map-status")).to_contain_text(f"{len(DOCS)} documents, laid out by PCA")
    expect(page.locator("#map-legend li").first).to_be_visible()
    x, y, found = position(page, canvas, "cat")
    page.mouse.move(x, y)
    titles = {d["id"]: d["title"] for d in DOCS}
    expect(page.locator("#map-tip")).to_have_text(titles[found])
    page.mouse.click(x, y)
    page.wait_for_url("**/document?*")
    assert parse_qs(urlparse(page.url).query)["id"] == [found]
    expect(page.locator("h1")).to_have_text(titles[found])


def test_hovering_a_title_with_markup_shows_it_as_text(page):
    canvas = open_map(page)
    x, y, found = position(page, canvas, "xss")
    page.mouse.move(x, y)
    tip = page.locator("#map-tip")
    expect(tip).to_be_visible()
    if found == "xss":
        expect(tip).to_have_text('<b>Injected</b> & "markup" <img src=x onerror=alert(2)>')
    assert page.locator("#map-tip *, main img").count() == 0
    # The page fixture asserts afterwards that no alert() dialog opened.


def test_a_query_marks_its_hits_and_stays_in_the_url(page):
    open_map(page)
    page.locator("#map-q").fill("kittens chasing mice")
    page.locator("#map-q").press("Enter")
    expect(page.locator("#map")).to_have_attribute("data-marked", SOME)
    marked = page.evaluate("window.searcherMap.markedIds()")
    assert "cat" in marked and len(marked) <= len(DOCS)
    expect(page.locator("#map-status")).to_contain_text("best match")
    expect(page.locator("#map-hits a").first).to_have_text("Cats")
    assert parse_qs(urlparse(page.url).query)["q"] == ["kittens chasing mice"]
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#map")).to_have_attribute("data-marked", "0")
    assert "q" not in parse_qs(urlparse(page.url).query)


def test_a_query_in_the_address_is_marked_on_load_and_zoom_keeps_points_drawn(page):
    canvas = open_map(page, "/map?q=petrol+engine")
    expect(page.locator("#map")).to_have_attribute("data-marked", SOME)
    assert "car" in page.evaluate("window.searcherMap.markedIds()")
    # The documents carry file facts: colouring by type is offered, and colours them.
    expect(page.locator("#map-colour option[value=type]")).to_be_enabled()
    page.locator("#map-colour").select_option("type")
    expect(page.locator("#map")).to_have_attribute("data-points", str(len(DOCS)))
    canvas.focus()
    page.keyboard.press("+")
    page.keyboard.press("0")
    expect(page.locator("#map")).to_have_attribute("data-points", str(len(DOCS)))


@pytest.mark.parametrize("width", [360])
def test_the_map_fits_a_phone_screen(browser, base_url, width):
    context = browser.new_context(base_url=base_url, viewport={"width": width, "height": 740},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.goto("/map")
    expect(page.locator("#map")).to_have_attribute("data-state", "ready", timeout=60_000)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(page.locator("#map")).to_have_attribute("data-points", str(len(DOCS)))
    context.close()
