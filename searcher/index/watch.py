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
the watch fails, the watcher says so in the log and keeps the reconciles. A name that is not
UTF-8 (which watchfiles cannot report: it stops) is left out of the events, the watch starts
again, and the files changed meanwhile are read; the file itself is indexed as any other, by
reconciles and runs over its folder, under its name with the bad bytes escaped (`\\xff`).

Runs go through `write(run, wait)`: by default `run(index)`; `searcher serve --watch` passes
SearchService.write, so the watcher's runs and the write API's take turns. An error in a run
is logged and the watcher carries on (the paths of a failed run are retried).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import re
import stat
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from searcher.readers.documents import Skipped
from searcher.readers.formats import READERS
from searcher.readers.options import LoadOptions
from searcher.readers.walk import walk_paths
from searcher.sanitize import clean_text
from searcher.index.writer import IndexReport

log = logging.getLogger(__name__)

DEFAULT_DEBOUNCE = 0.5  # seconds without an event before a changed path is indexed
DEFAULT_SETTLE = 1.0  # seconds a file must have gone unmodified before it is read
DEFAULT_RECONCILE = 600.0  # seconds between full runs
RETRY_AFTER = 2.0  # seconds before the paths of a failed run are tried again
RETRY_RECONCILE = 30.0  # seconds before a failed reconcile is tried again
MAX_TICK = 0.25  # the longest the loop sleeps between looks at what is due
RESTART_GAP = 2.0  # seconds at least between two starts of the file watch (a name it cannot report stops it)
CTIME_MARGIN = 1.0  # seconds: a catch-up after a restart reads what changed since the last batch, less this


def signature(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of a regular file, or None."""
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if path.is_file() else None


def undecodable(error: BaseException) -> str | None:
    """The name in watchfiles' error about a path that is not UTF-8, as it shows it
    (`"/docs/bad\\xFF.txt"`), or None for another error."""
    match = re.match(r'Unable to decode path (".*") to string', str(error))
    return match.group(1) if match else None


def outermost(paths: Iterable[Path]) -> list[Path]:
    """`paths` less repeats and those inside another of them: a folder's walk reads its files
    (and prunes the gone ones), so a file given again beside it would be read twice, and
    reported a duplicate of itself."""
    paths = list(dict.fromkeys(paths))
    given = set(paths)
    return [p for p in paths if not any(parent in given for parent in p.parents)]


def check_paths(paths: Iterable[str | os.PathLike], index_dir: str | os.PathLike) -> None:
    """ValueError unless every path exists and none is the index folder or inside it (the
    index's own writes would be events)."""
    index_dir = Path(os.path.abspath(index_dir))
    for path in (Path(os.path.abspath(p)) for p in paths):
        if not path.exists():
            raise ValueError(f"cannot watch {path}: no such file or folder")
        if path == index_dir or index_dir in path.parents:
            raise ValueError(f"cannot watch {path}: it is the index folder {index_dir} or inside it")


class Background:
    """A loop (`run`, which ends once `_stop` is set) that `start()` runs in a daemon thread
    named `thread_name` and `stop()` ends: the folder watcher's and the source poller's
    (searcher/index/sources.py)."""

    thread_name = "searcher-background"

    def __init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        raise NotImplementedError

    def start(self):
        """Run in a daemon thread; returns self."""
        self._thread = threading.Thread(target=self.run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the loop (a run under way finishes first) and wait up to `timeout` for it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)


class Watcher(Background):
    """Keeps `index` in line with the files under `paths` (see the module's docstring).

    `run()` blocks until `stop()` (or Ctrl-C); `start()` runs it in a daemon thread. `ready`
    is set once the first reconcile has finished (events from then on are seen).
    `reconcile()` runs a full run now, from any thread. `on_run(kind, report)` is called after
    each run, `kind` "reconcile" or "changes". `reconcile_every` None (or 0): only at the
    start and when asked.
    """

    thread_name = "searcher-watch"

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
        super().__init__()
        self.ready = threading.Event()
        self.events: bool | None = None  # whether file events arrive (None: not started yet)
        self.runs = 0
        self.last_report: IndexReport | None = None
        self.last_error: str | None = None
        self._catch_up_since: float | None = None  # set by _events after a restarted watch
        self._bad_names: set[str] = set()  # names watchfiles could not report (logged once each)

    # -- running (start and stop: Background) ----------------------------------------------
    def run(self) -> None:
        """Watch until stop() (or KeyboardInterrupt in the main thread): reconcile at once,
        then index what changes, and reconcile every `reconcile_every` seconds."""
        next_reconcile: float | None = 0.0  # at the first look: the watch is set up by then, nothing is missed
        for changes in self._events():
            self._note(changes)
            if self._stop.is_set():
                break
            since, self._catch_up_since = self._catch_up_since, None
            if since is not None and not self._safely("changes", lambda since=since: self._catch_up(since)):
                next_reconcile = min(next_reconcile or math.inf, time.monotonic() + RETRY_RECONCILE)
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
        """Sets of (change, path) as they come, and an empty set every tick.

        watchfiles stops at a name that is not UTF-8 (an event on it, even a read, raises, and
        the batch it was in is lost): the watch is started again, at most once every
        RESTART_GAP seconds, and what changed since the last batch that came is read
        (`_catch_up`). A watch that stops so before its first batch (a folder of such a name:
        setting the watch up reads it) starts again polling, which sees no reads."""
        try:
            import watchfiles
        except ImportError:
            self._no_events("watchfiles is not installed (pip install -e '.[watch]' in the searcher checkout)")
            yield from self._ticks()
            return
        self._default_filter = watchfiles.DefaultFilter()
        self._deleted = watchfiles.Change.deleted
        self._added = watchfiles.Change.added
        polling = self.force_polling
        heard: float | None = None  # wall time of the last batch (or tick) that came: nothing before it was missed
        catch_up: float | None = None  # read what changed since then, once the watch is up again
        while not self._stop.is_set():
            started, began = time.monotonic(), time.time()
            fresh = True
            try:
                self.events = True
                for changes in watchfiles.watch(*self.paths, watch_filter=self._wanted,
                                                debounce=max(50, int(self.debounce * 1000)), step=50,
                                                stop_event=self._stop, rust_timeout=max(1, int(self._tick * 1000)),
                                                yield_on_timeout=True, force_polling=polling):
                    fresh = False
                    heard = time.time()
                    if catch_up is not None:
                        self._catch_up_since, catch_up = catch_up, None
                    yield changes
                return  # stopped
            except (OSError, RuntimeError) as e:  # the system's watch limit, a folder gone, a name not UTF-8
                name = undecodable(e)
                if name is None:
                    self._no_events(f"the file watch failed ({e})")
                    yield from self._ticks()
                    return
                self._skip_name(name)
                if fresh and polling:
                    self._no_events(f"watchfiles cannot watch them, even polling, for the name {name} (not UTF-8)")
                    yield from self._ticks()
                    return
                if fresh:
                    polling = True
                    log.warning("watch: watchfiles stops at once on the name %s (not UTF-8) under %s: they are "
                                "watched by polling instead", name, ", ".join(map(str, self.paths)))
                since = heard if heard is not None else began  # (the first reconcile may come before a watch is up)
                catch_up = since if catch_up is None else min(catch_up, since)
            while time.monotonic() < started + RESTART_GAP and not self._stop.is_set():
                yield set()  # the runs due go on meanwhile
                self._stop.wait(self._tick)

    def _skip_name(self, name: str) -> None:
        level = logging.DEBUG if name in self._bad_names else logging.WARNING
        self._bad_names.add(name)
        log.log(level, "watch: watchfiles cannot report the name %s (not UTF-8): its events are left out, the "
                "watch starts again, and the files changed meanwhile are read", name)

    def _no_events(self, why: str) -> None:
        self.events = False
        every = f"every {self.reconcile_every:g} s" if self.reconcile_every else "when asked (POST /api/index)"
        log.warning("no file events for %s: %s; the index follows them by a full run %s",
                    ", ".join(map(str, self.paths)), why, every)

    def _catch_up(self, since: float) -> None:
        """After a restarted watch: a run over the watched files and folders whose status
        changed at `since` (time.time()) or later: written, renamed or moved in, a folder with
        an entry added or removed (read whole, which prunes what left it). By ctime, which a
        modification time set back does not hide; CTIME_MARGIN before `since` for clocks."""
        threshold = (since - CTIME_MARGIN) * 1e9
        changed: list[Path] = []
        for root in self.paths:
            stack = [root]
            while stack:
                path = stack.pop()
                try:
                    st = path.stat() if path == root else path.lstat()
                except OSError:
                    if path == root:
                        changed.append(root)  # gone: its documents go
                    continue
                if path == self.index_dir:
                    continue
                if st.st_ctime_ns >= threshold and (path == root or self._wanted(self._added, str(path))):
                    changed.append(path)  # a folder's run reads everything under it
                elif stat.S_ISDIR(st.st_mode):
                    try:
                        with os.scandir(path) as entries:
                            stack.extend(Path(e.path) for e in entries if not e.name.startswith("."))
                    except OSError:
                        continue
        if changed:
            self.index_changes(changed, wait=-1)

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
        for path in outermost(paths):
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
