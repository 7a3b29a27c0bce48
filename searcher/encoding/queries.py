"""Text to vectors for a server under load: concurrent requests batched, recent queries cached.

A short text costs the encoder about as much alone as in a batch of several, and the forward
pass dominates a search on the CPU. So when several threads ask at once (searches, and the
/v1/embeddings endpoint: searcher/web/embeddings.py), one of them (the leader) tokenises and
encodes everything waiting in a single pass while the others wait for their rows; the next
waiting thread then leads the next batch. Only the leader touches the model and its
tokenizer, so they are never used from two threads at once (`EncodeQueue`, one per loaded
model). Repeated queries (paging, the back button, popular searches) come from a small LRU
cache without touching the model (`QueryEncoder`, one per model and query prefix).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

DEFAULT_CACHE_SIZE = 2048  # query vectors kept (384 floats each: about 3 MB for the default model)
MAX_BATCH = 64  # inputs of several requests encoded in one forward pass at most (a larger request runs alone)

Prepare = Callable[[], Sequence[Sequence[int]]]  # a request's model inputs, made by the leader


class _Waiting:
    __slots__ = ("prepare", "size", "batch_size", "ready", "vectors", "error", "lead")

    def __init__(self, prepare: Prepare, size: int, batch_size: int | None):
        self.prepare = prepare
        self.size = size
        self.batch_size = batch_size
        self.ready = threading.Event()
        self.vectors: np.ndarray | None = None
        self.error: BaseException | None = None
        self.lead = False  # set when this waiter is to encode the next batch


class EncodeQueue:
    """Requests to one encoder, gathered into shared forward passes: `encode(prepare, size)`
    returns the (n, dimension) vectors of the inputs `prepare()` makes (called in the leader's
    thread, where the tokenizer is used). A request's own error (`prepare` raising) reaches it
    alone; the model failing reaches every request of that pass."""

    def __init__(self, encoder, max_batch: int = MAX_BATCH):
        self.encoder = encoder
        self.max_batch = max_batch
        self._lock = threading.Lock()  # guards the queue and `_busy`
        self._queue: list[_Waiting] = []
        self._busy = False  # a leader is encoding
        self.batches = 0  # forward passes run, and the requests they held (for tests and benchmarks)
        self.requests = 0

    def encode(self, prepare: Prepare, size: int = 1, batch_size: int | None = None) -> np.ndarray:
        with self._lock:
            me = _Waiting(prepare, max(1, size), batch_size)
            self._queue.append(me)
            me.lead = not self._busy
            self._busy = True
        if not me.lead:
            me.ready.wait()
        if me.lead:  # set at once, or by the previous leader when it handed over
            self._lead()
        if me.error is not None:
            raise me.error
        return me.vectors

    def _take(self) -> list[_Waiting]:
        """The waiters of the next pass: the first, and those behind it while they fit MAX_BATCH."""
        with self._lock:
            taken, total = 0, 0
            for w in self._queue:
                if taken and total + w.size > self.max_batch:
                    break
                taken, total = taken + 1, total + w.size
            batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    def _lead(self) -> None:
        """Encode what is queued in one pass, then hand over to the next waiter (or go idle)."""
        batch = self._take()
        try:
            inputs: list[Sequence[int]] = []
            spans = []
            for w in batch:
                try:
                    own = list(w.prepare())
                except BaseException as e:  # this request's own fault (an input too long...)
                    w.error = e
                    continue
                spans.append((w, len(inputs), len(inputs) + len(own)))
                inputs.extend(own)
            if spans:
                sizes = [w.batch_size for w, _, _ in spans if w.batch_size]
                try:
                    vectors = self.encoder.encode_ids(inputs, batch_size=min(sizes) if sizes else None)
                except BaseException as e:  # every waiter of the pass gets the error, none hangs
                    for w, _, _ in spans:
                        w.error = e
                else:
                    for w, start, end in spans:
                        w.vectors = vectors[start:end]
        finally:
            with self._lock:
                self.batches += 1
                self.requests += len(batch)
                if self._queue:
                    nxt = self._queue[0]
                    nxt.lead = True
                    nxt.ready.set()
                else:
                    self._busy = False
            for w in batch:
                w.lead = False
                w.ready.set()


class QueryEncoder:
    """Wraps an `Encoder`: `encode(query)` returns a (1, dimension) float32 unit vector of
    `prefix` + query (the index's query prefix: searcher/index/opening.py), through the
    model's `EncodeQueue` and a cache of recent queries."""

    def __init__(self, encoder, cache_size: int = DEFAULT_CACHE_SIZE, prefix: str = "",
                 queue: EncodeQueue | None = None):
        self.encoder = encoder
        self.cache_size = cache_size
        self.prefix = prefix
        self.queue = queue or EncodeQueue(encoder)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # guards the cache
        self.encoded = 0  # queries that went to the model (not the cache)

    batches = property(lambda self: self.queue.batches, doc="Forward passes run (for benchmarks).")

    def encode(self, query: str) -> np.ndarray:
        with self._lock:
            cached = self._cache.get(query)
            if cached is not None:
                self._cache.move_to_end(query)
                return cached
        vector = self.queue.encode(lambda: self.encoder.model_inputs([query], self.prefix))[:1]
        with self._lock:
            self.encoded += 1
            if self.cache_size > 0:
                self._cache[query] = vector
                self._cache.move_to_end(query)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return vector

    def clear(self) -> None:
        """Forget the cached query vectors (benchmarks that must encode every query)."""
        with self._lock:
            self._cache.clear()


_QUEUES_LOCK = threading.Lock()
_QUEUES: "weakref.WeakKeyDictionary[object, EncodeQueue]" = weakref.WeakKeyDictionary()
_QUERY_ENCODERS: "weakref.WeakKeyDictionary[object, dict[str, QueryEncoder]]" = weakref.WeakKeyDictionary()


def get_encode_queue(encoder) -> EncodeQueue:
    """One queue per loaded model, shared by its indexes' searches and the embeddings endpoint."""
    with _QUEUES_LOCK:
        if encoder not in _QUEUES:
            _QUEUES[encoder] = EncodeQueue(encoder)
        return _QUEUES[encoder]


def get_query_encoder(encoder, prefix: str = "") -> QueryEncoder:
    """One query cache per loaded model and query prefix, shared by the indexes that use them."""
    queue = get_encode_queue(encoder)
    with _QUEUES_LOCK:
        mine = _QUERY_ENCODERS.setdefault(encoder, {})
        if prefix not in mine:
            mine[prefix] = QueryEncoder(encoder, prefix=prefix, queue=queue)
        return mine[prefix]
