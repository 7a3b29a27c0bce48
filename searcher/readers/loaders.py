"""Turn files into documents: one file read by its format's reader
(searcher/readers/formats.py), many read in worker processes with a time limit each.

One reader per format. A reader never raises on bad input: it yields the documents it can
and reports what it had to skip (with a reason a person can act on), so that one broken
file never stops a run.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path, PurePath, PurePosixPath
from typing import Callable, Iterable, Iterator

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
# What every document of a source's item (searcher/sources/) gets besides: the source's URL
# and the item's version, by which a sync tells its unchanged items (searcher/index/sources.py).
# Facts too: a new version with the same content costs no encoding.
SOURCE_KEYS = ("source_url", "source_version")


def file_facts(path: Path, size: int, mtime: float) -> dict:
    return {"type": path.suffix.lower().lstrip("."), "size": size,
            "modified": datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds"),
            "folder": str(path.parent)}


def load_file(path: Path, opts: LoadOptions | None = None) -> Iterator[Document | Skipped]:
    """Read one file into documents; every failure becomes a Skipped with its reason."""
    opts = opts or LoadOptions()
    path = Path(os.path.abspath(path))  # a file's document id is its absolute path
    if READERS.get(path.suffix.lower()) is None:
        yield unsupported(path)
        return
    try:
        stat = path.stat()
        size = stat.st_size
        if size > opts.max_file_bytes:
            yield Skipped(str(path), too_large(size, opts))
            return
        data = path.read_bytes()
    except OSError as e:
        yield Skipped(str(path), f"cannot read ({e.strerror or e})")
        return
    yield from load_data(path, data, file_facts(path, size, stat.st_mtime), opts)


def unsupported(path: PurePath) -> Skipped:
    return Skipped(str(path), f"unsupported file type '{path.suffix or '(none)'}'")


def too_large(size: int, opts: LoadOptions) -> str:
    return f"file is {size:,} bytes, over the {opts.max_file_bytes:,}-byte limit"


def load_data(path: PurePath, data: bytes, facts: dict, opts: LoadOptions) -> Iterator[Document | Skipped]:
    """The documents of one file's bytes `data`, read by the reader of `path`'s suffix, each
    with the file's `facts` in its metadata (a reader's own keys win); every failure becomes a
    Skipped with its reason. A file's, or an item of a source's (searcher/sources/)."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        yield unsupported(path)
        return
    if not data.strip():
        yield Skipped(str(path), "empty file")
        return
    chars = kept = 0
    try:
        for item in reader(path, data, opts):
            if isinstance(item, Document):
                chars += len(item.text)
                check_chars(chars, opts)
                kept += 1
                item.metadata = {**facts, **item.metadata}
                if opts.readers is not None and READERS_KEY not in item.metadata:
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


def load_item(key: str, name: str, data: bytes, facts: dict, opts: LoadOptions) -> list[Document | Skipped]:
    """The documents of one item of a source (searcher/sources/): its bytes `data` read as a
    file called `name` (its suffix picks the reader) would be, with `key` (the item's stable
    name, `s3://bucket/a/b.pdf`) in place of the file's path in their ids, sources and skips."""
    path = PurePosixPath("/", name.lstrip("/") or "unnamed")
    stand_in = str(path)

    def rekey(text: str) -> str:
        return key + text[len(stand_in):] if text.startswith(stand_in) else text

    out: list[Document | Skipped] = []
    own = {k: facts[k] for k in SOURCE_KEYS if k in facts}  # these win over a row's fields of the same name
    for item in load_data(path, data, facts, opts):
        if isinstance(item, Document):
            item.id, item.source = rekey(item.id), key
            item.metadata.update(own)
        else:
            item = Skipped(rekey(item.path), item.reason)
        out.append(item)
    return out


def clean_document(doc: Document) -> Document:
    """The document with its strings cleaned and metadata JSON-safe (searcher/sanitize.py)."""
    return Document(id=clean_text(doc.id), text=clean_text(doc.text), title=clean_text(doc.title),
                    source=clean_text(doc.source), metadata=clean_metadata(doc.metadata))


def _read_in_worker(label: str, read: Callable[..., Iterable[Document | Skipped]], args: tuple
                    ) -> list[Document | Skipped]:
    """What a worker sends back: plain documents and skips, never an exception (one the parent
    could not rebuild would break the pool)."""
    try:
        return list(read(*args))
    except BaseException as e:
        return [Skipped(label, f"cannot read ({type(e).__name__}: {e})")]


def load_paths(paths: Iterable[str | os.PathLike], opts: LoadOptions | None = None) -> Iterator[Document | Skipped]:
    """Documents from every supported file under `paths`, with Skipped entries for the rest, in
    the order the files are found, read in worker processes (`read_pooled`)."""
    opts = opts or LoadOptions()
    jobs = (item if isinstance(item, Skipped) else (str(item), load_file, (item, opts))
            for item in walk_paths(paths, opts.follow_links, opts.within))
    return read_pooled(jobs, opts)


# One file's (or source item's) reading: (its name for reports, a function, its arguments);
# the function returns or yields that file's documents and skips.
Job = tuple[str, Callable[..., Iterable[Document | Skipped]], tuple]


def read_pooled(jobs: Iterable[Job | Skipped], opts: LoadOptions) -> Iterator[Document | Skipped]:
    """The documents of every job (Skipped entries passed through), in the order of `jobs`.

    Jobs run in `opts.workers` worker processes (pebble's ProcessPool), a few ahead of what is
    yielded, so extraction runs beside encoding and on every core; a job that runs past
    `opts.file_timeout` seconds (a PDF that makes the parser loop) or kills its process is
    skipped with that reason, and the worker is replaced. `opts.workers` 0: in this process."""
    if opts.workers == 0:
        for job in jobs:
            if isinstance(job, Skipped):
                yield job
            else:
                label, read, args = job
                yield from read(*args)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import TimeoutError as Timeout

    import pebble

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers never tokenize
    window: deque = deque()  # (label or None, future or [items]) in the order found
    with pebble.ProcessPool(max_workers=opts.workers, context=multiprocessing.get_context("fork")) as pool:
        def drain(keep: int):
            while len(window) > keep:
                label, work = window.popleft()
                if isinstance(work, list):
                    yield from work
                    continue
                try:
                    # The oldest job in the window is being read, or done: bound the wait anyway.
                    yield from work.result(timeout=opts.file_timeout + 60)
                except Timeout:
                    yield Skipped(label, f"reading took over {opts.file_timeout:g} s (--file-timeout); skipped")
                except pebble.ProcessExpired as e:
                    yield Skipped(label, f"the reader's process died ({e}); skipped")
                except Exception as e:  # a reader's own failure, raised in the worker
                    yield Skipped(label, f"cannot read ({type(e).__name__}: {e})")

        try:
            for job in jobs:
                if isinstance(job, Skipped):
                    window.append((None, [job]))
                else:
                    label, read, args = job
                    try:
                        work = pool.schedule(_read_in_worker, (label, read, args), timeout=opts.file_timeout)
                    except RuntimeError:  # the pool broke: read this one here
                        work = list(read(*args))
                    window.append((label, work))
                yield from drain(keep=4 * opts.workers)
            yield from drain(keep=0)
        except BaseException:  # the consumer failed or stopped: do not wait for the jobs ahead
            pool.stop()
            raise
