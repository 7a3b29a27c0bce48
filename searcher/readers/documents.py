"""What readers produce: a Document, or a Skipped with the reason a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field

from searcher.sanitize import clean_text


@dataclass
class Document:
    """One unit of search results: what a hit points to."""

    id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: dict = field(default_factory=dict)


@dataclass
class Skipped:
    """Something that could not be indexed, and why."""

    path: str
    reason: str

    def __post_init__(self):
        # A file name that is not valid UTF-8 is shown escaped, as its documents' ids are.
        self.path, self.reason = clean_text(str(self.path)), clean_text(str(self.reason))

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class TooLarge(ValueError):
    """A file over a per-file bound (pages, characters of text: LoadOptions in
    searcher/readers/loaders.py), raised while it is read, before any of its text is chunked; the
    message is the reason it is skipped."""


def check_pages(count: int, opts, kind: str = "PDF", unit: str = "pages") -> None:
    """TooLarge when a file has more pages (slides, chapters) than `opts.max_pages`."""
    limit = opts.max_pages if opts is not None else None
    if limit is not None and count > limit:
        raise TooLarge(f"{kind} has {count:,} {unit}, over the limit of {limit:,} a file (--max-pages); skipped")


def check_chars(count: int, opts) -> None:
    """TooLarge when a file's text (so far) is longer than `opts.max_chars` characters."""
    limit = opts.max_chars if opts is not None else None
    if limit is not None and count > limit:
        raise TooLarge(f"its text is over {limit:,} characters, the limit of a file (--max-file-chars); skipped")


def page_starts(metadata: dict, length: int | None = None) -> list[int] | None:
    """Where each page of a paged document (a PDF) begins in its text: `metadata["page_starts"]`,
    when it is a list of strictly ascending non-negative integers, each within the text when
    its `length` is given; anything else is not page data (300,000 zeros posted as
    page_starts made one page marker each in the document view)."""
    starts = metadata.get("page_starts")
    if not isinstance(starts, list) or not starts:
        return None
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in starts) or starts[0] < 0:
        return None
    if any(b <= a for a, b in zip(starts, starts[1:])):
        return None
    if length is not None and starts[-1] > length:
        return None
    return starts


PAGE_BREAK = "\n\n"


def join_pages(pages: list[str]) -> tuple[str, list[int]]:
    """A paged document's text (its pages joined by blank lines) and where each page begins."""
    starts, offset = [], 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + len(PAGE_BREAK)
    return PAGE_BREAK.join(pages), starts
