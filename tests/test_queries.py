"""QueryEncoder: concurrent queries batched into one pass, each caller gets its own vector, cache."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from searcher.encoding.queries import QueryEncoder

QUERIES = ["small felines", "how engines burn fuel", "baking bread at home", "deep ocean trenches"]


class GatedEncoder:
    """An encoder whose first call waits for a signal: lets other queries pile up."""

    def __init__(self, encoder, fail_on: str | None = None):
        self.encoder = encoder
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[list[str]] = []
        self.fail_on = fail_on

    def __getattr__(self, name):  # the tokenizer and its wrapping: the real encoder's
        return getattr(self.encoder, name)

    def model_inputs(self, items, prefix="", max_tokens=None, truncate=True):
        return self.encoder.model_inputs(items, prefix, max_tokens, truncate)

    def encode_ids(self, inputs, batch_size=None):
        self.calls.append(list(inputs))
        if len(self.calls) == 1:
            self.entered.set()
            assert self.release.wait(30)
        if self.fail_on is not None and self.encoder.model_inputs([self.fail_on])[0] in self.calls[-1]:
            raise RuntimeError("model exploded")
        return self.encoder.encode_ids(inputs, batch_size)


def run_concurrently(qe: QueryEncoder, gated: GatedEncoder, queries: list[str]) -> dict:
    """First query starts alone and blocks in the model; the rest queue behind it; then release."""
    results, errors = {}, {}

    def ask(q):
        try:
            results[q] = qe.encode(q)
        except Exception as e:  # noqa: BLE001 - recorded for the assertions
            errors[q] = e

    first = threading.Thread(target=ask, args=(queries[0],))
    first.start()
    assert gated.entered.wait(30)
    others = [threading.Thread(target=ask, args=(q,)) for q in queries[1:]]
    for t in others:
        t.start()
    deadline = time.monotonic() + 30
    while len(qe.queue._queue) < len(queries) - 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    gated.release.set()
    for t in [first, *others]:
        t.join(30)
    return {"results": results, "errors": errors}


def test_concurrent_queries_share_one_forward_pass(fake_encoder):
    encoder = fake_encoder  # batching and caching need no model
    gated = GatedEncoder(encoder)
    qe = QueryEncoder(gated)
    out = run_concurrently(qe, gated, QUERIES)
    assert not out["errors"]
    # The first query ran alone; the three that waited behind it went through in one batch.
    assert [len(c) for c in gated.calls] == [1, 3]
    assert qe.batches == 2 and qe.queue.requests == 4
    reference = encoder.encode(QUERIES)
    for i, q in enumerate(QUERIES):
        vector = out["results"][q]
        assert vector.shape == (1, encoder.dimension)
        np.testing.assert_allclose(vector[0], reference[i], atol=1e-5)


def test_repeated_query_comes_from_the_cache(fake_encoder):
    encoder = fake_encoder  # batching and caching need no model
    qe = QueryEncoder(encoder, cache_size=2)
    first = qe.encode("small felines")
    assert qe.encode("small felines") is first
    assert qe.batches == 1
    qe.encode("b")
    qe.encode("c")  # evicts "small felines", the least recently used
    qe.encode("small felines")
    assert qe.batches == 4


def test_a_failed_batch_reaches_every_waiter_and_the_next_batch_runs(fake_encoder):
    encoder = fake_encoder  # batching and caching need no model
    gated = GatedEncoder(encoder, fail_on=QUERIES[2])
    qe = QueryEncoder(gated)
    out = run_concurrently(qe, gated, QUERIES)
    # The batch holding the bad query failed as a whole; the first query's batch did not.
    assert set(out["errors"]) == set(QUERIES[1:])
    assert all("model exploded" in str(e) for e in out["errors"].values())
    assert set(out["results"]) == {QUERIES[0]}
    # Nothing is left stuck: the next query runs at once and is cached.
    assert qe.encode("fresh query").shape == (1, encoder.dimension)
    with pytest.raises(RuntimeError):
        qe.encode(QUERIES[2])
