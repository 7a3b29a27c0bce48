"""Index types of searcher.storage.vectors on small synthetic vectors (real FAISS), and through the real Index API."""

from __future__ import annotations

import json

import numpy as np
import pytest

from searcher import Index
from searcher.storage.vectors import faiss_backend as V
from searcher.index.check import check_index
from searcher.storage.vectors import FaissVectorIndex, build_index, nlist_for, plan

from .conftest import ANIMALS

D = 32
TYPES = ("flat", "hnsw", "ivf", "ivfpq")
FILLER = [{"id": f"n{i}", "text": f"Note {i}: item {i % 13} of list {i % 7}."} for i in range(300)]


def unit(n, seed=0, d=D):
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def small_limits(monkeypatch):
    """Scale the size thresholds down so that every type trains on a few thousand vectors."""
    monkeypatch.setattr(V, "AUTO_EXACT_LIMIT", 1000)
    monkeypatch.setattr(V, "IVFPQ_TRAIN_AT", 1000)


def build(index_type, n=3000, seed=0):
    x = unit(n, seed)
    ids = np.arange(100, 100 + n, dtype=np.int64) * 7  # chunk-like ids, not row numbers
    return build_index(index_type, ids, x), ids, x


def test_auto_plan_follows_the_size():
    assert plan("auto", 0, 384) == "IDMap2,Flat"
    assert plan("auto", 49_999, 384) == "IDMap2,Flat"
    assert plan("auto", 50_000, 384) == "IVF1024,Flat"
    assert plan("auto", 1_000_000, 384) == "IVF4096,Flat"
    assert plan("auto", 100_000_000, 384).endswith(",PQ128")  # exact vectors would not fit in memory
    assert plan("ivf", 1_000_000, 384) == "IVF4096,Flat"
    assert plan("ivfpq", 1_000_000, 384) == "IVF4096,PQ128"
    assert plan("hnsw", 10, 384) == "IDMap2,HNSW32"
    assert nlist_for(10) == 1 and nlist_for(1_000_000) == 4096
    assert all(nlist_for(n) * 39 <= max(n, 39) for n in (10, 100, 5000, 10**5, 10**7))


@pytest.mark.parametrize("index_type", TYPES)
def test_every_type_saves_loads_searches_and_keeps_ids(tmp_path, small_limits, index_type):
    index, ids, x = build(index_type)
    assert index.kind == index_type
    assert len(index) == len(ids)
    assert sorted(index.ids()) == sorted(ids)
    index.save(tmp_path / "v.faiss")
    loaded = FaissVectorIndex.load(tmp_path / "v.faiss")
    assert loaded.kind == index_type and loaded.describe() == index.describe()
    assert loaded.search_params() == index.search_params()
    _, found = loaded.search(x[:50], 5)
    hits = np.mean(found[:, 0] == ids[:50])  # each vector finds itself first
    assert hits >= (0.9 if index_type == "ivfpq" else 0.98)
    assert set(found.ravel()) <= set(ids)


@pytest.mark.parametrize("index_type", TYPES)
def test_delete_removes_vectors_from_results_and_ids(tmp_path, small_limits, index_type):
    index, ids, x = build(index_type)
    gone = ids[:40]
    assert index.remove(gone) == 40
    assert index.remove(gone) == 0  # already gone
    assert len(index) == len(ids) - 40
    assert set(index.ids()) == set(ids[40:])
    _, found = index.search(x[:40], 10)
    assert not set(found.ravel()) & set(gone)
    index.save(tmp_path / "v.faiss")
    loaded = FaissVectorIndex.load(tmp_path / "v.faiss")
    assert len(loaded) == len(ids) - 40 and set(loaded.ids()) == set(ids[40:])
    _, found = loaded.search(x[:40], 10)
    assert not set(found.ravel()) & set(gone)
    _, found = loaded.search(x[40:80], 1)
    assert np.mean(found[:, 0] == ids[40:80]) >= 0.9


def test_hnsw_tombstones_are_compacted(small_limits):
    index, ids, x = build("hnsw", n=1000)
    index.remove(ids[:200])
    assert index.index.ntotal == 1000  # tombstoned, still in the graph
    rebuilt = index.replan("hnsw")
    assert rebuilt is not index and rebuilt.index.ntotal == 800 and len(rebuilt) == 800
    assert set(rebuilt.ids()) == set(ids[200:])
    _, found = rebuilt.search(x[200:220], 1)
    assert list(found[:, 0]) == list(ids[200:220])


def test_ivf_grown_from_small_is_retrained_with_more_lists(small_limits):
    index = FaissVectorIndex.create(D, plan("ivf", 0, D))
    x = unit(20_000, 3)
    ids = np.arange(1, 20_001, dtype=np.int64)
    index.add(ids[:500], x[:500])
    index = index.replan("ivf")
    first = index.nlist
    assert index.kind == "ivf" and first == nlist_for(500)
    for start in range(500, 20_000, 2500):
        index.add(ids[start : start + 2500], x[start : start + 2500])
        index = index.replan("ivf")
    assert index.nlist == nlist_for(20_000) > first
    assert sorted(index.ids()) == list(ids)
    _, found = index.search(x[:100], 1)
    assert np.mean(found[:, 0] == ids[:100]) >= 0.98


def test_auto_switches_from_flat_to_ivf_and_keeps_ids(small_limits):
    index = FaissVectorIndex.create(D, plan("auto", 0, D))
    x = unit(3000, 4)
    ids = np.arange(10, 3010, dtype=np.int64)
    index.add(ids[:900], x[:900])
    index = index.replan("auto")
    assert index.kind == "flat"
    index.add(ids[900:], x[900:])
    index = index.replan("auto")
    assert index.kind == "ivf"
    assert sorted(index.ids()) == list(ids)
    exact = FaissVectorIndex.create(D)
    exact.add(ids, x)
    _, a = index.search(x[:200], 10)
    _, b = exact.search(x[:200], 10)
    assert np.mean([len(set(p) & set(q)) / 10 for p, q in zip(a, b)]) >= 0.9
    index.remove(ids[:1000])
    assert index.replan("auto").kind == "ivf"  # no switching back and forth near the limit
    index.remove(ids[1000:2600])  # below half the exact limit: back to flat
    index = index.replan("auto")
    assert index.kind == "flat" and sorted(index.ids()) == list(ids[2600:])


def test_search_params_are_adjustable(small_limits):
    index, _, _ = build("ivf")
    index.set_search_params(nprobe=3)
    assert index.search_params() == {"nprobe": 3}
    index, _, _ = build("hnsw", n=500)
    index.set_search_params(ef_search=200)
    assert index.search_params() == {"ef_search": 200}


def test_auto_is_flat_for_a_small_index(fake_animals_index):
    assert fake_animals_index.manifest["index_type"] == "auto"
    assert fake_animals_index.info()["index_factory"] == "IDMap2,Flat"


@pytest.mark.parametrize("index_type", TYPES)
def test_index_of_each_type_searches_deletes_and_checks(tmp_path, encoder, small_limits, monkeypatch, index_type):
    monkeypatch.setattr(V, "IVFPQ_TRAIN_AT", 5)  # train the small corpus's ivfpq index
    monkeypatch.setattr(V, "MIN_POINTS_PER_LIST", 2)
    idx = Index.create(tmp_path / "idx", device="cpu", index_type=index_type)
    idx.add_documents(ANIMALS + FILLER)  # PQ training needs 256 vectors
    assert idx.vectors.kind == index_type
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["index_type"] == index_type
    assert idx.search("pet kitty", k=1, mode="dense")[0].doc_id == "cat"
    assert check_index(idx.path).ok
    idx.add_documents([{"id": "cat", "title": "Taxes", "text": "Tax returns and accountants."}])  # replace
    assert idx.delete(["car"]) == 1
    assert idx.search("vehicle motor fuel", k=5, mode="dense")[0].doc_id != "car"
    report = check_index(idx.path)
    assert report.ok, report.summary()
    idx.close()
    reopened = Index.open(tmp_path / "idx")
    assert reopened.vectors.kind == index_type and len(reopened.vectors) == reopened.store.count_chunks()
    assert reopened.search("accountants", k=1, mode="dense")[0].doc_id == "cat"
    reopened.close()


def test_an_ivf_index_rebuilt_for_more_vectors_gets_the_nprobe_of_its_new_size():
    """A regrown index must not keep nprobe 1 from the one-list index it started as."""
    x, ids = unit(3000), np.arange(3000, dtype=np.int64)
    small = FaissVectorIndex.create(D, "IVF1,Flat")
    small.add(ids[:10], x[:10])
    assert small.search_params() == {"nprobe": 1}
    small.add(ids[10:], x[10:])
    grown = small.replan("ivf")
    assert grown.nlist > 1 and grown.search_params() == {"nprobe": min(V.DEFAULT_NPROBE, grown.nlist)}


# -- filtered search (allowed ids) -----------------------------------------------------------
def clustered(n, seed, centres=200, d=D):
    """Unit vectors around `centres` random centres (labels too): structure an IVF index can use."""
    rng = np.random.default_rng(seed)
    c = unit(centres, 99, d)  # the same centres for every seed: queries come from the data's distribution
    labels = rng.integers(0, centres, n)
    x = c[labels] + rng.standard_normal((n, d)).astype(np.float32) * 0.25 / np.sqrt(d)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def filtered_recall(index, x, ids, queries, allowed):
    keep = np.isin(ids, allowed)
    exact = np.argsort(-(queries @ x[keep].T), axis=1)[:, :10]
    _, found = index.search(queries, 10, np.sort(allowed))
    return np.mean([len(set(f) & set(ids[keep][e])) / 10 for f, e in zip(found, exact)])


def test_a_filtered_ivf_search_keeps_its_recall_at_every_selectivity(monkeypatch):
    """Recall@10 against an exhaustive search over the allowed vectors, for random filters
    that keep 50%, 10% and 2% of the vectors and a topical one (the vectors of 4 of the 200
    clusters: they sit in a few lists, far from most queries), above the exact-scan limit."""
    monkeypatch.setattr(V, "FILTER_SCAN_ALL_BELOW", 100)  # so that these small sets use the list plan
    x, labels = clustered(20_000, 0)
    ids = np.arange(1, 20_001, dtype=np.int64) * 3
    index = build_index("ivf", ids, x)
    assert index.nlist == 512 and index.search_params() == {"nprobe": 64}
    queries, _ = clustered(100, 1)
    rng = np.random.default_rng(2)
    filters = {share: rng.choice(ids, int(share * len(ids)), replace=False) for share in (0.5, 0.1, 0.02)}
    filters["topical"] = ids[np.isin(labels, [3, 50, 120, 180])]
    for name, allowed in filters.items():
        assert filtered_recall(index, x, ids, queries, allowed) >= 0.95, name


def test_a_filter_below_the_exact_limit_is_searched_exactly():
    x, _ = clustered(20_000, 0)
    ids = np.arange(20_000, dtype=np.int64)
    index = build_index("ivf", ids, x)
    allowed = np.random.default_rng(3).choice(ids, 3000, replace=False)
    queries, _ = clustered(30, 4)
    assert filtered_recall(index, x, ids, queries, allowed) == 1.0
    _, found = index.search(queries[:1], 10, np.array([7, 70, 700]))
    assert sorted(found[0][found[0] >= 0]) == [7, 70, 700]


def test_the_selector_of_a_read_only_allowed_array_is_kept_until_the_vectors_change():
    x, _ = clustered(5000, 0)
    ids = np.arange(5000, dtype=np.int64)
    index = build_index("ivf", ids[:4000], x[:4000])
    allowed = np.arange(3000, 4500, dtype=np.int64)
    allowed.setflags(write=False)
    first = index._selector(allowed)
    assert index._selector(allowed) is first  # cached: the same read-only array
    assert index._selector(allowed.copy()) is not first  # writable: made afresh each time
    assert first[1].sum() == 1000  # allowed vectors per list: only those the index holds
    _, found = index.search(x[4200:4201], 1, allowed)
    assert found[0][0] != 4200
    index.add(ids[4000:], x[4000:])  # ids 4000.. arrive: the cached counts would miss them
    assert index._selector(allowed) is not first
    _, found = index.search(x[4200:4201], 1, allowed)
    assert found[0][0] == 4200


def test_id_selectors_and_membership_accept_exactly_the_allowed_ids():
    rng = np.random.default_rng(5)
    for allowed in (np.array([0, 5, 9, 64]), rng.choice(100_000, 3000, replace=False),
                    np.array([3, 1 << 40])):  # sparse: a hash set, not a bitmap of 2^40 bits
        probe = np.concatenate([allowed, rng.integers(0, 100_000, 2000), [1, 2, (1 << 40) - 1]])
        selector = V.id_selector(allowed)
        assert [selector.is_member(int(i)) for i in probe] == list(np.isin(probe, allowed))
        assert list(V.is_member(probe, allowed)) == list(np.isin(probe, allowed))
    assert isinstance(V.id_selector(np.arange(10)), type(V.faiss.IDSelectorBitmap(np.zeros(1, np.uint8))))
