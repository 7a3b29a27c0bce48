"""Per-document access on the search page, in a real headless Chromium (launched as
tests/test_web_browser.py does): signed in with ann's key, the page lists ann's half of
tests/test_access.py's index and none of bob's, in its results and in its facets, and bob's
document is a 404 when its address is typed."""

from __future__ import annotations

import pytest

from searcher.web import create_app
from searcher.web.keys import KeyRing, add_key
from searcher.web.server import serving
from tests import test_access
from tests import test_web_browser as browser_tests

# The browser and page fixtures of the search page's browser tests (and their skip when
# Chromium or playwright is missing: the page fails a test on any dialog, page error or
# request off the server); the index of the access tests.
pytestmark = browser_tests.pytestmark
browser = browser_tests.browser
page = browser_tests.page
shared = test_access.shared
expect = browser_tests.sync_api.expect


@pytest.fixture(scope="module")
def ann_server(shared, tmp_path_factory):
    """(base URL, ann's read key) of a server with API keys over the access tests' index."""
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    _, key = add_key(path, "read", user="ann", groups="finance")
    add_key(path, "read", user="bob", groups="legal")
    with serving(create_app(shared, keys=KeyRing.from_file(path), facets=("type", "folder"))) as url:
        yield url, key


@pytest.fixture(scope="module")
def base_url(ann_server):
    """Where the page fixture opens its pages: the keyed server."""
    return ann_server[0]


def test_a_signed_in_user_sees_only_their_half_on_the_page(page, ann_server):
    _, key = ann_server
    page.goto(f"/?q={test_access.QUERY}&k=10")
    page.locator("#key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    titles = page.locator(".result h2")
    expect(titles).to_have_count(len(test_access.SEES["ann"]))
    shown = set(titles.all_inner_texts())
    assert shown == {d["title"] for d in test_access.DOCS if d["id"] in test_access.SEES["ann"]}
    body = page.locator("body").inner_text()
    for doc in test_access.DOCS:
        if doc["id"] in test_access.HIDDEN["ann"]:
            assert doc["title"] not in body
    for value in ("docx", "odt", "legal"):  # bob's documents' type and folder facets
        assert value not in body
    expect(page.get_by_text("xlsx")).to_be_visible()  # ann's own facet values are listed

    response = page.goto("/document?id=contract")
    assert response.status == 404
    assert "Supplier contract" not in page.locator("body").inner_text()
