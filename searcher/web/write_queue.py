"""One write at a time through a server: the write API's (`add_documents`, `delete`) and the
folder watcher's runs take turns (`WriteQueue.turn`), and a write that waits too long for
the one before it gets `WriteBusy` (a 503 with Retry-After). `Index` also allows one writer
per process, and the index folder's lock one per folder; searches are not queued.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from searcher.errors import IndexIOError

WRITE_WAIT = 60.0  # seconds a write waits for the one before it, then WriteBusy


class WriteBusy(Exception):
    """Another write has held the write lock for longer than a write may wait."""


class WriteQueue:
    """The write lock of one served index, in arrival order (roughly). `generation()` reads the
    index's committed generation (None when it cannot be told), to say after a failed write
    whether part of it was committed; `wait`: the seconds a write waits for its turn."""

    def __init__(self, generation: Callable[[], int | None], wait: float = WRITE_WAIT):
        self.wait = wait
        self._generation = generation
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.waiting = 0  # writes waiting for their turn now (/metrics: the queue's depth)
        self.running = False  # whether a write holds the lock now

    @contextmanager
    def turn(self, wait: float | None = None) -> Iterator[None]:
        """Hold the write lock for one write, waiting `wait` seconds for it (None: `self.wait`;
        negative: as long as it takes), then WriteBusy. An IndexIOError (a full or failing
        disk) leaves it with `written`: whether an earlier commit of the same write was kept
        (a large write commits in parts), compared by generation under the lock; None when
        that cannot be told."""
        wait = self.wait if wait is None else wait
        self._count(1)
        try:
            got = self._lock.acquire() if wait < 0 else self._lock.acquire(timeout=wait)
        finally:
            self._count(-1)
        if not got:
            raise WriteBusy(f"another write has been running for over {wait:.0f} seconds; try again later")
        self.running = True
        try:
            before = self._generation()
            try:
                yield
            except IndexIOError as e:
                after = self._generation()
                e.in_write = True
                e.written = None if before is None or after is None else after != before
                raise
        finally:
            self.running = False
            self._lock.release()

    def _count(self, step: int) -> None:
        with self._count_lock:
            self.waiting += step
