"""Keeping an index in line with its remote sources (searcher/sources/): the same incremental
rules as a folder run, and the record of what the index was built from.

`sync_source(index, source)` lists the source's items and compares each with what the index
holds: an item whose key and version are stored costs nothing (not read, not encoded); a new
or changed one is read (`Source.read`) and goes through the same readers as a file
(`load_item`, in the worker processes, with --file-timeout); the documents of items no longer
listed are removed, and the rows that left an item that was read again. An item that cannot
be read is reported as skipped with its reason and keeps its documents; the run goes on. A
listing that fails as a whole raises SourceError before anything changed: nothing is pruned.

Which documents came from which source, and at which version, is kept with the documents
(their metadata's `source_url` and `source_version`: SOURCE_KEYS), so it is committed with
them; `sources.json` in the index folder records each source's URL, its options (never a
secret: sources hold none), its last sync, counts and errors, for `searcher sources`,
`searcher index` with no path (`sync_recorded`) and the poller of `searcher watch` and
`serve --watch` (`SourcePoller`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

from searcher.errors import SearcherError
from searcher.index.watch import Background
from searcher.index.writer import UNFINISHED, IndexReport
from searcher.readers.documents import Document, Skipped, check_readers
from searcher.readers.formats import READERS
from searcher.readers.loaders import load_item, read_pooled, too_large, unsupported
from searcher.readers.options import LoadOptions
from searcher.sources.base import Item, Source, SourceError, canonical_url, open_source
from searcher.storage.files import write_atomic
from searcher.storage.folder import SOURCES

log = logging.getLogger(__name__)

SOURCES_FILE = SOURCES  # sources.json
DEFAULT_POLL_INTERVAL = 300.0  # seconds between two syncs of the remote sources (watch, serve --watch)
MAX_ERRORS = 50  # skip reasons kept in a source's record


def _stores(index) -> list:
    return [shard.store for shard in index.shards] if getattr(index, "sharded", False) else [index.store]


def item_facts(source: Source, item: Item) -> dict:
    """The metadata every document of `item` gets (a reader's own keys win, but for
    source_url and source_version: load_item)."""
    facts = {"type": PurePosixPath(item.name).suffix.lower().lstrip("."), "size": item.size,
             "modified": item.modified, "folder": item.folder, **item.metadata,
             "source_url": source.url, "source_version": item.version}
    return {k: v for k, v in facts.items() if v is not None}


def sync_source(index, source: Source, options: LoadOptions | None = None, progress=None,
                on_conflict: str = "skip", encoder=None, reread: bool = False) -> IndexReport:
    """One incremental run of `index` (an Index or a ShardedIndex) over `source` (see the
    module's docstring). SourceError when the listing fails: the index is as it was.
    `reread`: read every item, changed or not (its documents' readers changed: their rows
    are rewritten, nothing is encoded again)."""
    options = options or LoadOptions()
    if options.readers is None and getattr(source, "readers", None) is not None:  # an IMAP mailbox's owner
        options = copy.copy(options)
        options.readers = check_readers(source.readers)
    started = time.perf_counter()
    try:
        listing = list(source.items())
    except SourceError:
        raise
    except Exception as e:  # a source's bug: its message may echo what it was given
        raise SourceError(f"cannot list {source.url} ({type(e).__name__})") from None
    items = [i for i in listing if isinstance(i, Item)]
    before = IndexReport(skipped=[s for s in listing if isinstance(s, Skipped)])
    stored: dict[str, set] = {}  # key -> the versions its documents carry
    stored_docs = [row for store in _stores(index) for row in store.source_documents(source.url, UNFINISHED)]
    for _, key, version in stored_docs:
        stored.setdefault(key, set()).add(version)
    counts = {}
    for _, key, _ in stored_docs:
        counts[key] = counts.get(key, 0) + 1
    changed = []
    for item in items:
        if stored.get(item.key) == {item.version} and not reread:
            before.unchanged += counts[item.key]
        else:
            changed.append(item)

    seen_ids: set[str] = set()
    read_keys: set[str] = set()

    def jobs() -> Iterator:
        for item in changed:
            if READERS.get(PurePosixPath(item.name).suffix.lower()) is None:
                yield Skipped(item.key, unsupported(PurePosixPath(item.name)).reason)
                continue
            if item.size is not None and item.size > options.max_file_bytes:
                yield Skipped(item.key, too_large(item.size, options))
                continue
            try:
                data = source.read(item)
            except (SourceError, OSError) as e:
                yield Skipped(item.key, str(e) if isinstance(e, SourceError) else f"cannot read ({type(e).__name__})")
                continue
            if len(data) > options.max_file_bytes:
                yield Skipped(item.key, too_large(len(data), options))
                continue
            yield item.key, load_item, (item.key, item.name, data, item_facts(source, item), options)

    def documents() -> Iterator[Document | Skipped]:
        for doc in read_pooled(jobs(), options):
            if isinstance(doc, Document):
                seen_ids.add(doc.id)
                read_keys.add(doc.source)
            yield doc

    report = before.merge(index.add_documents(documents(), progress=progress, on_conflict=on_conflict,
                                              encoder=encoder))
    listed = {i.key for i in items} | {s.path for s in before.skipped}
    gone = [doc_id for doc_id, key, _ in stored_docs
            if doc_id not in seen_ids and (key not in listed or key in read_keys)]
    if gone:
        report.removed += index.delete(gone)
    report.seconds = time.perf_counter() - started
    return report


# -- the record ------------------------------------------------------------------------
def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_sources(index_dir: str | Path) -> list[dict]:
    """The sources recorded for the index in `index_dir` (none: an empty list)."""
    path = Path(index_dir) / SOURCES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise SearcherError(f"{path} cannot be read ({type(e).__name__}: {e}); delete it and index the "
                            f"sources again to record them") from None
    sources = data.get("sources") if isinstance(data, dict) else None
    return [s for s in sources if isinstance(s, dict) and isinstance(s.get("url"), str)] if isinstance(sources, list) else []


SECRET_WORDS = ("secret", "password", "token", "access_key")


def public_options(options: dict) -> dict:
    """`options` less anything named like a secret (sources take none; this is the last guard)."""
    return {k: v for k, v in options.items()
            if v is not None and not any(word in k.lower() for word in SECRET_WORDS)}


def record_sync(index_dir: str | Path, source: Source, report: IndexReport, documents: int | None = None,
                readers: list[str] | None = None) -> dict:
    """Write what the sync of `source` did into sources.json (the source added when new),
    with the readers its documents were given (docs/access.md)."""
    def change(record: dict) -> None:
        if readers is not None:  # a run that names none leaves them as they were
            record["readers"] = list(readers)
        record.setdefault("scheme", source.scheme)
        record.setdefault("added", record["last_sync"])
        record["options"] = public_options(dict(source.options))
        record["last_success"] = record["last_sync"]
        record["counts"] = {"added": report.added, "updated": report.updated, "unchanged": report.unchanged,
                            "removed": report.removed, "skipped": len(report.skipped)}
        record["errors"] = [str(s) for s in report.skipped[:MAX_ERRORS]]
        record["error"] = None

    return _update(index_dir, source.url, change, documents, add=True)


def record_error(index_dir: str | Path, url: str, error: str, documents: int | None = None) -> dict | None:
    """Write the `error` that stopped the sync of the recorded source `url` into sources.json;
    its options stay those of its last success (a wrong endpoint given once does not replace
    them). A source that is not recorded is not added."""
    return _update(index_dir, url, lambda record: record.update(error=error), documents, add=False)


def _update(index_dir, url: str, change: Callable[[dict], None], documents: int | None, add: bool) -> dict | None:
    records = read_sources(index_dir)
    record = next((r for r in records if r["url"] == url), None)
    if record is None:
        if not add:
            return None
        record = {"url": url}
        records.append(record)
    record["last_sync"] = now()
    change(record)
    if documents is not None:
        record["documents"] = documents
    path = Path(index_dir) / SOURCES_FILE
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps({"sources": records}, indent=2), encoding="utf-8"))
    return record


def sync(index, url: str, source_options: dict | None = None, options: LoadOptions | None = None, progress=None,
         on_conflict: str = "skip", encoder=None) -> IndexReport:
    """Open the source at `url`, sync `index` with it and record the outcome in the index
    folder; SourceError when it failed (recorded too, when the source is recorded)."""
    try:
        source = open_source(url, source_options)
    except SourceError as e:
        record_error(index.path, canonical_url(url), str(e), count_documents(index, canonical_url(url)))
        raise
    readers = (options or LoadOptions(workers=0)).readers
    record = next((r for r in read_sources(index.path) if r["url"] == source.url), None)
    # Readers other than those its documents were given: every item is read again, so that
    # unchanged ones get them too (their rows rewritten, nothing encoded).
    reread = record is not None and readers is not None and sorted(record.get("readers") or []) != sorted(readers)
    try:
        report = sync_source(index, source, options, progress, on_conflict, encoder, reread)
    except SourceError as e:
        record_error(index.path, source.url, str(e), count_documents(index, source.url))
        raise
    finally:
        source.close()
    record_sync(index.path, source, report, documents=count_documents(index, source.url), readers=readers)
    return report


def count_documents(index, url: str) -> int:
    """How many documents of `index` came from the source `url`."""
    return sum(len(store.source_documents(url)) for store in _stores(index))


def sync_recorded(index, options: LoadOptions | None = None, progress=None, on_conflict: str = "skip",
                  encoder=None) -> list[tuple[str, IndexReport | None, str | None]]:
    """Sync every source recorded for `index`, each on its own: [(url, report or None, error
    or None)]; one that fails does not stop the others."""
    done = []
    for record in read_sources(index.path):
        run = options
        if (options is None or options.readers is None) and record.get("readers") is not None:  # as given last
            run = copy.copy(options or LoadOptions())
            run.readers = check_readers(record["readers"])
        try:
            report = sync(index, record["url"], record.get("options") or {}, run, progress, on_conflict, encoder)
            done.append((record["url"], report, None))
        except SourceError as e:
            done.append((record["url"], None, str(e)))
    return done


class SourcePoller(Background):
    """Syncs the sources recorded for `index` every `interval` seconds in a daemon thread
    (`searcher watch`, `serve --watch`), the first time at once. Runs go through
    `write(run, wait)` like the folder watcher's (searcher/index/watch.py); `on_run(url,
    report, error)` after each source's sync. An error is logged and the poller carries on."""

    thread_name = "searcher-poll"

    def __init__(self, index, interval: float = DEFAULT_POLL_INTERVAL, options: LoadOptions | None = None, *,
                 on_conflict: str = "skip", write: Callable[[Callable, float | None], object] | None = None,
                 on_run: Callable[[str, IndexReport | None, str | None], None] | None = None):
        if interval <= 0:
            raise ValueError("the poll interval is seconds, more than zero")
        super().__init__()
        self.index = index
        self.interval = float(interval)
        self.options = options
        self.on_conflict = on_conflict
        self.on_run = on_run
        self.polls = 0
        self._write = write or (lambda run, wait=None: run(self.index))

    def run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(self.interval)

    def poll(self) -> list:
        """Sync every recorded source now."""
        try:
            done = self._write(lambda index: sync_recorded(index, self.options, on_conflict=self.on_conflict), -1) or []
        except Exception as e:
            log.error("poll: the sync of the sources failed, it is tried again: %s: %s", type(e).__name__, e)
            done = []
        self.polls += 1
        for url, report, error in done:
            if error:
                log.error("poll: %s: %s", url, error)
            if self.on_run is not None:
                self.on_run(url, report, error)
        return done
