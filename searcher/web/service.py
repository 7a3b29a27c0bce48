"""The web layer's view of an index: searches timed, damage survived, writes taken in turn.

One `Index` is shared by every request thread. `Index` makes that safe: its reads of SQLite
and FAISS go through the index's own lock, and query encoding goes through its
`QueryEncoder`, which batches concurrent queries into one forward pass (so the model and its
tokenizer, which are not promised to be thread-safe, are only ever used by one thread).

When the index's files become unreadable under a running server (content.db truncated,
deleted or replaced, a vectors file missing), requests get `IndexUnavailable` (a JSON 503
under /api) instead of a bare 500, and the service reopens the index once it reads again:
see `SearchService`.

Writes (the write API: `add_documents`, `delete`; the folder watcher's runs: `write`) go
through the service too, one at a time (searcher/web/write_queue.py). Each commits a new generation;
`Index` encodes outside its search lock, so searches go on answering while a write
encodes, each on one whole generation.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path, PurePath
from typing import Any, Callable, TypeVar

from searcher.errors import DatabaseCorruptError, ShardUnavailable
from searcher.index import DATABASE, IndexCorruptError, IndexNotFoundError, SearcherError
from searcher.index.writer import IndexReport
from searcher.search.access import Viewer

from searcher.web.latency import LatencyWindow
from searcher.web.requests import BadRequest, SearchPage, SearchRequest
from searcher.web.write_queue import WriteQueue

log = logging.getLogger(__name__)
T = TypeVar("T")

GENERATION_TRIES = 3  # searches run again when a commit lands during one, so the answer names one generation


# What reading a damaged index raises: SQLite's errors (a truncated or replaced content.db:
# "database disk image is malformed", "no such table"), the index's own (vectors that do not
# match the database, a missing vectors file) and the OS's. Whether the index is really
# unreadable is then decided by a probe (`probe`), not by the exception alone.
INDEX_ERRORS = (sqlite3.DatabaseError, SearcherError, OSError)
PROBE_QUERY = "health check"


class MapUnavailable(Exception):
    """This index has no map of its corpus; the message says why."""


class SuggestUnavailable(Exception):
    """This index gives no suggestions; the message says why."""


class IndexUnavailable(Exception):
    """The index cannot be read right now; the message says why, without server paths."""


def probe(index) -> int:
    """A cheap real read of the index: count its documents and run a one-hit dense search
    (the live generation's vectors, reloaded if another process committed, and the chunk
    table through this thread's read connection). Returns the document count."""
    documents = len(index)
    index.search(PROBE_QUERY, k=1, mode="dense")
    return documents


def model_name(model):
    """The model as a client is shown it: a model folder (`--model DIR`, stored as its absolute
    path) by the folder's name, never the server's path; a name as it is."""
    if isinstance(model, str) and (PurePath(model).is_absolute() or model.startswith("~")):
        return PurePath(model).name or model
    return model


def without_server_paths(info: dict) -> dict:
    """`Index.info()` as clients see it: no folder path, the model (also each stored
    evaluation's) by name, no evaluation's dataset path."""
    out = {k: v for k, v in info.items() if k != "path"}
    if "model" in out:
        out["model"] = model_name(out["model"])
    if isinstance(out.get("evaluations"), list):
        out["evaluations"] = [
            {**{k: v for k, v in e.items() if k != "dataset_path"},
             **({"model": model_name(e["model"])} if "model" in e else {})} if isinstance(e, dict) else e
            for e in out["evaluations"]]
    return out


def describe(error: BaseException) -> str:
    """Why the index cannot be read, for a client: SQLite's message (it names no paths)."""
    if isinstance(error, sqlite3.DatabaseError):
        return f"its database cannot be read ({str(error)[:200]})"
    if isinstance(error, FileNotFoundError):
        return f"{DATABASE} is missing"
    if isinstance(error, IndexNotFoundError):
        return "its manifest is missing"
    if isinstance(error, DatabaseCorruptError):  # repair cannot rebuild a database, only salvage from it
        return ("its database is damaged (`searcher check` says what is wrong; `--repair` can only salvage "
                "what SQLite's .recover reads from it)")
    if isinstance(error, IndexCorruptError):  # vectors, keyword files or manifest: check knows which
        return "its files are damaged or disagree (`searcher check` says what is wrong and whether `--repair` fixes it)"
    if isinstance(error, OSError):
        return f"its files cannot be read ({error.strerror or type(error).__name__})"
    return f"it cannot be read ({type(error).__name__})"


def database_identity(db: Path | None) -> tuple[int, int] | None:
    """(device, inode) of content.db: a file moved over it, or deleted, shows as a change."""
    if db is None:
        return None
    try:
        st = db.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def reopen(old):
    """Open the index in `old`'s folder again, on its loaded model (reading only: a damaged or
    empty content.db is refused, never turned into an empty index)."""
    return old.reopen()


class ServiceObserver:
    """What a served index tells about its work as it happens (searcher/web/metrics.py counts
    it); this one hears nothing. Called on the request's (or the watcher's) thread."""

    def searched(self, mode: str, seconds: float) -> None:
        """A search in `mode` was answered in `seconds`."""

    def wrote(self, kind: str, seconds: float, commits: int, report: IndexReport | None) -> None:
        """A write of `kind` (documents, delete, watch) took `seconds` (its turn's wait not
        counted) and made `commits` commits; `report`: its IndexReport, where it has one."""


def close_quietly(index) -> None:
    try:
        index.close()
    except Exception:
        log.debug("closing the old index failed", exc_info=True)


class SearchService:
    """Wraps an open `Index` for concurrent request threads, and survives damage to its files.

    Every read goes through `_call`. When one fails with an index error and a probe of the
    index fails too, the index is marked broken and the request gets `IndexUnavailable`.
    While broken, each request (at most once per `retry_interval` seconds) first tries to
    recover: probe the open index again (a file restored in place reads again through the
    same connections), else check content.db read-only, reopen the index and probe the new
    one, and swap it in only if that works. content.db being deleted or replaced (a new
    inode) is noticed on every request, by one stat, and handled the same way, since the
    open connections would go on reading the old file.
    """

    retry_interval = 1.0

    def __init__(self, index, opener: Callable[[Any], Any] = reopen, clock: Callable[[], float] = time.monotonic,
                 observer: ServiceObserver | None = None):
        self.index = index
        self.observer = observer or ServiceObserver()
        self._open = opener
        self._clock = clock
        self._lock = threading.Lock()
        self._broken: str | None = None  # why the index cannot be read, None while it can
        self._last_try = -float("inf")  # when recovery was last tried (clock seconds)
        # A sharded index (searcher/cluster/sharded.py) has no content.db of its own: its shards do.
        self._db = Path(index.path) / DATABASE if index.path is not None and not index.sharded else None
        self._identity = database_identity(self._db)
        self.latency = LatencyWindow()  # the durations of recent searches, for /about
        self.writes = WriteQueue(self._generation_or_none)
        self.name: str | None = None  # set when a server has several indexes (its messages name it)

    # -- the guarded reads ---------------------------------------------------------------
    def search(self, req: SearchRequest, viewer: Viewer | None = None) -> SearchPage:
        """`req`'s page, of the documents `viewer` may read (searcher/search/access.py; None: all)."""
        mode = req.options().mode
        started = time.perf_counter()
        # One extra hit tells whether a next page exists.
        options = {"where": req.where, "sort": req.sort, "recency": req.recency}
        options = {name: value for name, value in options.items() if value is not None}
        if viewer is not None:
            options["access"] = viewer
        try:
            for _ in range(GENERATION_TRIES):
                before = self.generation()
                if req.facets:
                    hits, facets = self._call(lambda index: index.search_with_facets(
                        req.query, req.k + 1, req.offset, req.facets, mode=mode, **options))
                else:
                    hits, facets = self._call(lambda index: index.search(req.query, req.k + 1, req.offset,
                                                                         mode=mode, **options)), None
                generation = self.generation()
                if generation == before:
                    break  # no commit landed meanwhile: every hit comes from this generation
            else:
                generation = None  # commits kept landing: the answer names none
        except ValueError as e:  # a filter the engine refuses (searcher/search/filters.py says why)
            raise BadRequest(str(e)) from e
        seconds = time.perf_counter() - started
        took_ms = round(seconds * 1000, 1)
        self.latency.record(took_ms)
        self.observer.searched(mode, seconds)
        return SearchPage(req, hits[: req.k], len(hits) > req.k, took_ms, facets, generation=generation,
                          missing_shards=list(hits.missing_shards), suggestion=hits.suggestion,
                          close_match=hits.close_match)

    def generation(self) -> int | None:
        """The generation committed in the index's database now, as this thread's connection
        reads it: what a search's hits are read from (chunk rows of other generations drop
        out there), so a search between two equal readings is of that generation whole.
        None for a sharded index (each shard has its own)."""
        return self._call(lambda index: index.committed_generation())

    def similar(self, doc_id: str, k: int, where: dict | None = None, viewer: Viewer | None = None) -> list:
        """Index.similar through the same guard as searches (KeyError: no such document, or
        one `viewer` may not read)."""
        access = {} if viewer is None else {"access": viewer}
        try:
            return self._call(lambda index: index.similar(doc_id, k=k, where=where, **access))
        except ValueError as e:
            raise BadRequest(str(e)) from e

    def document(self, doc_id: str, viewer: Viewer | None = None) -> dict | None:
        """The stored document, or None (none such, or one `viewer` may not read)."""
        access = {} if viewer is None else {"access": viewer}
        return self._call(lambda index: index.get_document(doc_id, **access))

    def corpus_map(self, viewer: Viewer | None = None) -> dict:
        """The map of the corpus (searcher/quality/corpus_map.py), computed once per generation,
        with only the documents `viewer` may read; MapUnavailable for a sharded index (not made
        for one yet)."""
        from searcher.quality.corpus_map import corpus_map, readers_by_document, visible_map

        if self.index.sharded:
            raise MapUnavailable("the map is not available for a sharded index yet: search it, or open the "
                                 "map of the index it was split from")
        payload = self._call(corpus_map)
        if viewer is None:
            return payload
        readers = self._call(readers_by_document)
        return visible_map(payload, lambda doc_id: doc_id not in readers or
                           viewer.can_read({"readers": readers[doc_id]}))

    def suggest(self, prefix: str, limit: int, viewer: Viewer | None = None) -> list:
        """Index.suggest through the guard (BadRequest: a bad prefix; SuggestUnavailable for a
        sharded index, which has no vocabulary of its own yet)."""
        if self.index.sharded:
            raise SuggestUnavailable("suggestions are not available for a sharded index yet")
        try:
            access = {} if viewer is None else {"access": viewer}
            return self._call(lambda index: index.suggest(prefix, limit, **access))
        except ValueError as e:
            raise BadRequest(str(e)) from e

    def analyzer(self):
        """The index's keyword analysis (what the highlighter marks), or None for the default."""
        return self.index.analyzer

    def stats(self) -> dict:
        info = without_server_paths(self._call(lambda index: index.info()))
        keys = ("documents", "chunks", "model", "dimension", "pooling", "chunk_tokens", "overlap", "generation")
        return {k: info[k] for k in keys if k in info}

    def about(self) -> dict:
        """The index's own report (`Index.info()`, without server paths) and this server's recent
        search latencies."""
        return {**without_server_paths(self._call(lambda index: index.info())), "latency": self.latency.summary()}

    def count(self, viewer: Viewer | None = None) -> int:
        """The documents `viewer` may read (None: all)."""
        if viewer is None:
            return self._call(len)
        return self._call(lambda index: index.count(viewer))

    def counts(self) -> dict:
        """The index's counts (Index.counts: no walk of the folder), for /metrics."""
        return self._call(lambda index: index.counts())

    @property
    def broken(self) -> str | None:
        """Why the index cannot be read, while the damage guard holds it broken; None otherwise."""
        return self._broken

    def health(self) -> int:
        """The document count after a real probe of the index; IndexUnavailable if it fails."""
        return self._call(probe)

    # -- writes ------------------------------------------------------------------------------
    def add_documents(self, documents: list[dict], on_conflict: str = "skip"):
        """Index.add_documents, one write at a time; returns its IndexReport. IndexLockedError
        when another process is writing to the index, WriteBusy when this one has been busy
        for `write_wait` seconds."""
        documents = list(documents)
        return self._write("documents", lambda index: index.add_documents(documents, on_conflict=on_conflict))

    def delete(self, doc_ids: list[str]) -> tuple[int, int | None]:
        """Index.delete, one write at a time: how many of the documents were there, and the
        generation after it."""
        # the generation read under the write lock: the one its own commit made
        return self._write("delete", lambda index: (index.delete(doc_ids), index.committed_generation()))

    def write(self, run: Callable[[Any], T], wait: float | None = None) -> T:
        """`run(index)` as one write among the others (the folder watcher's runs, searcher/index/watch.py),
        waiting `wait` seconds for its turn (None: `write_wait`; negative: as long as it takes),
        then WriteBusy."""
        return self._write("watch", run, wait)

    def _write(self, kind: str, run: Callable[[Any], T], wait: float | None = None) -> T:
        """`run(index)` in its turn, timed, told to the observer with its commits: the
        generations it moved the index by (each commit takes the next number; only the first
        commit after a crashed write may skip the numbers of the files it left)."""
        with self.writes.turn(wait):
            before = self._generation_or_none()
            started = time.perf_counter()
            result = self._call(run)
            seconds = time.perf_counter() - started
            after = self._generation_or_none()
        commits = after - before if before is not None and after is not None and after > before else 0
        self.observer.wrote(kind, seconds, commits, result if isinstance(result, IndexReport) else None)
        return result

    @property
    def write_wait(self) -> float:
        """The seconds a write waits for the one before it, then WriteBusy."""
        return self.writes.wait

    @write_wait.setter
    def write_wait(self, seconds: float) -> None:
        self.writes.wait = seconds

    def _generation_or_none(self) -> int | None:
        try:
            return self.generation()
        except (IndexUnavailable, *INDEX_ERRORS):
            return None

    # -- damage and recovery -------------------------------------------------------------
    def _call(self, read: Callable[[Any], T]) -> T:
        for attempt in (0, 1):
            index = self._current()
            try:
                return read(index)
            except ShardUnavailable:
                raise  # a shard served elsewhere did not answer: nothing here to probe or reopen
            except INDEX_ERRORS as e:
                if attempt == 0 and self.index is not index:
                    continue  # another thread swapped in a reopened index meanwhile: read that
                self._check_after(index, e)  # raises IndexUnavailable when the index is unreadable
                raise  # the index reads fine: this error is about this request
        raise AssertionError("unreachable")

    def _current(self):
        """The index to read, after recovering it if it is broken or its database was replaced."""
        if self._broken is None and database_identity(self._db) == self._identity:
            return self.index
        with self._lock:
            if self._broken is not None or database_identity(self._db) != self._identity:
                self._recover()
            if self._broken is not None:
                raise IndexUnavailable(self._message())
            return self.index

    def _check_after(self, index, error: BaseException) -> None:
        with self._lock:
            if index is not self.index:
                return
            try:
                probe(index)
            except Exception as e:
                self._mark_broken(e if isinstance(e, INDEX_ERRORS) else error)
                self._last_try = self._clock()
                raise IndexUnavailable(self._message()) from error

    def _recover(self) -> None:
        """Under the lock: make `self.index` readable again, or leave `_broken` saying why not."""
        now = self._clock()
        if self._broken is not None and now - self._last_try < self.retry_interval:
            return
        self._last_try = now
        old = self.index
        identity = database_identity(self._db)
        if identity == self._identity and (identity is not None or self._db is None):
            try:
                probe(old)
            except Exception:
                pass  # reads still fail through the open connections: reopen
            else:
                if self._broken is not None:
                    log.warning("the index in %s reads again", old.path)
                self._broken = None
                return
        try:
            if identity is None and self._db is not None:
                raise FileNotFoundError(f"{self._db} is missing")
            new = self._open(old)
            try:
                probe(new)
            except BaseException:
                close_quietly(new)
                raise
        except Exception as e:
            self._mark_broken(e)
            return
        log.warning("reopened the index in %s", old.path)
        self.index, self._identity, self._broken = new, identity, None
        close_quietly(old)

    def _mark_broken(self, error: BaseException) -> None:
        reason = describe(error)
        if self._broken != reason:  # log each new state once, not every failed request
            log.error("the index in %s cannot be read: %s: %s", self.index.path,
                      type(error).__name__, error)
        self._broken = reason

    def _message(self) -> str:
        which = f"The search index {self.name!r}" if self.name else "The search index"
        return (f"{which} cannot be read right now: {self._broken}. "
                f"The server tries to reopen it on the next request.")
