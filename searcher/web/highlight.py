"""Make the part of a passage that matched a query visible, as escaped HTML.

Vector search gives no term positions, so the page picks the passage sentence that shares the
most terms with the query and marks it, and marks the query's words too. Terms come from the
index's keyword engine (searcher/storage/keywords/): the words marked are the words BM25 matched.
Every piece of document or query text goes through `escape`; only our own tags are raw.
"""

from __future__ import annotations

import re
from functools import lru_cache

from markupsafe import Markup, escape

from searcher.search.query import parse_query
from searcher.storage.keywords import Analyzer, analyzer_for

SNIPPET_CHARS = 360  # about three lines of result text on a desktop screen
SPACES = re.compile(r"\s+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


@lru_cache(maxsize=1)
def default_analyzer() -> Analyzer:
    """The default engine's analysis, for pages whose index does not say (the engine's own is passed in)."""
    return analyzer_for()


def query_terms(query: str, analyzer: Analyzer | None = None) -> frozenset[str]:
    """The terms the keyword engine searches for: the query's free words as the query language
    reads them (searcher/search/query.py: not the excluded ones, not the syntax), its stop
    words left out, its stems."""
    return frozenset((analyzer or default_analyzer()).query_terms(" ".join(parse_query(query).words)))


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences (or blank-line separated blocks) of `text`."""
    spans, start = [], 0
    for m in SENTENCE_END.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return spans


def best_sentence(text: str, terms: frozenset[str], analyzer: Analyzer) -> tuple[int, int] | None:
    """The span of the sentence with the most distinct query terms; None when none shares a term."""
    best, best_count = None, 0
    for start, end in sentences(text):
        found = {analyzer.term(m.group()) for m in analyzer.words(text[start:end])} & terms
        if len(found) > best_count:
            best, best_count = (start, end), len(found)
    return best


def mark_terms(text: str, terms: frozenset[str], analyzer: Analyzer, collapse: bool = False) -> Markup:
    """Escape `text`, wrapping the words the engine would match to a query term in <mark class="term">."""
    out, pos = [], 0
    for m in analyzer.words(text):
        if analyzer.matches(m.group(), terms):
            out.append(_plain(text[pos : m.start()], collapse))
            out.append(Markup('<mark class="term">%s</mark>') % m.group())
            pos = m.end()
    out.append(_plain(text[pos:], collapse))
    return Markup("").join(out)


def _plain(text: str, collapse: bool) -> Markup:
    return escape(SPACES.sub(" ", text) if collapse else text)


def snippet(passage: str, query: str, analyzer: Analyzer | None = None, limit: int = SNIPPET_CHARS) -> Markup:
    """A short, escaped excerpt of `passage` around its best sentence, with the matches marked."""
    analyzer = analyzer or default_analyzer()
    terms = query_terms(query, analyzer)
    best = best_sentence(passage, terms, analyzer)
    spans = sentences(passage) or [(0, len(passage))]
    if best is None:
        lo, hi = spans[0][0], spans[0][1]
        i = j = 0
    else:
        i = j = spans.index(best)
        lo, hi = best
    # Grow the window by whole sentences, after first then before, while it fits.
    while True:
        grown = False
        if j + 1 < len(spans) and spans[j + 1][1] - lo <= limit:
            j += 1
            hi = spans[j][1]
            grown = True
        if i > 0 and hi - spans[i - 1][0] <= limit:
            i -= 1
            lo = spans[i][0]
            grown = True
        if not grown:
            break
    cut_end = hi - lo > limit
    if cut_end:  # one long sentence: cut it at a word boundary
        hi = lo + limit
        space = passage.rfind(" ", lo, hi)
        if space > lo + limit // 2:
            hi = space
    parts = [Markup("… ") if lo > 0 else Markup("")]
    if best is None:
        parts.append(mark_terms(passage[lo:hi], terms, analyzer, collapse=True))
    else:
        b_lo, b_hi = best[0], min(best[1], hi)
        parts.append(mark_terms(passage[lo:b_lo], terms, analyzer, collapse=True))
        parts.append(Markup('<mark class="sentence">%s</mark>') % mark_terms(passage[b_lo:b_hi], terms, analyzer, collapse=True))
        parts.append(mark_terms(passage[b_hi:hi], terms, analyzer, collapse=True))
    if hi < len(passage.rstrip()):
        parts.append(Markup(" …"))
    return Markup("").join(parts)


def valid_span(text: str, start: int | None, end: int | None) -> bool:
    return start is not None and end is not None and 0 <= start < end <= len(text)


def document_html(text: str, start: int | None, end: int | None, query: str = "",
                  analyzer: Analyzer | None = None, page_starts: list[int] | None = None) -> Markup:
    """The whole document, escaped, with text[start:end] in <mark id="hit"> (query words marked).
    A paged document (`page_starts`: a PDF's pages, a deck's slides) gets a marker where each
    page begins, `<span class="page-mark" id="page-N">page N</span>`."""
    analyzer = analyzer or default_analyzer()
    terms = query_terms(query, analyzer)
    hit = valid_span(text, start, end)
    bounds = [b for b in (page_starts or []) if 0 <= b <= len(text)]
    lead = not bounds or bounds[0] > 0  # text before the first page start: shown, unmarked
    bounds = ([0] if lead else []) + bounds
    outside = escape if hit else (lambda part: mark_terms(part, terms, analyzer))  # as before: terms in the hit
    pieces = []
    for number, (a, b) in enumerate(zip(bounds, [*bounds[1:], len(text)]), 0 if lead else 1):
        if page_starts and number:
            pieces.append(Markup('<span class="page-mark" id="page-%d">page %d</span>') % (number, number))
        piece = text[a:b]
        if hit and a <= start < b:
            stop = min(end, b)
            pieces += [outside(piece[: start - a]),
                       Markup('<mark id="hit" class="hit" tabindex="-1">%s</mark>')
                       % mark_terms(text[start:stop], terms, analyzer),
                       outside(text[stop:b])]
        else:
            pieces.append(outside(piece))
    return Markup("").join(pieces)
