"""The vector backend contract: every implementation (searcher/storage/vectors/factory.BACKENDS), in
each of its configurations, on small synthetic unit vectors (real FAISS)."""

from __future__ import annotations

import numpy as np
import pytest

from searcher.storage.vectors import BACKENDS, VectorBackend, backend_class, empty_vectors, open_vectors

DIM = 16
# (backend, manifest settings): FAISS in each index type (ivfpq stays exact at this size).
CONFIGURATIONS = [("faiss", {"index_type": t}) for t in ("flat", "hnsw", "ivf", "ivfpq", "auto")]


def unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(params=CONFIGURATIONS, ids=lambda c: f"{c[0]}-{c[1]['index_type']}")
def manifest(request):
    name, settings = request.param
    manifest = {"dimension": DIM, "vector_backend": name, **settings}
    return {**manifest, **backend_class(manifest).manifest_fields(manifest)}


@pytest.fixture
def filled(manifest):
    vectors = empty_vectors(manifest)
    ids = np.arange(100, 400, dtype=np.int64)
    data = unit(len(ids), 1)
    vectors.add(ids, data)
    return vectors.prepare_commit(manifest), ids, data


def test_every_configuration_is_a_registered_backend():
    assert {name for name, _ in CONFIGURATIONS} == set(BACKENDS)
    assert all(issubclass(cls, VectorBackend) for cls in BACKENDS.values())
    with pytest.raises(ValueError, match="unknown vector backend 'nope'"):
        backend_class({"vector_backend": "nope"})


def test_an_empty_backend_holds_nothing_and_finds_nothing(manifest):
    vectors = empty_vectors(manifest)
    assert len(vectors) == 0 and len(vectors.ids()) == 0 and vectors.dimension == DIM
    scores, ids = vectors.search(unit(2, 9), 5)
    assert ids.shape[0] == 2 and not (ids >= 0).any()
    assert vectors.remove([1, 2]) == 0


def test_a_stored_vector_is_its_own_nearest_neighbour(filled):
    vectors, ids, data = filled
    assert len(vectors) == len(ids) and sorted(vectors.ids()) == list(ids)
    scores, found = vectors.search(data[:20], 5)
    assert list(found[:, 0]) == list(ids[:20])
    assert np.allclose(scores[:, 0], 1.0, atol=1e-3)  # cosines of unit vectors
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_removed_ids_are_never_returned(filled, manifest):
    vectors, ids, data = filled
    gone = ids[:50]
    assert vectors.remove(list(gone) + [99999]) == 50  # an absent id is ignored
    assert len(vectors) == len(ids) - 50 and sorted(vectors.ids()) == list(ids[50:])
    vectors = vectors.prepare_commit(manifest)
    _, found = vectors.search(data[:50], 10)
    assert not np.isin(found, gone).any()
    assert len(vectors) == len(ids) - 50


def test_a_saved_generation_opens_the_same(filled, manifest, tmp_path):
    vectors, ids, data = filled
    path = tmp_path / "vectors.1.faiss"
    vectors.save(path)
    assert not list(tmp_path.glob(".*tmp*"))  # written to a temporary name, then renamed
    loaded = open_vectors(path, manifest)
    assert loaded.describe() == vectors.describe() and len(loaded) == len(vectors)
    a, b = vectors.search(data[:10], 5), loaded.search(data[:10], 5)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])


def test_prepare_commit_keeps_every_vector_as_the_collection_grows(manifest):
    vectors = empty_vectors(manifest)
    seen = []
    for round_no in range(3):  # grow past small sizes, where a backend may re-plan itself
        ids = np.arange(round_no * 1500, (round_no + 1) * 1500, dtype=np.int64)
        vectors.add(ids, unit(len(ids), round_no))
        vectors = vectors.prepare_commit(manifest)
        seen.extend(ids)
        assert sorted(vectors.ids()) == seen


def test_export_gives_the_exact_vectors_back_or_says_it_cannot(filled):
    vectors, ids, data = filled
    try:
        got_ids, got = vectors.export()
    except ValueError:
        return  # a compressed backend: allowed, and check --repair re-encodes instead
    order = np.argsort(got_ids)
    assert np.array_equal(got_ids[order], ids) and np.allclose(got[order], data, atol=1e-6)


def test_an_approximate_export_gives_every_vector_back_or_its_reconstruction(filled):
    vectors, ids, data = filled
    got_ids, got = vectors.export(approximate=True)
    order = np.argsort(got_ids)
    assert np.array_equal(got_ids[order], ids)
    assert (np.sum(got[order] * data, axis=1) > 0.999).all()  # exact at this size, compressed or not


def test_a_trained_ivfpq_index_exports_its_decoded_codes_approximately():
    from searcher.storage.vectors.faiss_backend import FaissVectorIndex

    pq = FaissVectorIndex.create(DIM, "IVF4,PQ8")
    ids = np.arange(5, 5 + 3000, dtype=np.int64) * 3  # ids that are not positions
    data = unit(3000, 4)
    pq.add(ids, data)
    with pytest.raises(ValueError, match="product-quantised"):
        pq.export()
    got_ids, got = pq.export(approximate=True)
    order = np.argsort(got_ids)
    assert np.array_equal(got_ids[order], ids) and got.shape == data.shape
    assert np.mean(np.sum(got[order] * data, axis=1)) > 0.8  # near the originals: the list centroid plus the PQ code


def test_a_copy_is_independent_and_searches_the_same(filled):
    vectors, ids, data = filled
    twin = vectors.copy()
    a, b = vectors.search(data[:10], 5), twin.search(data[:10], 5)
    assert np.array_equal(a[1], b[1]) and np.allclose(a[0], b[0])
    assert twin.search_params() == vectors.search_params() and twin.describe() == vectors.describe()
    twin.remove(ids[:10])
    twin.add(np.array([5000], np.int64), unit(1, 5))
    assert len(vectors) == len(ids) and sorted(vectors.ids()) == list(ids)  # the original is untouched
    assert len(twin) == len(ids) - 9


def test_prepare_commit_applies_the_settings_it_is_given(manifest):
    vectors = empty_vectors(manifest)
    vectors.add(np.arange(3000, dtype=np.int64), unit(3000, 3))
    tuned = {**manifest, "search_params": {"nprobe": 3, "ef_search": 17}}
    params = vectors.prepare_commit(tuned).search_params()
    assert set(params.values()) <= {3, 17}  # whichever of the two this backend has (or none)
