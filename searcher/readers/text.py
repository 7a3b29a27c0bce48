"""Plain text, Markdown and HTML files: the text decoded (an HTML page's main text, through
trafilatura), the title from the first heading or `<title>`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from searcher.readers.documents import Document, Skipped
from searcher.readers.html_text import main_text
from searcher.sanitize import is_blank

if TYPE_CHECKING:
    from searcher.readers.options import LoadOptions


def decode_bytes(data: bytes) -> str:
    """Decode file contents: UTF-8 (with or without BOM), UTF-16 with BOM, else Latin-1-ish.

    Raises ValueError for data that looks binary, so the caller can skip it with a reason.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise ValueError("binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: cp1252 covers most legacy Western text; fall back to latin-1 which never fails.
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    control = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if control > max(8, len(text[:8192]) // 100):
        raise ValueError("binary file (not valid text in UTF-8 or a legacy encoding)")
    return text


def markdown_title(text: str) -> str:
    """The first ATX heading of a Markdown text, or '': up to 3 spaces, 1-6 '#', a space, the
    title, then optional closing '#'s. Parsed with string methods, in time linear in the line:
    the regular expression it replaces (`^\\s{0,3}#{1,6}\\s+(.*?)\\s*#*\\s*$`) took cubic time
    on a long line of spaces."""
    for line in text.splitlines():
        rest = line.lstrip()
        if len(line) - len(rest) > 3:
            continue
        hashes = len(rest) - len(rest.lstrip("#"))
        rest = rest[hashes:]
        if not 1 <= hashes <= 6 or not rest[:1].isspace():
            continue
        title = rest.strip().rstrip("#").rstrip()
        if title:
            return title
    return ""


def read_plain(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
    text = decode_bytes(data)
    title = markdown_title(text) if path.suffix.lower() in (".md", ".markdown") else ""
    yield Document(id=str(path), text=text, title=title or path.name, source=str(path))


def read_html(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
    """An HTML page's main text (navigation, footers and cookie banners dropped: `main_text`),
    its title, and its own date and author as metadata."""
    page = main_text(decode_bytes(data))
    if is_blank(page.text):
        yield Skipped(str(path), "HTML page has no visible text")
        return
    yield Document(id=str(path), text=page.text, title=page.title or path.name, source=str(path),
                   metadata=page.metadata)
