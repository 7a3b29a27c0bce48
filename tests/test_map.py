"""The map of the corpus (searcher/quality/corpus_map.py, /map, /api/map) on the fake encoder: one
point a document, cached per generation in the index folder, recomputed when it moves."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from searcher import Index
from searcher.quality import corpus_map as cm
from searcher.quality.corpus_map import (UMAP_MIN_DOCS, choose_method, cluster_count, clusters, corpus_map,
                                         distinctive_terms, layout, map_path, mean_vectors)
from searcher.storage.keywords.tantivy_engine import TantivyAnalyzer
from searcher.web import create_app

from .conftest import ANIMALS

FILES = [
    {"id": "a", "title": "Notes A", "text": "Kittens nap in the sun.", "metadata": {"type": "md", "folder": "/n"}},
    {"id": "b", "title": "Notes B", "text": "Engines burn petrol.", "metadata": {"type": "txt", "folder": "/n"}},
    {"id": "c", "title": "", "text": "Bread rises in the oven.", "metadata": {"type": "md", "folder": "/m"}},
    {"id": "d", "title": "No facets", "text": "Coral reefs in deep water."},
]


def map_files(folder):
    return sorted(p.name for p in folder.glob("map.*.json"))


def two_groups(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.zeros((2, 32), np.float32)
    centres[0, 0], centres[1, 1] = 1, 1
    x = centres[np.arange(n) % 2] + 0.05 * rng.standard_normal((n, 32)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- the engine side ----------------------------------------------------------------------
def test_every_document_is_one_point_in_the_unit_square(fake_animals_index):
    m = corpus_map(fake_animals_index)
    points = m["points"]
    assert sorted(points["id"]) == sorted(d["id"] for d in ANIMALS) and len(set(points["id"])) == len(ANIMALS)
    assert {len(v) for v in points.values()} == {len(ANIMALS)}  # parallel arrays
    assert all(0 <= v <= 1 for v in points["x"] + points["y"])
    assert dict(zip(points["id"], points["title"]))["cat"] == "Cats"
    assert m["method"] == "pca" and m["documents"] == len(ANIMALS) and m["unplaced"] == 0
    assert m["generation"] == fake_animals_index.live_generation()
    assert sum(c["size"] for c in m["clusters"]) == len(ANIMALS)
    assert set(points["cluster"]) == set(range(len(m["clusters"])))
    assert all(c["title"] in points["title"] and c["label"] and c["terms"] for c in m["clusters"])


def test_the_map_is_cached_per_generation_and_recomputed_when_it_moves(fake_animals_index, fake_encoder, monkeypatch):
    index = fake_animals_index
    first = corpus_map(index)
    generation = first["generation"]
    assert map_files(index.path) == [f"map.{generation}.json"]
    assert json.loads(map_path(index.path, generation).read_text())["points"] == first["points"]

    def not_again(*args, **kwargs):
        raise AssertionError("recomputed although the cache is current")

    with Index.open(index.path, encoder=fake_encoder) as other:  # another process: reads the file
        monkeypatch.setattr(cm, "build_map", not_again)
        assert corpus_map(other) == first
        monkeypatch.undo()

    index.add_documents([{"id": "dog", "title": "Dogs", "text": "Dogs bark at the postman and fetch sticks."}])
    second = corpus_map(index)
    assert second["generation"] > generation
    assert sorted(second["points"]["id"]) == sorted([d["id"] for d in ANIMALS] + ["dog"])
    assert map_files(index.path) == [f"map.{second['generation']}.json"]  # the old generation's map is gone

    assert index.delete(["cat"]) == 1
    third = corpus_map(index)
    assert "cat" not in third["points"]["id"] and third["documents"] == len(ANIMALS)
    assert map_files(index.path) == [f"map.{third['generation']}.json"]


def test_a_map_of_a_newer_generation_is_never_removed_by_an_older_reader(tmp_path):
    (tmp_path / "map.3.json").write_text("{}")
    (tmp_path / "map.9.json").write_text("{}")
    (tmp_path / "map.x.json").write_text("{}")
    assert cm.remove_old_maps(tmp_path, 5) == 1
    assert map_files(tmp_path) == ["map.9.json", "map.x.json"]


def test_a_folder_that_cannot_be_written_still_gets_a_map_kept_in_memory(fake_animals_index, monkeypatch):
    def read_only(path, write):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(cm, "write_atomic", read_only)
    first = corpus_map(fake_animals_index)
    assert len(first["points"]["id"]) == len(ANIMALS) and map_files(fake_animals_index.path) == []
    monkeypatch.setattr(cm, "build_map", lambda *a, **k: pytest.fail("recomputed: the memory copy was not kept"))
    assert corpus_map(fake_animals_index) is first


def test_a_damaged_or_foreign_cache_file_is_replaced(fake_animals_index, fake_encoder):
    index = fake_animals_index
    generation = index.live_generation()
    path = map_path(index.path, generation)
    for junk in (b"{not json", b"[1, 2]", json.dumps({"format": 99, "generation": generation}).encode(),
                 b"\xff\xfe not UTF-8"):
        path.write_bytes(junk)
        with Index.open(index.path, encoder=fake_encoder) as fresh:
            m = corpus_map(fresh)
        assert sorted(m["points"]["id"]) == sorted(d["id"] for d in ANIMALS)
        assert json.loads(path.read_text())["generation"] == generation


def test_an_empty_index_has_an_empty_map(fake_index):
    m = corpus_map(fake_index)
    assert m["documents"] == 0 and m["points"]["id"] == [] and m["clusters"] == []


def test_facets_are_indexes_into_their_values(fake_index):
    fake_index.add_documents(FILES)
    m = corpus_map(fake_index)
    p = m["points"]
    by_id = {doc_id: i for i, doc_id in enumerate(p["id"])}
    types, folders = m["facets"]["type"], m["facets"]["folder"]
    assert sorted(types) == ["md", "txt"] and sorted(folders) == ["/m", "/n"]
    assert types[p["type"][by_id["a"]]] == "md" and types[p["type"][by_id["b"]]] == "txt"
    assert folders[p["folder"][by_id["c"]]] == "/m"
    assert p["type"][by_id["d"]] is None and p["folder"][by_id["d"]] is None
    assert p["title"][by_id["c"]] == "c"  # no title: the id is shown


def test_document_vectors_are_the_normalised_mean_of_their_chunks_stored_vectors(fake_index):
    long_text = "\n\n".join(f"Paragraph {i} about gardens, tomatoes and beans along the fence." for i in range(40))
    fake_index.add_documents([{"id": "long", "title": "Garden", "text": long_text}, *ANIMALS[:2]])
    data = cm.document_vectors(fake_index)
    ids = [d[0] for d in data["documents"]]
    assert ids == sorted(["long", "cat", "car"])
    _, chunk_ids, vectors = fake_index.chunk_vectors()
    mine = set(fake_index.store.chunk_ids_of(["long"]))
    assert len(mine) > 1
    expected = vectors[np.isin(chunk_ids, list(mine))].mean(axis=0)
    expected /= np.linalg.norm(expected)
    assert np.allclose(data["vectors"][ids.index("long")], expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(data["vectors"], axis=1), 1, atol=1e-5)


def test_mean_vectors_leaves_a_group_without_rows_at_zero():
    owner = np.array([2, 0, 2], np.int64)
    rows = np.array([[1, 0], [0, 3], [1, 2]], np.float32)
    means, counts = mean_vectors(owner, rows, 3)
    assert list(counts) == [1, 0, 2]
    assert np.allclose(means[0], [0, 1]) and np.allclose(means[1], [0, 0])
    assert np.allclose(means[2], np.array([2, 2]) / np.sqrt(8))
    only, counts = mean_vectors(np.array([1, 1]), rows, 2, rows=np.array([0, 2]))  # row 1 left out
    assert list(counts) == [0, 2] and np.allclose(only[1], np.array([2, 2]) / np.sqrt(8))


def test_pca_layout_is_deterministic_and_separates_groups():
    x = two_groups(200)
    a, b = layout(x, "pca"), layout(x.copy(), "pca")
    assert a.shape == (200, 2) and a.dtype == np.float32 and np.array_equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    first = a[:, 0]
    even, odd = first[0::2], first[1::2]  # the two groups alternate
    assert even.max() < odd.min() or odd.max() < even.min()
    order = np.random.default_rng(1).permutation(200)  # the same points in another order
    assert np.allclose(layout(x[order], "pca"), a[order], atol=1e-3)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_tiny_corpora_get_a_layout(n):
    coords = layout(two_groups(4)[:n], "auto")
    assert coords.shape == (n, 2) and np.isfinite(coords).all()
    if n == 1:
        assert coords.tolist() == [[0.5, 0.5]]


def test_the_layout_method_is_chosen_by_size_and_what_is_installed(monkeypatch):
    with pytest.raises(ValueError, match="unknown map layout 'tsne'"):
        choose_method(100, "tsne")
    monkeypatch.setattr(cm, "umap_available", lambda: False)
    assert choose_method(10 * UMAP_MIN_DOCS) == "pca"
    with pytest.raises(ValueError, match="umap-learn"):
        choose_method(100, "umap")
    monkeypatch.setattr(cm, "umap_available", lambda: True)
    assert choose_method(UMAP_MIN_DOCS - 1) == "pca" and choose_method(UMAP_MIN_DOCS) == "umap"
    assert choose_method(500, "umap") == "umap" and choose_method(5, "umap") == "pca"  # too few for UMAP
    assert choose_method(10 * UMAP_MIN_DOCS, "pca") == "pca"
    calls = []
    monkeypatch.setattr(cm, "umap_layout", lambda x: calls.append(len(x)) or np.zeros((len(x), 2)))
    assert layout(two_groups(40), "umap").shape == (40, 2) and calls == [40]


@pytest.mark.skipif(not os.environ.get("SEARCHER_TEST_UMAP"), reason="set SEARCHER_TEST_UMAP=1: numba compiles "
                    "UMAP's kernels for about a minute on 2 cores")
def test_umap_layout_for_real():
    pytest.importorskip("umap")
    coords = layout(two_groups(120), "umap")
    assert coords.shape == (120, 2) and coords.min() >= 0 and coords.max() <= 1


def test_clusters_are_numbered_by_size_and_named_by_a_central_member():
    x = np.vstack([two_groups(60)[0::2][:25], two_groups(60)[1::2][:5]])  # 25 of one group, 5 of the other
    labels, central = clusters(x, k=2)
    assert list(np.bincount(labels)) == [25, 5]
    assert set(labels[:25]) == {0} and set(labels[25:]) == {1}
    assert labels[central[0]] == 0 and labels[central[1]] == 1
    assert [cluster_count(n) for n in (1, 2, 8, 50, 800, 10**6)] == [1, 1, 2, 5, 20, 20]
    one, centre = clusters(x[:1])
    assert list(one) == [0] and list(centre) == [0]


BAKING = ["Bread dough rises in a warm oven; knead the dough, then bake the bread.",
          "Sourdough bread needs flour, water and a starter; the dough proves overnight before the oven.",
          "Bake the loaf in a hot oven until the bread crust is brown and the dough is set.",
          "Rye flour makes a dense bread; the dough is sticky and bakes slowly in the oven."]
SAILING = ["The sailboat heeled in the wind as the crew trimmed the sails and the boat sailed upwind.",
           "Reef the sails before the wind rises; a small boat is easy to capsize in gusts at sea.",
           "The harbour was calm, so the boat motored out before hoisting its sails into the sea wind.",
           "Tacking turns the boat's bow through the wind; the sails swing across as the boat sails on."]
TOPIC_WORDS = {"baking": {"bread", "dough", "oven", "flour", "bake", "bakes", "loaf", "sourdough"},
               "sailing": {"boat", "sails", "wind", "sea", "sailboat", "sailed", "upwind", "reef"}}


def test_c_tf_idf_names_each_cluster_by_its_own_words_not_the_shared_ones():
    shared = " the water and the weekend "  # in both: never a label
    terms = distinctive_terms([[t + shared for t in BAKING], [t + shared for t in SAILING]],
                              TantivyAnalyzer().surface_words)
    assert [len(t) for t in terms] == [3, 3]
    assert set(terms[0]) <= TOPIC_WORDS["baking"] and set(terms[1]) <= TOPIC_WORDS["sailing"]
    assert terms[0][0] in ("bread", "dough", "oven") and terms[1][0] in ("boat", "sails", "wind")
    assert distinctive_terms([["the and of 42 a"]], TantivyAnalyzer().surface_words) == [[]]  # nothing to name it by


def test_the_map_names_two_clear_topics_by_their_words(index):
    """The real model splits the two topics; each cluster's label is its topic's words."""
    index.add_documents([{"id": f"bake{i}", "title": f"Note {i}", "text": t} for i, t in enumerate(BAKING)]
                        + [{"id": f"sail{i}", "title": f"Note {i + 4}", "text": t} for i, t in enumerate(SAILING)])
    m = corpus_map(index)
    assert len(m["clusters"]) == 2
    by_topic = {}
    for c in m["clusters"]:
        topic = "baking" if set(c["terms"]) <= TOPIC_WORDS["baking"] else "sailing"
        assert 2 <= len(c["terms"]) <= 3 and set(c["terms"]) <= TOPIC_WORDS[topic], c
        assert c["label"] == ", ".join(c["terms"])
        by_topic[topic] = c
    assert set(by_topic) == {"baking", "sailing"}


def test_an_ivfpq_index_is_mapped_from_its_decoded_codes(tmp_path, fake_encoder, monkeypatch):
    from searcher.storage.vectors import faiss_backend

    monkeypatch.setattr(faiss_backend, "IVFPQ_TRAIN_AT", 200)  # train its codes at a test's size
    index = Index.create(tmp_path / "pq", encoder=fake_encoder, index_type="ivfpq")
    docs = [{"id": f"d{i}", "title": f"Doc {i}", "text": f"Topic {i % 7} notes number {i} about item {i * 3}."}
            for i in range(260)]
    index.add_documents(docs)
    assert index.vectors.kind == "ivfpq"
    with pytest.raises(ValueError):
        index.vectors.export()
    m = corpus_map(index)
    assert sorted(m["points"]["id"]) == sorted(d["id"] for d in docs)
    index.close()


# -- the web side -------------------------------------------------------------------------
@pytest.fixture
def client(fake_animals_index):
    return create_app(fake_animals_index).test_client()


def test_api_map_serves_the_layout_as_parallel_arrays(client, fake_animals_index):
    r = client.get("/api/map")
    assert r.status_code == 200 and r.mimetype == "application/json"
    body = r.get_json()
    assert set(body) >= {"generation", "method", "documents", "clusters", "facets", "points"}
    assert set(body["points"]) == {"id", "title", "x", "y", "cluster", "type", "folder"}
    assert sorted(body["points"]["id"]) == sorted(d["id"] for d in ANIMALS)
    assert body["generation"] == fake_animals_index.live_generation()
    etag = r.headers["ETag"]
    again = client.get("/api/map", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    fake_animals_index.add_documents([{"id": "dog", "title": "Dogs", "text": "Dogs bark."}])
    moved = client.get("/api/map", headers={"If-None-Match": etag})
    assert moved.status_code == 200 and "dog" in moved.get_json()["points"]["id"]


def test_api_map_bad_requests_are_json(client):
    r = client.post("/api/map")
    assert r.status_code == 405 and r.get_json()["status"] == 405


def test_api_map_of_an_unreadable_index_is_a_503(client, fake_animals_index):
    (fake_animals_index.path / "content.db").write_bytes(b"not a database at all" * 100)
    r = client.get("/api/map")
    assert r.status_code == 503 and r.get_json()["error"] == "service_unavailable"


def test_the_map_page_loads_its_script_under_the_csp(client):
    r = client.get("/map?q=cats")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert '<canvas id="map-canvas"' in html and 'src="/static/map.js"' in html
    assert 'value="cats"' in html and "Laying out 5 documents" in html
    assert "<script>" not in html and " style=" not in html  # nothing inline: script-src/style-src 'self'
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert 'href="/map"' in client.get("/").get_data(as_text=True)  # linked from every page
