"""Turn files into documents: one file read by its format's reader
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

from searcher.readers.documents import READERS as READERS_KEY, Document, Skipped, TooLarge, check_chars
from searcher.readers.formats import READERS
from searcher.readers.options import LoadOptions
from searcher.readers.walk import walk_paths
from searcher.sanitize import clean_metadata, clean_text, is_blank

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
                if opts.readers and READERS_KEY not in item.metadata:
                    item.metadata[READERS_KEY] = list(opts.readers)
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
