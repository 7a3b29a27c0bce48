"""The visible text and title of an HTML page (HTML files, e-mail bodies, EPUB chapters)."""

from __future__ import annotations

import re
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
