"""Suggestions under the search box, in a real headless Chromium (launched as
tests/test_web_browser.py does): shown as you type, arrow keys and Enter, Escape, a click,
and the ARIA combobox pattern."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from tests import test_web_browser as browser_tests
from tests import web_support

# The browser, page and server fixtures of the search page's browser tests (and their skip
# when Chromium or playwright is missing), over the same small index.
pytestmark = browser_tests.pytestmark
web_index, web_app = web_support.web_index, web_support.web_app
base_url, browser, page = browser_tests.base_url, browser_tests.browser, browser_tests.page
expect = browser_tests.sync_api.expect


def typed(page, text: str):
    page.goto("/")
    box = page.locator("#q")
    expect(box).to_be_focused()
    page.keyboard.type(text, delay=30)
    return box


def test_suggestions_show_as_you_type_as_an_aria_combobox(page):
    box = typed(page, "Pyth")
    listbox = page.get_by_role("listbox", name="Suggestions")
    expect(listbox).to_be_visible()
    expect(box).to_have_attribute("role", "combobox")
    expect(box).to_have_attribute("aria-expanded", "true")
    expect(box).to_have_attribute("aria-controls", listbox.get_attribute("id") or "suggestions")
    options = listbox.get_by_role("option")
    expect(options.first).to_contain_text("Python notes")  # the title first
    assert all(t.lower().startswith("pyth") for t in (o.get_attribute("data-text") for o in options.all()))
    assert options.count() <= 10


def test_arrow_keys_move_the_choice_and_enter_searches_for_it(page):
    box = typed(page, "Pyth")
    options = page.get_by_role("option")
    expect(options.first).to_be_visible()
    page.keyboard.press("ArrowDown")
    expect(options.first).to_have_attribute("aria-selected", "true")
    expect(box).to_have_attribute("aria-activedescendant", options.first.get_attribute("id"))
    if options.count() > 1:
        page.keyboard.press("ArrowDown")
        expect(options.nth(1)).to_have_attribute("aria-selected", "true")
        expect(options.first).to_have_attribute("aria-selected", "false")
        page.keyboard.press("ArrowUp")
    expect(options.first).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")
    expect(page.locator(".result").first).to_be_visible()
    assert parse_qs(urlparse(page.url).query)["q"] == ["Python notes"]


def test_escape_closes_the_list_and_keeps_the_text(page):
    box = typed(page, "Pyth")
    listbox = page.locator("#suggestions")
    expect(listbox).to_be_visible()
    page.keyboard.press("Escape")
    expect(listbox).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "false")
    expect(box).to_have_value("Pyth")
    expect(box).to_be_focused()  # the first Escape only closes the list
    page.keyboard.press("ArrowDown")  # opens it again
    expect(listbox).to_be_visible()


def test_a_click_on_a_suggestion_searches_for_it(page):
    typed(page, "kitt")
    option = page.get_by_role("option", name="kittens")
    expect(option).to_be_visible()
    option.click()
    expect(page.locator(".result").first).to_be_visible()
    assert parse_qs(urlparse(page.url).query)["q"] == ["kittens"]


def test_nothing_to_suggest_shows_no_list(page):
    box = typed(page, "qqqxz")
    page.wait_for_timeout(600)  # past the debounce and the answer
    expect(page.locator("#suggestions")).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "false")


def test_did_you_mean_is_shown_for_a_typo_and_its_link_searches_the_correction(page):
    page.goto("/?q=kitens+chase+mise")
    offer = page.locator(".notice.suggestion")
    expect(offer).to_be_visible()
    expect(offer).to_contain_text("Did you mean: kittens chase mice")
    expect(page.locator(".result").first).to_contain_text("Cats")  # ranked by the corrected words
    page.locator("a.did-you-mean").click()
    expect(page.locator(".result").first).to_be_visible()
    assert parse_qs(urlparse(page.url).query)["q"] == ["kittens chase mice"]
    expect(page.locator(".notice.suggestion")).to_have_count(0)
    page.goto("/?q=zqxwv+plorbt")
    expect(page.locator(".notice.no-close-match")).to_be_visible()
