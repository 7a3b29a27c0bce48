"""What readers produce: a Document, or a Skipped with the reason a person can act on."""

from __future__ import annotations

import re
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


# -- who may read a document -------------------------------------------------------------
READERS = "readers"  # the metadata key of a document's readers (searcher/search/access.py reads it)
READER_KINDS = ("user", "group")
EVERYONE = "everyone"  # `--readers everyone`: no readers, every key reads (a document's own readers dropped)
MAX_READERS = 1_000
_NAME = re.compile(r"[\w.@+\-]{1,128}")


def check_name(name, kind: str = "user") -> str:
    """A user or group name: 1 to 128 letters, digits and `_ . @ + -` (no spaces, commas or
    colons), case kept; ValueError otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"a {kind} name is 1 to 128 letters, digits and _ . @ + - (no spaces, commas or "
                         f"colons), not {str(name)[:80]!r}")
    return name


def check_readers(value) -> list[str]:
    """A document's readers as stored: `user:NAME` and `group:NAME` entries, each once, sorted.
    Takes a list of entries or one comma-separated string; [] for none (the document is then
    readable by every key; the word `everyone` says so too). ValueError saying what is wrong
    otherwise."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [part for part in (p.strip() for p in value.split(",")) if part]
    if isinstance(value, (list, tuple)) and list(value) == [EVERYONE]:
        return []
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"readers is a list of 'user:NAME' and 'group:NAME' entries, not {str(value)[:80]!r}")
    if len(value) > MAX_READERS:
        raise ValueError(f"a document has at most {MAX_READERS} readers, not {len(value)}")
    out = set()
    for entry in value:
        kind, _, name = entry.partition(":") if isinstance(entry, str) else ("", "", "")
        if kind not in READER_KINDS:
            raise ValueError(f"a reader is 'user:NAME' or 'group:NAME', not {str(entry)[:80]!r}")
        out.add(f"{kind}:{check_name(name, kind)}")
    return sorted(out)


def with_readers(metadata: dict) -> dict:
    """`metadata` with its readers checked and normalised (sorted, each once; [] stays, saying
    "every key", which the writer drops once it has decided: searcher/index/writer.py),
    ValueError when they are malformed."""
    if READERS not in metadata:
        return metadata
    return {**metadata, READERS: check_readers(metadata[READERS])}
