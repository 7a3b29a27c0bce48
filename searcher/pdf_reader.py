"""PDF files, page by page, through pypdfium2 (PDFium, the engine of Chromium's PDF viewer).

Chosen by measurement (benchmarks/extract.py, benchmarks/README.md "Extraction"): on Debian's
PDF manuals it reads 700-870 pages a second here against pdfminer.six's 50, with the same
text. A document's text is its pages joined by blank lines; `metadata["page_starts"]` holds
the character offset where each page begins, so a hit knows its page (searcher/retrieval.py).
An encrypted PDF, a damaged one, and one without a text layer (a scan) are skipped with that
reason, never indexed empty.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from .documents import Document, Skipped

PAGE_BREAK = "\n\n"
_SOFT_HYPHEN = re.compile(r"\x02\r?\n?")  # PDFium marks a word hyphenated at a line end with \x02
_PDF_DATE = re.compile(r"D:(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?")


def pdf_date(value: str | None) -> str | None:
    """A PDF date ("D:20250208122313Z") as ISO 8601 ("2025-02-08T12:23:13+00:00"), or None."""
    m = _PDF_DATE.match(value or "")
    if not m:
        return None
    parts = [int(p) if p else d for p, d in zip(m.groups(), (0, 1, 1, 0, 0, 0))]
    try:
        return datetime(*parts, tzinfo=timezone.utc).isoformat()
    except ValueError:
        return None


def page_text(raw: str) -> str:
    return _SOFT_HYPHEN.sub("", raw).replace("\r\n", "\n").replace("\r", "\n").strip()


def heading(first_page: str) -> str:
    """A title from the first page: its first line that reads like one (not a page number)."""
    for line in first_page.splitlines()[:10]:
        line = line.strip()
        if 3 <= len(line) <= 120 and not line.replace(".", "").isdigit():
            return line
    return ""


def read_pdf(path: Path, data: bytes, opts) -> Iterator[Document | Skipped]:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as e:
        reason = str(e)
        if "password" in reason.lower():
            yield Skipped(str(path), "encrypted PDF (needs a password)")
        else:
            yield Skipped(str(path), f"damaged PDF: {reason}")
        return
    try:
        pages = []
        for number in range(len(pdf)):
            page = pdf[number]
            try:
                textpage = page.get_textpage()
                pages.append(page_text(textpage.get_text_bounded()))
                textpage.close()
            finally:
                page.close()
        info = pdf.get_metadata_dict()
    except pdfium.PdfiumError as e:
        yield Skipped(str(path), f"damaged PDF: {e}")
        return
    finally:
        pdf.close()
    if not any(pages):
        yield Skipped(str(path), f"no text layer (scanned?): none of its {len(pages)} pages has text")
        return
    starts, offset = [], 0
    for text in pages:
        starts.append(offset)
        offset += len(text) + len(PAGE_BREAK)
    metadata = {"pages": len(pages), "page_starts": starts}
    if not all(pages):
        metadata["pages_without_text"] = [i + 1 for i, text in enumerate(pages) if not text]
    for key, name in (("Author", "author"), ("Subject", "subject"), ("Keywords", "keywords")):
        if (info.get(key) or "").strip():
            metadata[name] = info[key].strip()
    created = pdf_date(info.get("CreationDate"))
    if created:
        metadata["created"] = created
    title = (info.get("Title") or "").strip() or heading(next(p for p in pages if p)) or path.name
    yield Document(id=str(path), text=PAGE_BREAK.join(pages), title=title, source=str(path), metadata=metadata)
