"""PDF files, page by page, through pypdfium2 (PDFium, the engine of Chromium's PDF viewer).

Chosen by measurement (benchmarks/extract.py, benchmarks/README.md "Extraction"): on Debian's
PDF manuals it reads 700-870 pages a second here against pdfminer.six's 50, with the same
text. A document's text is its pages joined by blank lines; `metadata["page_starts"]` holds
the character offset where each page begins, so a hit knows its page (searcher/search/retrieval.py).
An encrypted PDF, a damaged one, and one without a text layer (a scan) are skipped with that
reason, never indexed empty; so is one over the per-file bounds (--max-pages, counted before
a page is read, and --max-file-chars: searcher/readers/loaders.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from searcher.readers.documents import PAGE_BREAK, Document, Skipped, check_chars, check_pages, join_pages

OCR_HINT = ("--ocr needs OCRmyPDF and Tesseract: pip install -e '.[ocr]' (in the searcher checkout) "
            "and apt-get install tesseract-ocr")


def ocr_available() -> bool:
    """Whether OCRmyPDF (the Python package) and Tesseract (the program) are installed."""
    return importlib.util.find_spec("ocrmypdf") is not None and shutil.which("tesseract") is not None


def ocr(data: bytes, pages: list[int], timeout: float) -> bytes:
    """The PDF with a text layer added by OCRmyPDF on `pages` (numbers from 1, those without
    text); RuntimeError with OCRmyPDF's reason when it fails or runs past `timeout` seconds.
    It runs in its own process group, killed whole on a timeout or when this process is
    told to stop (a worker past --file-timeout), so no OCR process outlives the run."""
    with tempfile.TemporaryDirectory(prefix="searcher-ocr-") as tmp:
        source, target = f"{tmp}/in.pdf", f"{tmp}/out.pdf"
        with open(source, "wb") as fh:
            fh.write(data)
        command = [sys.executable, "-m", "ocrmypdf", "--skip-text", "--output-type", "pdf", "-q", "--jobs", "1",
                   "--pages", ",".join(map(str, pages)), source, target]
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True)

        def stop(*_):
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        previous = signal.signal(signal.SIGTERM, lambda *a: (stop(), os._exit(1)))
        try:
            _, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop()
            child.communicate()
            raise RuntimeError(f"OCR took over {timeout:.0f} s") from None
        finally:
            signal.signal(signal.SIGTERM, previous)
        if child.returncode != 0:
            lines = (err or "").strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"OCRmyPDF exited with {child.returncode}")
        with open(target, "rb") as fh:
            return fh.read()


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


def extract_pages(data: bytes, opts=None):
    """(pages' text, metadata dict) of a PDF; raises pypdfium2's PdfiumError, and TooLarge for
    one over `opts.max_pages` pages (counted before any is read: a page tree can list one
    page 200,000 times in 1.2 MB) or `opts.max_chars` characters (checked page by page)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        check_pages(len(pdf), opts)
        pages, chars = [], 0
        for number in range(len(pdf)):
            page = pdf[number]
            try:
                textpage = page.get_textpage()
                pages.append(page_text(textpage.get_text_bounded()))
                textpage.close()
            finally:
                page.close()
            chars += len(pages[-1]) + (len(PAGE_BREAK) if number else 0)
            check_chars(chars, opts)
        return pages, pdf.get_metadata_dict()
    finally:
        pdf.close()


def read_pdf(path: Path, data: bytes, opts) -> Iterator[Document | Skipped]:
    import pypdfium2 as pdfium

    started = time.monotonic()
    try:
        pages, info = extract_pages(data, opts)
    except pdfium.PdfiumError as e:
        reason = str(e)
        if "password" in reason.lower():
            yield Skipped(str(path), "encrypted PDF (needs a password)")
        else:
            yield Skipped(str(path), f"damaged PDF: {reason}")
        return
    ocred = False
    if not all(pages) and opts.ocr:
        # OCR gets most of the file's time, so that a PDF with text keeps it if OCR runs out.
        budget = max(1.0, 0.8 * opts.file_timeout - (time.monotonic() - started))
        try:
            blank = [number for number, text in enumerate(pages, 1) if not text]
            pages, info = extract_pages(ocr(data, blank, budget), opts)
            ocred = True
        except (RuntimeError, OSError, pdfium.PdfiumError) as e:
            if not any(pages):
                yield Skipped(str(path), f"no text layer (scanned?), and OCR failed: {e}")
                return
    if not any(pages):
        hint = "" if opts.ocr else "; --ocr reads it with OCRmyPDF"
        yield Skipped(str(path), f"no text layer (scanned?): none of its {len(pages)} pages has text{hint}")
        return
    text, starts = join_pages(pages)
    metadata = {"pages": len(pages), "page_starts": starts}
    if ocred:
        metadata["ocr"] = True
    if not all(pages):
        metadata["pages_without_text"] = [i + 1 for i, text in enumerate(pages) if not text]
    for key, name in (("Author", "author"), ("Subject", "subject"), ("Keywords", "keywords")):
        if (info.get(key) or "").strip():
            metadata[name] = info[key].strip()
    created = pdf_date(info.get("CreationDate"))
    if created:
        metadata["created"] = created
    title = (info.get("Title") or "").strip() or heading(next(p for p in pages if p)) or path.name
    yield Document(id=str(path), text=text, title=title, source=str(path), metadata=metadata)
