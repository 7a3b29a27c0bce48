"""Make the part of a passage that matched a query visible, as escaped HTML.

Vector search gives no term positions, so the page picks the passage sentence that shares the
most (crudely stemmed) words with the query and marks it, and marks the query's words too.
Every piece of document or query text goes through `escape`; only our own tags are raw.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

SNIPPET_CHARS = 360  # about three lines of result text on a desktop screen
WORD = re.compile(r"\w+")
SPACES = re.compile(r"\s+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")
STOPWORDS = frozenset(
    "a about an and are as at be by can do does for from how i if in into is it its of on or so "
    "that the their then there these this to was what when where which who why will with you your".split()
)


def stem(word: str) -> str:
    """A crude suffix stripper: enough to match file/files, parse/parsed, read/reading."""
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        w = w[:-3] + "y"
    elif w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        w = w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) - len(suffix) >= 3:
            w = w[: -len(suffix)]
            break
    if w.endswith("e") and len(w) > 3:
        w = w[:-1]
    return w


def query_terms(query: str) -> frozenset[str]:
    """Stems of the query's words, stopwords and single characters left out."""
    return frozenset(
        stem(w) for w in WORD.findall(query) if len(w) > 1 and w.lower() not in STOPWORDS
    )


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


def best_sentence(text: str, terms: frozenset[str]) -> tuple[int, int] | None:
    """The span of the sentence with the most distinct query terms; None when none shares a term."""
    best, best_count = None, 0
    for start, end in sentences(text):
        found = {stem(w) for w in WORD.findall(text[start:end])} & terms
        if len(found) > best_count:
            best, best_count = (start, end), len(found)
    return best


def mark_terms(text: str, terms: frozenset[str], collapse: bool = False) -> Markup:
    """Escape `text`, wrapping the words whose stem is a query term in <mark class="term">."""
    out, pos = [], 0
    for m in WORD.finditer(text):
        if m.group().lower() not in STOPWORDS and stem(m.group()) in terms:
            out.append(_plain(text[pos : m.start()], collapse))
            out.append(Markup('<mark class="term">%s</mark>') % m.group())
            pos = m.end()
    out.append(_plain(text[pos:], collapse))
    return Markup("").join(out)


def _plain(text: str, collapse: bool) -> Markup:
    return escape(SPACES.sub(" ", text) if collapse else text)


def snippet(passage: str, query: str, limit: int = SNIPPET_CHARS) -> Markup:
    """A short, escaped excerpt of `passage` around its best sentence, with the matches marked."""
    terms = query_terms(query)
    best = best_sentence(passage, terms)
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
        parts.append(mark_terms(passage[lo:hi], terms, collapse=True))
    else:
        b_lo, b_hi = best[0], min(best[1], hi)
        parts.append(mark_terms(passage[lo:b_lo], terms, collapse=True))
        parts.append(Markup('<mark class="sentence">%s</mark>') % mark_terms(passage[b_lo:b_hi], terms, collapse=True))
        parts.append(mark_terms(passage[b_hi:hi], terms, collapse=True))
    if hi < len(passage.rstrip()):
        parts.append(Markup(" …"))
    return Markup("").join(parts)


def valid_span(text: str, start: int | None, end: int | None) -> bool:
    return start is not None and end is not None and 0 <= start < end <= len(text)


def document_html(text: str, start: int | None, end: int | None, query: str = "") -> Markup:
    """The whole document, escaped, with text[start:end] in <mark id="hit"> (query words marked)."""
    terms = query_terms(query)
    if not valid_span(text, start, end):
        return mark_terms(text, terms)
    return Markup("").join([
        escape(text[:start]),
        Markup('<mark id="hit" class="hit" tabindex="-1">%s</mark>') % mark_terms(text[start:end], terms),
        escape(text[end:]),
    ])
