"""The text of an HTML page: its main text through trafilatura (HTML files, web pages), or all
its visible text (e-mail bodies, EPUB chapters, and the fallback where trafilatura finds none)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser


class _VisibleText(HTMLParser):
    """Collect the visible text and <title> of an HTML page."""

    HIDDEN = {"script", "style", "noscript", "template", "head", "svg", "iframe", "object"}
    BLOCK = {
        "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "td",
        "th", "table", "section", "article", "header", "footer", "pre", "blockquote", "dd",
        "dt", "nav", "aside", "main", "hr", "figcaption",
    }

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title_parts: list[str] = []
        self._hidden = 0
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "title":
            self._in_title = True
        elif tag in self.HIDDEN:
            self._hidden += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in self.HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._in_title:
            self.title_parts.append(data)
        elif not self._hidden:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """Return (title, visible text) of an HTML page."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" ?\n[\n ]*", "\n\n", text).strip()
    title = " ".join("".join(parser.title_parts).split())
    return title, text


@dataclass
class PageText:
    """What `main_text` finds in a page: its title, main text, and metadata (`date`, the page's
    own date as YYYY-MM-DD; `author`; `extraction`, "main" or "visible")."""

    title: str
    text: str
    metadata: dict = field(default_factory=dict)


def main_text(html: str, url: str | None = None) -> PageText:
    """The main text of a page through trafilatura: navigation, headers, footers, sidebars and
    cookie banners dropped; the page's own date (its meta tags, time elements, a URL's date)
    and author as metadata. The title is the page's `<title>`, else the one trafilatura finds
    (its first heading). A page where trafilatura finds no main text (a bare list of links, a
    page of one short line), or an installation without trafilatura, gets all its visible text
    as `html_to_text` reads it, so no page with text is lost."""
    title, visible = html_to_text(html)
    if not visible.strip():
        return PageText(title, visible, {"extraction": "visible"})
    try:
        import trafilatura
    except ImportError:  # pragma: no cover - trafilatura is a dependency; kept for slim installs
        return PageText(title, visible, {"extraction": "visible"})
    _quiet()
    try:
        found = trafilatura.bare_extraction(
            html, url=url, with_metadata=True, include_comments=False, include_tables=True,
            favor_recall=True, deduplicate=False,
            # the page's own date only: no guessing from any date in the text
            date_extraction_params={"extensive_search": False, "original_date": True})
    except Exception:  # lxml or trafilatura failing on one odd page: its visible text instead
        found = None
    text = (getattr(found, "text", None) or "").strip()
    if not text:
        return PageText(title, visible, {"extraction": "visible"})
    metadata = {"extraction": "main"}
    for key in ("date", "author"):
        value = getattr(found, key, None)
        if value:
            metadata[key] = str(value)
    found_title = " ".join(str(getattr(found, "title", None) or "").split())
    return PageText(title or found_title, text, metadata)


def _quiet() -> None:
    """trafilatura logs an ERROR for every page it finds no main text in ("empty HTML tree",
    "discarding data"), which main_text handles (the visible text is kept): its loggers are
    set to CRITICAL, unless the application set their level itself."""
    for name in ("trafilatura", "htmldate", "courlan"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.CRITICAL)
