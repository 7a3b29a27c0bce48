"""The index folder as this process sees it: the live generation (its vectors and number), each
thread's read connection, the filter cache, and the commit of a batch of changes.

A commit writes the next vectors file (temp file, fsync, rename) and its checksum, then
commits the SQLite transaction that names it (searcher/storage/folder.py), then swaps the new
vectors in here, then removes the old file. A kill at any point leaves the last committed pair
readable. Reading opens SQLite read-only and never changes a file.

Threads: searches run in parallel, each thread on its own SQLite connection. A write in
this process encodes without holding `lock`; only changing the vectors in memory and
swapping in the new generation take it, so searches answer while a write encodes.
"""

from __future__ import annotations

import errno
import json
import logging
import sqlite3
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from searcher.errors import IndexIOError, IndexLockedError, SearcherError
from searcher.search.filter_columns import FilterColumns, MovedOn
from searcher.search.filters import compile_where
from searcher.search.retrieval import View
from searcher.storage.folder import (DATABASE, MANIFEST, commit_generation, exclusive_lock, finish_commit,
                                     load_generation, read_manifest, write_failed, write_manifest)
from searcher.storage.store import ContentStore, readable
from searcher.storage.vectors import VectorBackend

FILTER_CACHE_SIZE = 32
EVERY_CHUNK = np.zeros(0, np.int64)  # what a filter that keeps every chunk allows (searched as no filter)
EVERY_CHUNK.setflags(write=False)
log = logging.getLogger(__name__)


class LiveGeneration:
    """What searches read and writes commit to, for one open index folder. `manifest` is the
    index's (a commit that changes the vector backend's factory records it here)."""

    def __init__(self, path: Path, manifest: dict, keywords, use_gpu: bool = False):
        self.path = path
        self.manifest = manifest
        self.keywords = keywords
        self.use_gpu = use_gpu
        self.lock = threading.RLock()  # the live vectors and generation, and FAISS calls
        self.write_lock = threading.Lock()  # one writer at a time in this process
        self.writing = False  # a write session of this process keeps the vectors current itself
        self.vectors: VectorBackend | None = None
        self.generation = -1
        self._readers = threading.local()
        self._stores: list[ContentStore] = []  # every connection opened, closed by close()
        self._owners: dict[int, threading.Thread] = {}  # id of a read connection -> its thread
        self._write_store: ContentStore | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._filter_cache: OrderedDict = OrderedDict()  # (generation, filter) -> allowed chunk ids
        self._columns: FilterColumns | None = None  # the live generation's, for filters (built at the first)

    # -- connections -----------------------------------------------------------------------
    def read_store(self) -> ContentStore:
        """This thread's own read-only connection to the database (WAL lets it read while
        another process writes)."""
        store = getattr(self._readers, "store", None)
        if store is None:
            store = self._readers.store = ContentStore(self.path / DATABASE, readonly=True)
            with self.lock:
                self._prune_finished_threads()
                self._stores.append(store)
                self._owners[id(store)] = threading.current_thread()
        return store

    def _prune_finished_threads(self) -> None:
        """Close the read connections of threads that have ended (a server's worker threads come
        and go; their connections must not pile up until close())."""
        keep = []
        for store in self._stores:
            owner = self._owners.get(id(store))
            if owner is not None and not owner.is_alive():
                store.close()
                del self._owners[id(store)]
            else:
                keep.append(store)
        self._stores = keep

    def writable_store(self) -> ContentStore:
        """The one read-write connection, opened at the first write (reading never opens it);
        the keyword engine makes what it needs there (older indexes get their keyword table)."""
        if self._write_store is None:
            store = ContentStore(self.path / DATABASE)
            self._stores.append(store)
            self.keywords.prepare(store)
            self._write_store = store
        return self._write_store

    def background(self) -> ThreadPoolExecutor:
        """Threads for the keyword half of hybrid searches (each with its own read connection)."""
        with self.lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="searcher-keyword")
            return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self.lock:
            for store in self._stores:
                store.close()
            self._stores, self._owners = [], {}
            self._write_store = None
            self._readers = threading.local()
            self.keywords.close()

    # -- the live generation -----------------------------------------------------------------
    def reload_if_changed(self) -> None:
        """Load the live generation's vectors if it moved (another process committed); they are
        verified against the checksum and chunk count SQLite holds (folder.load_generation)."""
        with self.lock, readable(self.path / DATABASE):
            if self.writing:
                return
            store = self.read_store()
            if store.generation == self.generation:
                return
            self.generation, self.vectors = load_generation(self.path, self.manifest, store, use_gpu=self.use_gpu)
            self.keywords.refresh()
            self._catch_up_keywords()

    def current(self) -> tuple[VectorBackend, int]:
        """(vectors, generation) searches read now, reloaded first if another process committed."""
        with self.lock:
            self.reload_if_changed()
            return self.vectors, self.generation

    def _catch_up_keywords(self) -> None:
        """Apply keyword changes a killed writer committed in SQLite but did not apply (tantivy),
        on open and whenever the generation moves, when no process is writing (a writer applies
        them itself). Anything that stops it is logged: keyword hits are checked against the
        chunks, so a lagging engine costs recall, never a wrong hit."""
        if self.writing or not self.keywords.pending(self.read_store()):
            return
        if not self.write_lock.acquire(blocking=False):  # this process is writing: it applies them
            return
        try:
            with exclusive_lock(self.path):
                store = ContentStore(self.path / DATABASE)
                try:
                    self.keywords.catch_up(store)
                finally:
                    store.close()
        except IndexLockedError:
            log.debug("%s: a writer is at work; it applies the waiting keyword changes", self.path)
        except (SearcherError, OSError, sqlite3.Error) as e:
            log.warning("%s: keyword changes committed but not applied yet: %s", self.path, e)
        finally:
            self.write_lock.release()

    def set_search_params(self, params: dict, persist: bool = False) -> None:
        """Index.set_search_params: for this process, and with `persist` in the manifest too."""
        with self.lock:
            self.manifest = {**self.manifest, "search_params": {**self.manifest.get("search_params", {}), **params}}
            if self.vectors is not None:
                self.vectors.set_search_params(**params)
            if persist:
                with exclusive_lock(self.path):
                    manifest = read_manifest(self.path)
                    manifest["search_params"] = {**manifest.get("search_params", {}), **params}
                    try:
                        write_manifest(self.path, manifest)
                    except OSError as e:
                        raise IndexIOError(e.errno or errno.EIO, (
                            f"cannot write {self.path / MANIFEST}: {e.strerror or e}; the search parameters "
                            f"apply to this process, the manifest on disk may not have them")) from e

    def export(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(generation, chunk ids, vectors) of the live generation, reloaded first if another process
        committed: the exact vectors, or their reconstructions where the index keeps only codes (ivfpq)."""
        with self.lock:
            vectors, generation = self.current()
            return (generation, *vectors.export(approximate=True))

    # -- what a search reads -----------------------------------------------------------------
    def view(self, store: ContentStore, where: dict | None) -> View:
        """What a search reads: the live vectors (reloaded if another process committed), the
        keyword engine, and the chunk ids `where` allows (None: all)."""
        compiled = compile_where(where) if where is not None else None
        vectors, generation = self.current()
        allowed = self._allowed(store, generation, where, compiled) if compiled is not None else None
        if allowed is EVERY_CHUNK:
            allowed = None  # it keeps every chunk (a reader's filter where no document has readers): search all
        return View(self.read_store, vectors, self.keywords, self.lock, self.background, allowed)

    def _allowed(self, store: ContentStore, generation: int, where: dict, compiled: tuple[str, list]):
        """The chunk ids a filter allows, cached per generation (a page of results, its next
        page and a facet click ask for the same set). In memory over the generation's columns
        (searcher/search/filter_columns.py: milliseconds), else by SQL (filters.compile_where).
        EVERY_CHUNK where the columns say it keeps every chunk of the generation."""
        key = (generation, compiled[0], json.dumps(compiled[1], default=str))
        with self.lock:
            if key in self._filter_cache:
                self._filter_cache.move_to_end(key)
                return self._filter_cache[key]
        columns = self._columns_of(store, generation)
        allowed = columns.allowed(store, where) if columns is not None else None
        if allowed is None:
            allowed = np.array(store.chunk_ids_where(*compiled), dtype=np.int64)
            allowed.setflags(write=False)  # shared by every search of this filter; the vector backend keeps its selector
        elif len(allowed) == len(columns.chunk_ids):  # a subset of them as long as they are: all of them
            allowed = EVERY_CHUNK
        else:
            allowed.setflags(write=False)
        with self.lock:
            self._filter_cache[key] = allowed
            while len(self._filter_cache) > FILTER_CACHE_SIZE:
                self._filter_cache.popitem(last=False)
        return allowed

    def _columns_of(self, store: ContentStore, generation: int) -> FilterColumns | None:
        """The generation's filter columns, built at the first filter (None: a commit landed
        meanwhile, and the caller asks SQLite)."""
        with self.lock:
            if self._columns is not None and self._columns.generation == generation:
                return self._columns
        try:
            columns = FilterColumns(store, generation)
        except MovedOn:  # a commit landed meanwhile: this search reads the live database
            return None
        with self.lock:
            self._columns = columns
        return columns

    def count(self, store: ContentStore, where: dict) -> int:
        """How many documents a filter keeps (in memory where it can, else by SQL)."""
        compiled = compile_where(where)
        _, generation = self.current()
        columns = self._columns_of(store, generation)
        found = columns.count(store, where) if columns is not None else None
        if found is None:
            found = store.db.execute(f"select count(*) from documents d where {compiled[0]}", compiled[1]).fetchone()[0]
        return found

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def write_session(self) -> Iterator[ContentStore]:
        """The write lock (this process's, then the folder's) for one run of writes, yielding
        the writable connection; on an error, what was not committed is dropped from memory
        (the last committed vectors are reloaded)."""
        with self.write_lock, exclusive_lock(self.path), readable(self.path / DATABASE):
            self.reload_if_changed()
            store = self.writable_store()
            try:
                self.keywords.catch_up(store)
            except (SearcherError, OSError, sqlite3.Error) as e:  # each commit tries again
                log.warning("%s: keyword changes committed but not applied yet: %s", self.path, e)
            self.writing = True
            try:
                yield store
            except BaseException:
                self.writing = False
                with self.lock:
                    self.generation = -1
                    self.reload_if_changed()
                raise
            finally:
                self.writing = False

    def vector_count(self) -> int:
        return len(self.vectors)

    def commit(self, changes) -> None:
        """Make one batch of a Writer's changes the next generation, while searches go on.

        Searches keep seeing the last commit: removals (and any rebuild) go to a copy of the
        vectors, swapped in after the SQLite commit; a batch that only adds is added to the
        live vectors under the search lock, where a search drops the new chunks until they
        are committed (retrieval keeps only chunks the store has)."""
        store = self._write_store
        removed = store.chunk_ids_of(changes.delete_ids)
        with self.lock:
            live = self.vectors
            if not removed and len(changes.ids):
                live.add(changes.ids, changes.vectors)
        vectors = live
        if removed:
            vectors = live.copy()
            vectors.remove(removed)
            if len(changes.ids):
                vectors.add(changes.ids, changes.vectors)
        vectors = vectors.prepare_commit(self.manifest)  # the backend may rebuild itself for its new size
        if vectors.describe() != live.describe():
            try:
                self._record_factory(vectors.describe())
            except OSError as e:
                raise write_failed(self.path, self.generation, f"rewriting {MANIFEST} (its index_factory)", e) from e
        new = commit_generation(self.path, store, self.generation, vectors, self.keywords, changes.docs,
                                changes.chunks, changes.delete_ids, changes.next_chunk_id)
        with self.lock:  # the moment SQLite has committed: searches read the new rows with the new vectors
            self.vectors, self.generation = vectors, new
        finish_commit(self.path, store, new, self.keywords)

    def _record_factory(self, factory: str) -> None:
        """Note the live factory string in the manifest (informational: the vectors file holds its own type)."""
        manifest = read_manifest(self.path)
        manifest["index_factory"] = factory
        write_manifest(self.path, manifest)
        self.manifest = {**self.manifest, "index_factory": factory}
