"""Turn files into documents: the options of a run, one file read by its format's reader
(searcher/readers/formats.py), many read in worker processes with a time limit each.

One reader per format. A reader never raises on bad input: it yields the documents it can
and reports what it had to skip (with a reason a person can act on), so that one broken
file never stops a run.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from searcher.readers.documents import Document, Skipped, TooLarge, check_chars
from searcher.readers.formats import READERS
from searcher.readers.walk import walk_paths
from searcher.sanitize import clean_metadata, clean_text, is_blank

DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024


DEFAULT_FILE_TIMEOUT = 60.0  # seconds one file's extraction may take before it is skipped
# Per-file bounds, checked while a file is read (in its worker, under --file-timeout) and
# before any of its text is chunked: chunking and encoding cost grows with the text, and a
# 1.2 MB PDF whose page tree lists one page 200,000 times made 141k chunks. A file over one
# is skipped with the reason. Characters: by default as many as --max-file-mb allows bytes,
# so that no text file under the size limit is refused, but a PDF or zip-packaged document
# cannot unpack to more.
DEFAULT_MAX_PAGES = 10_000  # PDF pages, PPTX slides, EPUB chapters


class LoadOptions:
    """Knobs for the readers (CSV columns, size, page and character limits), for walking folders (symlinks) and for
    reading in worker processes: `workers` processes (0: in this process, with no time limit)
    and `file_timeout` seconds a file may take."""

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
    ):
        self.csv_text_column = csv_text_column
        self.csv_id_column = csv_id_column
        self.csv_title_column = csv_title_column
        self.max_file_bytes = max_file_bytes
        self.max_pages = max_pages
        self.max_chars = max_file_bytes if max_chars is None else max_chars  # a file's text, all its documents
        self.workers = min(4, os.cpu_count() or 1) if workers is None else max(0, int(workers))
        self.file_timeout = float(file_timeout)
        self.ocr = ocr  # PDF pages without a text layer go through OCRmyPDF (searcher/readers/pdf.py)
        # Symlinks out of the tree walked are not followed unless follow_links; `within`: the
        # folders a path given may not lead out of (a watcher's), see walk_paths.
        self.follow_links = follow_links
        self.within = list(within) if within else None


# Metadata keys that say where a row sits in its file (JSON Lines line, CSV row). They are
# kept with the document but are not its content: a row that moves is not a changed row.
LOCATION_KEYS = ("line", "row")
# What every file document gets in its metadata (a reader's own key of the same name wins):
# type (the extension), size in bytes, modified (ISO 8601, UTC) and folder. They describe
# the file, not its content: a change to them alone costs no encoding (searcher/index/writer.py).
FILE_KEYS = ("type", "size", "modified", "folder")


def file_facts(path: Path, size: int, mtime: float) -> dict:
    return {"type": path.suffix.lower().lstrip("."), "size": size,
            "modified": datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds"),
            "folder": str(path.parent)}


def load_file(path: Path, opts: LoadOptions | None = None) -> Iterator[Document | Skipped]:
    """Read one file into documents; every failure becomes a Skipped with its reason."""
    opts = opts or LoadOptions()
    path = Path(os.path.abspath(path))  # a file's document id is its absolute path
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        yield Skipped(str(path), f"unsupported file type '{path.suffix or '(none)'}'")
        return
    try:
        stat = path.stat()
        size = stat.st_size
        if size > opts.max_file_bytes:
            yield Skipped(str(path), f"file is {size:,} bytes, over the {opts.max_file_bytes:,}-byte limit")
            return
        data = path.read_bytes()
    except OSError as e:
        yield Skipped(str(path), f"cannot read ({e.strerror or e})")
        return
    if not data.strip():
        yield Skipped(str(path), "empty file")
        return
    chars = kept = 0
    try:
        facts = file_facts(path, size, stat.st_mtime)
        for item in reader(path, data, opts):
            if isinstance(item, Document):
                chars += len(item.text)
                check_chars(chars, opts)
                kept += 1
                item.metadata = {**facts, **item.metadata}
                item = clean_document(item)
            if isinstance(item, Document) and is_blank(item.text):
                yield Skipped(item.source if item.id == item.source else f"{item.source} [{item.id}]",
                              "no text (only whitespace or control characters)")
            else:
                yield item
    except TooLarge as e:  # the documents of the file before it were yielded
        yield Skipped(str(path), f"{e}{f'; the {kept:,} documents before that point were kept' if kept else ''}")
    except (ValueError, UnicodeError, RecursionError) as e:
        yield Skipped(str(path), str(e))
    except Exception as e:  # a reader's bug on one odd file must not stop the run
        yield Skipped(str(path), f"cannot read ({type(e).__name__}: {e})")


def clean_document(doc: Document) -> Document:
    """The document with its strings cleaned and metadata JSON-safe (searcher/sanitize.py)."""
    return Document(id=clean_text(doc.id), text=clean_text(doc.text), title=clean_text(doc.title),
                    source=clean_text(doc.source), metadata=clean_metadata(doc.metadata))


def _read_in_worker(path: Path, opts: LoadOptions) -> list[Document | Skipped]:
    """What a worker sends back: plain documents and skips, never an exception (one the parent
    could not rebuild would break the pool)."""
    try:
        return list(load_file(path, opts))
    except BaseException as e:
        return [Skipped(str(path), f"cannot read ({type(e).__name__}: {e})")]


def load_paths(paths: Iterable[str | os.PathLike], opts: LoadOptions | None = None) -> Iterator[Document | Skipped]:
    """Documents from every supported file under `paths`, with Skipped entries for the rest, in
    the order the files are found.

    Files are read by `opts.workers` worker processes (pebble's ProcessPool), a few files ahead
    of what is yielded, so extraction runs beside encoding and on every core; a file whose
    reader runs past `opts.file_timeout` seconds (a PDF that makes the parser loop) or kills its
    process is skipped with that reason, and the worker is replaced."""
    opts = opts or LoadOptions()
    if opts.workers == 0:
        for item in walk_paths(paths, opts.follow_links, opts.within):
            if isinstance(item, Skipped):
                yield item
            else:
                yield from load_file(item, opts)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import TimeoutError as Timeout

    import pebble

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers never tokenize
    window: deque = deque()  # (path or None, future or [items]) in the order found
    with pebble.ProcessPool(max_workers=opts.workers, context=multiprocessing.get_context("fork")) as pool:
        def drain(keep: int):
            while len(window) > keep:
                path, work = window.popleft()
                if isinstance(work, list):
                    yield from work
                    continue
                try:
                    # The oldest file in the window is being read, or done: bound the wait anyway.
                    yield from work.result(timeout=opts.file_timeout + 60)
                except Timeout:
                    yield Skipped(str(path), f"reading took over {opts.file_timeout:g} s (--file-timeout); skipped")
                except pebble.ProcessExpired as e:
                    yield Skipped(str(path), f"the reader's process died ({e}); skipped")
                except Exception as e:  # a reader's own failure, raised in the worker
                    yield Skipped(str(path), f"cannot read ({type(e).__name__}: {e})")

        try:
            for item in walk_paths(paths, opts.follow_links, opts.within):
                if isinstance(item, Skipped):
                    window.append((None, [item]))
                else:
                    try:
                        work = pool.schedule(_read_in_worker, (item, opts), timeout=opts.file_timeout)
                    except RuntimeError:  # the pool broke: read this file here
                        work = list(load_file(item, opts))
                    window.append((item, work))
                yield from drain(keep=4 * opts.workers)
            yield from drain(keep=0)
        except BaseException:  # the consumer failed or stopped: do not wait for the files ahead
            pool.stop()
            raise
