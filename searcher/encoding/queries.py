"""Text to vectors for a server under load: concurrent requests batched, recent queries cached.

A short text costs the encoder about as much alone as in a batch of several, and the forward
pass dominates a search on the CPU. So when several threads ask at once (searches, and the
/v1/embeddings endpoint: searcher/web/embeddings.py), one of them (the leader) tokenises and
encodes what is waiting in shared passes (at most `MAX_BATCH` inputs each, the smallest requests
first, so a huge request goes in pieces and does not hold up small ones) while the others wait for
their rows; when its own request is done, the next waiting thread leads. Only the leader touches the model and its
tokenizer, so they are never used from two threads at once (`EncodeQueue`, one per loaded
model). Repeated queries (paging, the back button, popular searches) come from a small LRU
cache without touching the model (`QueryEncoder`, one per model and query prefix).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np

DEFAULT_CACHE_SIZE = 2048  # query vectors kept (384 floats each: about 3 MB for the default model)
MAX_BATCH = 64  # inputs encoded in one forward pass at most (a larger request is split into pieces)
DEFAULT_MAX_WAIT_MS = 0.0  # how long a pass that is not full waits for more requests (a server passes its own)

Prepare = Callable[[], Sequence[Sequence[int]]]  # a request's model inputs, made by the leader


class _Waiting:
    __slots__ = ("prepare", "size", "batch_size", "ready", "vectors", "error", "lead", "done",
                 "inputs", "order", "taken", "left")

    def __init__(self, prepare: Prepare, size: int, batch_size: int | None):
        self.prepare = prepare
        self.size = size  # inputs announced (the real count is known once prepared)
        self.batch_size = batch_size
        self.ready = threading.Event()  # set when done, or when this waiter is to lead
        self.vectors: np.ndarray | None = None
        self.error: BaseException | None = None
        self.lead = False  # set when this waiter is to encode the next passes
        self.done = False
        self.inputs: list[Sequence[int]] | None = None  # made by the leader (`prepare`)
        self.order: list[int] = []  # positions of the inputs, longest first (pieces of similar lengths)
        self.taken = 0  # of `order`, put into passes so far
        self.left = 0  # inputs without their vector yet

    def untaken(self) -> int:
        return self.size if self.inputs is None else len(self.inputs) - self.taken


def pass_shares(demands: Sequence[int], capacity: int) -> list[int]:
    """How many inputs of each waiting request (in arrival order, `demands` its inputs not yet
    encoded) the next pass of `capacity` takes: the oldest request at least a quarter of the
    pass (so that nothing starves under load), then the smallest requests first, whole (so a
    small request is not held behind a large one, and among equal large ones the older
    finishes first rather than all finishing late together)."""
    shares = [0] * len(demands)
    if not demands:
        return shares
    shares[0] = min(demands[0], max(1, capacity // 4))
    left = capacity - shares[0]
    for i in sorted(range(len(demands)), key=lambda i: (demands[i], i)):
        take = min(demands[i] - shares[i], left)
        shares[i] += take
        left -= take
    return shares


class EncodeQueue:
    """Requests to one encoder, gathered into shared forward passes: `encode(prepare, size)`
    returns the (n, dimension) vectors of the inputs `prepare()` makes (called in the leader's
    thread, where the tokenizer is used). A request's own error (`prepare` raising) reaches it
    alone; the model failing reaches every request of that pass.

    Dynamic batching, as TEI and infinity do it: a pass takes at most `max_batch` inputs of the
    waiting requests, the smallest first (`pass_shares`), so a request of thousands of texts is
    encoded in pieces between which the small requests that arrived meanwhile are answered (a
    small request waits at most the pass running when it arrived and its own).
    Each request's inputs go longest first, so its pieces hold similar lengths, and the
    encoder sorts a pass by length before padding (`Encoder.encode_ids`). A pass that is not
    full first waits up to `max_wait_ms` for more requests (0: never waits; requests arriving
    while a pass runs are gathered into the next one anyway)."""

    def __init__(self, encoder, max_batch: int = MAX_BATCH, max_wait_ms: float = DEFAULT_MAX_WAIT_MS):
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self._lock = threading.Lock()  # guards the queue and `_busy`
        self._arrived = threading.Condition(self._lock)  # a request joined the queue
        self._queue: list[_Waiting] = []  # requests not done yet, in arrival order
        self._busy = False  # a leader is encoding
        self.batches = 0  # forward passes run, the requests answered, the inputs encoded (tests, benchmarks)
        self.requests = 0
        self.inputs = 0

    def encode(self, prepare: Prepare, size: int = 1, batch_size: int | None = None) -> np.ndarray:
        with self._lock:
            me = _Waiting(prepare, max(1, size), batch_size)
            self._queue.append(me)
            self._arrived.notify()
            me.lead = not self._busy
            self._busy = True
        if not me.lead:
            me.ready.wait()
        if me.lead:  # set at once, or by the previous leader when it handed over
            self._lead(me)
        if me.error is not None:
            raise me.error
        return me.vectors

    def _lead(self, me: _Waiting) -> None:
        """Run passes until this request is done, then hand over to the next waiter (or go idle)."""
        try:
            while not me.done:
                self._gather()
                self._pass()
        except BaseException as e:  # a fault of the queue itself: no waiter of it may hang
            me.error = me.error or e
            raise
        finally:
            with self._lock:
                nxt = next((w for w in self._queue if w is not me), None)
                if me in self._queue:
                    self._queue.remove(me)
                if nxt is not None:
                    nxt.lead = True
                    nxt.ready.set()
                else:
                    self._busy = False
            me.lead = False

    def _gather(self) -> None:
        """The bounded wait: until the next pass is full or `max_wait_ms` passed."""
        if self.max_wait_ms <= 0:
            return
        deadline = time.monotonic() + self.max_wait_ms / 1000
        with self._lock:
            while sum(w.untaken() for w in self._queue) < self.max_batch:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                self._arrived.wait(wait)

    def _finish(self, w: _Waiting) -> None:
        with self._lock:
            w.done = True
            self.requests += 1
            if w in self._queue:
                self._queue.remove(w)
        w.ready.set()  # its own thread returns (the leader's checks `done`)

    def _pass(self) -> None:
        """One forward pass over the shares of what waits (`pass_shares`) (tokenising the new requests first)."""
        with self._lock:
            waiting = list(self._queue)
        for w in waiting:
            if w.inputs is None:
                try:
                    w.inputs = list(w.prepare())
                except BaseException as e:  # this request's own fault (an input too long...)
                    w.error = e
                    self._finish(w)
                    continue
                w.order = sorted(range(len(w.inputs)), key=lambda i, x=w.inputs: -len(x[i]))
                w.left = len(w.inputs)
                w.vectors = np.zeros((len(w.inputs), int(getattr(self.encoder, "dimension", 0))), np.float32)
                if not w.inputs:
                    self._finish(w)
        live = [w for w in waiting if not w.done and w.untaken() > 0]
        if not live:
            return
        shares = pass_shares([w.untaken() for w in live], self.max_batch)
        parts, inputs = [], []
        for w, share in zip(live, shares):
            if share:
                positions = w.order[w.taken : w.taken + share]
                w.taken += share
                parts.append((w, positions, len(inputs)))
                inputs.extend(w.inputs[i] for i in positions)
        sizes = [w.batch_size for w, _, _ in parts if w.batch_size]
        try:
            vectors = self.encoder.encode_ids(inputs, batch_size=min(sizes) if sizes else None)
        except BaseException as e:  # every request of the pass gets the error, none hangs
            failed = e
        else:
            failed = None
        with self._lock:
            self.batches += 1
            self.inputs += len(inputs)
        for w, positions, start in parts:
            if failed is not None:
                w.error = failed
                self._finish(w)
                continue
            if w.vectors.shape[1] != vectors.shape[1]:
                w.vectors = np.zeros((len(w.inputs), vectors.shape[1]), np.float32)
            w.vectors[positions] = vectors[start : start + len(positions)]
            w.left -= len(positions)
            if w.left == 0:
                self._finish(w)


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


def get_encode_queue(encoder, max_wait_ms: float | None = None) -> EncodeQueue:
    """One queue per loaded model, shared by its indexes' searches and the embeddings endpoint;
    `max_wait_ms`, when given, becomes its bounded wait (`searcher serve --batch-wait-ms`)."""
    with _QUEUES_LOCK:
        if encoder not in _QUEUES:
            _QUEUES[encoder] = EncodeQueue(encoder)
        if max_wait_ms is not None:
            _QUEUES[encoder].max_wait_ms = max_wait_ms
        return _QUEUES[encoder]


def get_query_encoder(encoder, prefix: str = "") -> QueryEncoder:
    """One query cache per loaded model and query prefix, shared by the indexes that use them."""
    queue = get_encode_queue(encoder)
    with _QUEUES_LOCK:
        mine = _QUERY_ENCODERS.setdefault(encoder, {})
        if prefix not in mine:
            mine[prefix] = QueryEncoder(encoder, prefix=prefix, queue=queue)
        return mine[prefix]
