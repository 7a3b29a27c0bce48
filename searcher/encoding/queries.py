"""Query text to vector for a server under load: recent queries cached, concurrent ones batched.

A short query costs the encoder about as much alone as in a batch of several, and the forward
pass dominates a search on the CPU. So when several threads ask at once, one of them (the
leader) encodes everything waiting in a single pass while the others wait for their row; the
next waiting thread then leads the next batch. Only the leader touches the model and its
tokenizer, so they are never used from two threads at once. Repeated queries (paging, the
back button, popular searches) come from a small LRU cache without touching the model.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

DEFAULT_CACHE_SIZE = 2048  # query vectors kept (384 floats each: about 3 MB for the default model)
MAX_BATCH = 64  # queries encoded in one forward pass at most


class _Waiting:
    __slots__ = ("query", "ready", "vector", "error", "lead")

    def __init__(self, query: str):
        self.query = query
        self.ready = threading.Event()
        self.vector: np.ndarray | None = None
        self.error: BaseException | None = None
        self.lead = False  # set when this waiter is to encode the next batch


class QueryEncoder:
    """Wraps an `Encoder`: `encode(query)` returns a (1, dimension) float32 unit vector."""

    def __init__(self, encoder, cache_size: int = DEFAULT_CACHE_SIZE):
        self.encoder = encoder
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # guards the cache, the queue and `_busy`
        self._queue: list[_Waiting] = []
        self._busy = False  # a leader is encoding
        self.batches = 0  # forward passes run, and queries they held (for benchmarks)
        self.batched_queries = 0

    def encode(self, query: str) -> np.ndarray:
        with self._lock:
            cached = self._cache.get(query)
            if cached is not None:
                self._cache.move_to_end(query)
                return cached
            me = _Waiting(query)
            self._queue.append(me)
            me.lead = not self._busy
            self._busy = True
        if not me.lead:
            me.ready.wait()
        if me.lead:  # set at once, or by the previous leader when it handed over
            self._lead()
        if me.error is not None:
            raise me.error
        return me.vector

    def clear(self) -> None:
        """Forget the cached query vectors (benchmarks that must encode every query)."""
        with self._lock:
            self._cache.clear()

    def _lead(self) -> None:
        """Encode what is queued in one pass, then hand over to the next waiter (or go idle)."""
        with self._lock:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
        try:
            vectors = self.encoder.encode([w.query for w in batch])
        except BaseException as e:  # every waiter of the batch gets the error, none hangs
            for w in batch:
                w.error = e
        else:
            for w, v in zip(batch, vectors):
                w.vector = v[None, :]
        with self._lock:
            if self.cache_size > 0:
                for w in batch:
                    if w.vector is not None:
                        self._cache[w.query] = w.vector
                        self._cache.move_to_end(w.query)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            self.batches += 1
            self.batched_queries += len(batch)
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                nxt.ready.set()
            else:
                self._busy = False
        for w in batch:
            w.lead = False
            w.ready.set()


_QUERY_ENCODERS_LOCK = threading.Lock()
_QUERY_ENCODERS: "weakref.WeakKeyDictionary[object, QueryEncoder]" = weakref.WeakKeyDictionary()


def get_query_encoder(encoder) -> QueryEncoder:
    """One query cache and batcher per loaded model, shared by the indexes that use it."""
    with _QUERY_ENCODERS_LOCK:
        if encoder not in _QUERY_ENCODERS:
            _QUERY_ENCODERS[encoder] = QueryEncoder(encoder)
        return _QUERY_ENCODERS[encoder]
