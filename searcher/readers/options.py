"""The options of a run of the readers: what a CSV's columns are, a file's bounds (bytes,
pages, characters), the walk's symlink rule, the worker pool and its time limit."""

from __future__ import annotations

import os
from typing import Iterable

from searcher.readers.documents import check_readers

DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024


DEFAULT_FILE_TIMEOUT = 60.0  # seconds one file's extraction may take before it is skipped
# Per-file bounds, checked while a file is read (in its worker, under --file-timeout) and
# before any of its text is chunked: chunking and encoding cost grows with the text, and a
# 1.2 MB PDF whose page tree lists one page 200,000 times made 141k chunks. A file over one
# is skipped with the reason. Characters: by default as many as --max-file-mb allows bytes,
# so that no text file under the size limit is refused, but a PDF or zip-packaged document
# cannot unpack to more.
DEFAULT_MAX_PAGES = 10_000  # PDF pages, PPTX slides, EPUB chapters
# Chunks of one document (a PDF, a book, a JSON Lines row), counted after reading and before
# any is encoded (searcher/index/writer.py: bound_chunks): 50,000 chunks of 256 tokens are
# about 40 MB of English text, a 10,000-page book twice over, and some 20 minutes of
# encoding on 2 CPU cores.
DEFAULT_MAX_FILE_CHUNKS = 50_000


class LoadOptions:
    """Knobs for the readers (CSV columns, size, page and character limits), for walking folders (symlinks) and for
    reading in worker processes: `workers` processes (0: in this process, with no time limit)
    and `file_timeout` seconds a file may take; `readers`: who may read the documents read
    (`user:NAME`, `group:NAME`; none: every key of the index)."""

    def __init__(
        self,
        csv_text_column: str | None = None,
        csv_id_column: str | None = None,
        csv_title_column: str | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        workers: int | None = None,
        file_timeout: float = DEFAULT_FILE_TIMEOUT,
        ocr: bool = False,
        follow_links: bool = False,
        within: Iterable[str | os.PathLike] | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_chars: int | None = None,
        readers: Iterable[str] | str | None = None,
        max_chunks: int | None = DEFAULT_MAX_FILE_CHUNKS,
    ):
        self.csv_text_column = csv_text_column
        self.csv_id_column = csv_id_column
        self.csv_title_column = csv_title_column
        self.max_file_bytes = max_file_bytes
        self.max_pages = max_pages
        self.max_chars = max_file_bytes if max_chars is None else max_chars  # a file's text, all its documents
        self.max_chunks = max_chunks  # one document's chunks (None: no bound)
        self.workers = min(4, os.cpu_count() or 1) if workers is None else max(0, int(workers))
        self.file_timeout = float(file_timeout)
        self.ocr = ocr  # PDF pages without a text layer go through OCRmyPDF (searcher/readers/pdf.py)
        # Symlinks out of the tree walked are not followed unless follow_links; `within`: the
        # folders a path given may not lead out of (a watcher's), see walk_paths.
        self.follow_links = follow_links
        self.within = list(within) if within else None
        # Who may read the documents of this run (`--readers`; searcher/search/access.py): given
        # to every document that names no readers of its own (a JSON Lines row's `readers` wins).
        # None: the run says nothing, and a document read again keeps the readers it has; []:
        # every key (`--readers everyone`).
        self.readers = None if readers is None else check_readers(readers)


# Metadata keys that say where a row sits in its file (JSON Lines line, CSV row). They are
# kept with the document but are not its content: a row that moves is not a changed row.
