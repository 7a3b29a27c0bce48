"""Which reader reads which file: the suffix decides."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from searcher.readers.documents import Document, Skipped
from searcher.readers.email import read_eml, read_mbox
from searcher.readers.office import read_docx, read_epub, read_pptx
from searcher.readers.pdf import read_pdf
from searcher.readers.tables import read_csv, read_jsonl
from searcher.readers.text import read_html, read_plain

if TYPE_CHECKING:
    from searcher.readers.options import LoadOptions


Reader = Callable[[Path, bytes, "LoadOptions"], Iterator[Document | Skipped]]

# What an e-mail's attachments are read by: every format but e-mail itself.
ATTACHMENT_READERS: dict[str, Reader] = {
    ".txt": read_plain,
    ".text": read_plain,
    ".md": read_plain,
    ".markdown": read_plain,
    ".html": read_html,
    ".htm": read_html,
    ".jsonl": read_jsonl,
    ".ndjson": read_jsonl,
    ".csv": read_csv,
    ".tsv": read_csv,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".pptx": read_pptx,
    ".epub": read_epub,
}
READERS: dict[str, Reader] = {
    **ATTACHMENT_READERS,
    ".eml": partial(read_eml, readers=ATTACHMENT_READERS),
    ".mbox": partial(read_mbox, readers=ATTACHMENT_READERS),
}
