"""Watched folders: file events become ordinary incremental index runs.

`Watcher(index, paths)` follows files and folders (`searcher watch`, `searcher serve
--watch`). File events come from `watchfiles` (inotify, FSEvents, ReadDirectoryChangesW);
each path that changed waits until no event has come for it for `debounce` seconds, then
the paths that are due go into one run of `Index.add_paths(paths, prune=True)`: a new or
changed file is read and indexed (an unchanged one costs no encoding: content hashes), a
file or folder that is gone has its documents removed, and a rename is the two together
(the old id goes, the new one comes). A folder created or moved in is read whole.

A file caught mid-write is never indexed half. Before a run reads anything it takes each
file's size and modification time; a file modified less than `settle` seconds before is not
read yet but retried once it has been quiet that long, and a file whose size or time
changed by the time its documents were read (`add_paths`'s `accept`) is left out of the run,
its stored documents untouched, and retried the same way. A file that cannot be read is
reported in the run's IndexReport (`skipped`) and read again at its next event or reconcile.

Events can be missed (a folder beyond the system's watch limit, fs.inotify.max_user_watches
on Linux; a network share; changes while nothing ran), so every `reconcile_every` seconds,
and at the start, a full run over the watched paths (`add_paths(paths, prune=True)`, with
the same settling) brings the index in line with the folders. Without `watchfiles`, or when
the system refuses to watch, the watcher says so in the log and keeps the reconciles.

Runs go through `write(run, wait)`: by default `run(index)`; `searcher serve --watch` passes
SearchService.write, so the watcher's runs and the write API's take turns. An error in a run
is logged and the watcher carries on (the paths of a failed run are retried).
"""

from __future__ import annotations

import copy
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .documents import Skipped
from .loaders import READERS, LoadOptions, walk_paths
from .sanitize import clean_text
from .writer import IndexReport

log = logging.getLogger(__name__)

DEFAULT_DEBOUNCE = 0.5  # seconds without an event before a changed path is indexed
DEFAULT_SETTLE = 1.0  # seconds a file must have gone unmodified before it is read
DEFAULT_RECONCILE = 600.0  # seconds between full runs
RETRY_AFTER = 2.0  # seconds before the paths of a failed run are tried again
RETRY_RECONCILE = 30.0  # seconds before a failed reconcile is tried again
MAX_TICK = 0.25  # the longest the loop sleeps between looks at what is due


def signature(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of a regular file, or None."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if path.is_file() else None


def check_paths(paths: Iterable[str | os.PathLike], index_dir: str | os.PathLike) -> None:
    """ValueError unless every path exists and none is the index folder or inside it (the
    index's own writes would be events)."""
    index_dir = Path(os.path.abspath(index_dir))
    for path in (Path(os.path.abspath(p)) for p in paths):
        if not path.exists():
            raise ValueError(f"cannot watch {path}: no such file or folder")
        if path == index_dir or index_dir in path.parents:
            raise ValueError(f"cannot watch {path}: it is the index folder {index_dir} or inside it")


class Watcher:
    """Keeps `index` in line with the files under `paths` (see the module's docstring).

    `run()` blocks until `stop()` (or Ctrl-C); `start()` runs it in a daemon thread. `ready`
    is set once the first reconcile has finished (events from then on are seen).
    `reconcile()` runs a full run now, from any thread. `on_run(kind, report)` is called after
    each run, `kind` "reconcile" or "changes". `reconcile_every` None (or 0): only at the
    start and when asked.
    """

    def __init__(self, index, paths: Iterable[str | os.PathLike], options: LoadOptions | None = None, *,
                 debounce: float = DEFAULT_DEBOUNCE, reconcile_every: float | None = DEFAULT_RECONCILE,
                 settle: float = DEFAULT_SETTLE, on_conflict: str = "skip",
                 write: Callable[[Callable, float | None], object] | None = None,
                 on_run: Callable[[str, IndexReport], None] | None = None, force_polling: bool | None = None):
        self.index = index
        self.paths = list(dict.fromkeys(Path(os.path.abspath(p)) for p in paths))
        if not self.paths:
            raise ValueError("give at least one folder or file to watch")
        if debounce < 0 or settle < 0:
            raise ValueError("debounce and settle are seconds, zero or more")
        if reconcile_every is not None and reconcile_every < 0:
            raise ValueError("reconcile_every is seconds, zero (never) or more")
        self.index_dir = Path(os.path.abspath(index.path))
        check_paths(self.paths, self.index_dir)
        # An event names a path inside a watched folder: it is walked as part of that folder,
        # so a symlink there that leads out of it is not followed (unless follow_links).
        self.options = copy.copy(options or LoadOptions())
        self.options.within = self.paths
        self.debounce = float(debounce)
        self.settle = float(settle)
        self.reconcile_every = float(reconcile_every) if reconcile_every else None
        self.on_conflict = on_conflict
        self.on_run = on_run
        self.force_polling = force_polling
        self._write = write or (lambda run, wait=None: run(self.index))
        self._tick = min(MAX_TICK, max(0.02, min(self.debounce or MAX_TICK, self.settle or MAX_TICK) / 2))
        self._lock = threading.Lock()  # the pending paths and the counters
        self._pending: dict[str, tuple[Path, float]] = {}  # path -> (path, due at, monotonic seconds)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.events: bool | None = None  # whether file events arrive (None: not started yet)
        self.runs = 0
        self.last_report: IndexReport | None = None
        self.last_error: str | None = None

    # -- running -------------------------------------------------------------------------
    def start(self) -> "Watcher":
        """Run in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.run, name="searcher-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the loop (a run under way finishes first) and wait up to `timeout` for it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def run(self) -> None:
        """Watch until stop() (or KeyboardInterrupt in the main thread): reconcile at once,
        then index what changes, and reconcile every `reconcile_every` seconds."""
        next_reconcile: float | None = 0.0  # at the first look: the watch is set up by then, nothing is missed
        for changes in self._events():
            self._note(changes)
            if self._stop.is_set():
                break
            if next_reconcile is None or time.monotonic() < next_reconcile:
                self._run_due()
                continue
            ok = self._safely("reconcile", lambda: self.reconcile(wait=-1))
            self.ready.set()
            if not ok:
                next_reconcile = time.monotonic() + min(self.reconcile_every or RETRY_RECONCILE, RETRY_RECONCILE)
            else:
                next_reconcile = time.monotonic() + self.reconcile_every if self.reconcile_every else None

    def _events(self) -> Iterator[set]:
        """Sets of (change, path) as they come, and an empty set every tick."""
        try:
            import watchfiles
        except ImportError:
            self._no_events("watchfiles is not installed (pip install 'searcher[watch]')")
            yield from self._ticks()
            return
        self._default_filter = watchfiles.DefaultFilter()
        self._deleted = watchfiles.Change.deleted
        self._added = watchfiles.Change.added
        try:
            self.events = True
            yield from watchfiles.watch(*self.paths, watch_filter=self._wanted,
                                        debounce=max(50, int(self.debounce * 1000)), step=50,
                                        stop_event=self._stop, rust_timeout=max(1, int(self._tick * 1000)),
                                        yield_on_timeout=True, force_polling=self.force_polling)
        except (OSError, RuntimeError) as e:  # the system's watch limit, a folder gone
            self._no_events(f"the system refused to watch them ({e})")
            yield from self._ticks()

    def _no_events(self, why: str) -> None:
        self.events = False
        every = f"every {self.reconcile_every:g} s" if self.reconcile_every else "when asked (POST /api/index)"
        log.warning("no file events for %s: %s; the index follows them by a full run %s",
                    ", ".join(map(str, self.paths)), why, every)

    def _ticks(self) -> Iterator[set]:
        yield set()
        while not self._stop.wait(self._tick):
            yield set()

    def _wanted(self, change, path: str) -> bool:
        """watchfiles' filter: not the index's own files, hidden files or folders (the readers
        skip them too), editor backups, a folder's own modifications, unsupported files."""
        p = Path(path)
        if p == self.index_dir or self.index_dir in p.parents or not self._default_filter(change, path):
            return False
        root = next((r for r in self.paths if r == p or r in p.parents), None)
        if root is not None and any(part.startswith(".") for part in p.relative_to(root).parts):
            return False
        if change != self._deleted:
            if p.is_dir():
                return change == self._added  # a folder made or moved in; its contents' events are their own
            if p.suffix.lower() not in READERS:
                return False
        return True

    def _note(self, changes: set) -> None:
        if not changes:
            return
        due = time.monotonic() + self.debounce
        with self._lock:
            for _change, path in changes:
                self._pending[path] = (Path(path), due)

    def _pend(self, path: Path, after: float) -> None:
        with self._lock:
            key = str(path)
            due = time.monotonic() + after
            if key not in self._pending or self._pending[key][1] < due:
                self._pending[key] = (path, due)

    @property
    def pending(self) -> list[Path]:
        """The paths waiting for a run (changed recently, not settled, or failed)."""
        with self._lock:
            return [p for p, _ in self._pending.values()]

    def _run_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            due = [p for p, at in self._pending.values() if at <= now]
            for p in due:
                del self._pending[str(p)]
        if due and not self._safely("changes", lambda: self.index_changes(due, wait=-1)):
            for p in due:
                self._pend(p, RETRY_AFTER)

    def _safely(self, kind: str, run: Callable[[], object]) -> bool:
        try:
            run()
            return True
        except Exception as e:
            self.last_error = f"{type(e).__name__}: {e}"
            log.error("watch: the %s run failed, it is tried again: %s", kind, self.last_error,
                      exc_info=not isinstance(e, (OSError,)) and log.isEnabledFor(logging.DEBUG))
            return False

    # -- the runs ------------------------------------------------------------------------
    def reconcile(self, wait: float | None = None) -> IndexReport:
        """A full run over the watched paths now (what POST /api/index asks for): new and
        changed files indexed, documents of files that are gone removed. `wait`: how long to
        wait for another write (see SearchService.write)."""
        return self._run("reconcile", self.paths, wait)

    def index_changes(self, paths: Iterable[str | os.PathLike], wait: float | None = None) -> IndexReport:
        """One incremental run over `paths`: files (changed or new), folders (read whole) and
        paths that are gone (their documents removed)."""
        return self._run("changes", [Path(os.path.abspath(p)) for p in paths], wait)

    def _run(self, kind: str, paths: list[Path], wait: float | None) -> IndexReport:
        report = self._write(lambda index: self._index(index, paths), wait)
        self.last_error = None
        if report is None:  # every file was left for later: nothing ran, nothing to report
            return IndexReport()
        with self._lock:
            self.runs += 1
            self.last_report = report
        if self.on_run is not None:
            self.on_run(kind, report)
        return report

    def _index(self, index, paths: list[Path]) -> IndexReport | None:
        """Under the write lock: take the files' signatures, leave out (and retry) the ones not
        settled, run add_paths(prune=True) over the rest and the paths that are gone, accepting
        only files whose signature has not moved since. None when nothing was left to run."""
        wall = time.time()
        settled: dict[str, tuple[Path, tuple[int, int]]] = {}  # source -> (file, signature)
        unsettled: set[str] = set()
        missing: set[str] = set()
        targets: list[Path] = []
        for path in paths:
            if not os.path.lexists(path):
                missing.add(clean_text(str(path)))
                targets.append(path)
                continue
            found = False
            for item in walk_paths([path], self.options.follow_links, self.paths):
                if isinstance(item, Skipped) or self._inside_index(item):
                    continue
                sig = signature(item)
                if sig is None:
                    continue
                source = clean_text(str(item))
                quiet = wall - sig[1] / 1e9
                if quiet < self.settle:
                    unsettled.add(source)
                    self._pend(item, max(self.settle - quiet, 0.0) + self._tick)
                else:
                    settled[source] = (item, sig)
                    found = True
            if found or path.is_dir() or not path.is_file():
                targets.append(path)  # a folder always: files that left it are pruned
        refused: set[str] = set(unsettled)

        def accept(source: str) -> bool:
            entry = settled.get(source)
            if entry is not None and signature(entry[0]) == entry[1]:
                return True
            if source not in refused:  # written since its signature was taken: retried when quiet
                refused.add(source)
                self._pend(entry[0] if entry else Path(source), self.settle + self._tick)
            return False

        if not targets:
            return None
        report = index.add_paths(targets, self.options, prune=True, on_conflict=self.on_conflict, accept=accept)
        report.skipped = [s for s in report.skipped if not self._expected(s, missing, refused)]
        return report

    def _inside_index(self, path: Path) -> bool:
        return self.index_dir in path.parents

    def _expected(self, skipped: Skipped, missing: set[str], refused: set[str]) -> bool:
        """Skips that are the watcher's own doing, not worth reporting: a path it knew was gone,
        a file it left for later (half written), the index's own files."""
        if skipped.path in missing:
            return True
        if skipped.path in refused or skipped.path.rsplit(":", 1)[0] in refused:
            return True
        return self._inside_index(Path(skipped.path))
