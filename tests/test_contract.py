"""The search API's contract (searcher/search/protocol.py: SearchableIndex), one suite run with
the same assertions against every implementation: a single index, a two-shard index, and a
RemoteIndex reading a test server. The corpus is small and every expectation is computed from
it here (which documents hold a word, which are newest), not written down."""

from __future__ import annotations

import re

import pytest

from searcher import Hit, Index, Results, SearchableIndex, open_index
from searcher.cluster.shards import split_index
from searcher.remote import RemoteIndex
from searcher.search.query import parse_query
from searcher.web import create_app
from searcher.web.server import serving

CORPUS = [
    ("cat", "Cats", "animal", "2024-03-01", "Small felines such as kittens chase mice and nap in sunny windows."),
    ("dog", "Dogs", "animal", "2023-07-15", "Puppies fetch sticks, bark at the postman and wag their tails."),
    ("owl", "Owls", "animal", "2025-01-20", "Barn owls hunt mice at night on silent wings."),
    ("car", "Engines", "machine", "2022-11-02", "An automobile engine burns petrol so that the wheels turn."),
    ("jet", "Jets", "machine", "2024-09-09", "A jet engine compresses air, burns fuel and pushes the plane forward."),
    ("bread", "Baking", "food", "2021-05-05", "Dough of flour, water and yeast rises before it is baked in an oven."),
    ("soup", "Soup", "food", "2025-06-30", "Simmer onions, carrots and stock slowly for a warming winter soup."),
    ("code", "Compilers", "machine", "2020-02-29", "A compiler translates source code into machine instructions."),
]
DOCS = [{"id": i, "title": title, "text": text, "metadata": {"kind": kind, "modified": f"{day}T12:00:00+00:00"}}
        for i, title, kind, day, text in CORPUS]


@pytest.fixture(scope="module")
def single(tmp_path_factory, encoder):
    index = Index.create(tmp_path_factory.mktemp("contract") / "single", encoder=encoder)
    index.add_documents(DOCS)
    yield index
    index.close()


@pytest.fixture(scope="module")
def sharded(single, tmp_path_factory):
    out = tmp_path_factory.mktemp("contract") / "sharded"
    split_index(single.path, out, 2)
    index = open_index(out, encoder=single.encoder)
    assert index.sharded and len(index.shards) == 2
    yield index
    index.close()


@pytest.fixture(scope="module")
def remote(single):
    with serving(create_app(single)) as url:
        yield RemoteIndex(url)


@pytest.fixture(params=["single", "sharded", "remote"])
def index(request):
    return request.getfixturevalue(request.param)


def ids(hits) -> list[str]:
    return [h.doc_id for h in hits]


def test_it_is_a_searchable_index_and_counts_its_documents(index):
    assert isinstance(index, SearchableIndex)
    assert len(index) == len(DOCS) and index.info()["documents"] == len(DOCS)


def test_a_search_ranks_the_document_that_means_it_first(index):
    for mode in (None, "dense", "keyword", "hybrid"):
        hits = index.search("kittens chasing mice", k=3, mode=mode)
        assert isinstance(hits, Results) and not hits.partial
        assert hits[0].doc_id == "cat" and all(isinstance(h, Hit) for h in hits)
        assert "kittens" in hits[0].passage and hits[0].title == "Cats"
        assert hits[0].passage == index.get_document("cat")["text"][hits[0].start:hits[0].end]
    # dense search finds the meaning without the words
    assert index.search("a vehicle motor that runs on gasoline", k=1, mode="dense")[0].doc_id == "car"


def test_pages_follow_on_from_each_other(index):
    whole = ids(index.search("engines and machines", k=6))
    assert ids(index.search("engines and machines", k=3)) + \
        ids(index.search("engines and machines", k=3, offset=3)) == whole
    assert len(set(whole)) == 6


def test_a_filter_keeps_only_matching_documents(index):
    animals = {i for i, _, kind, _, _ in CORPUS if kind == "animal"}
    hits = index.search("something that moves", k=10, where={"kind": "animal"})
    assert set(ids(hits)) == animals
    assert set(ids(index.search("mice", k=10, mode="keyword", where={"kind": {"$ne": "animal"}}))) == set()


def test_facets_count_the_ranked_documents(index):
    hits, facets = index.search_with_facets("anything at all", k=2, fields=["kind"], mode="dense")
    assert len(hits) == 2
    expected = {}
    for _, _, kind, _, _ in CORPUS:
        expected[kind] = expected.get(kind, 0) + 1
    assert facets == {"kind": expected}
    assert index.search_with_facets("anything", k=2, fields=[])[1] == {}


def test_sort_by_modified_orders_newest_first(index):
    newest = [i for i, *_ in sorted(CORPUS, key=lambda row: row[3], reverse=True)]
    assert ids(index.search("things", k=len(DOCS), mode="dense", sort="modified")) == newest


def test_similar_finds_neighbours_never_itself(index):
    hits = index.similar("cat", k=3)
    assert "cat" not in ids(hits) and len(hits) == 3
    assert ids(index.similar("cat", k=3, where={"kind": "machine"})) and \
        set(ids(index.similar("cat", k=3, where={"kind": "machine"}))) <= {"car", "jet", "code"}
    with pytest.raises(KeyError):
        index.similar("no such document")


def test_documents_are_read_back_by_id(index):
    doc = index.get_document("owl")
    assert doc["title"] == "Owls" and doc["text"] == DOCS[2]["text"] and doc["metadata"]["kind"] == "animal"
    assert index.get_document("no such document") is None


def test_bad_options_are_refused_with_the_reason(index):
    with pytest.raises(ValueError, match="mode"):
        index.search("cats", mode="fuzzy")
    with pytest.raises(ValueError, match="k"):
        index.search("cats", k=0)
    with pytest.raises(ValueError, match="sort"):
        index.search("cats", sort="size")
    with pytest.raises(ValueError, match="operator"):
        index.search("cats", where={"kind": {"$like": "a"}})


MODES = (None, "dense", "keyword", "hybrid")


def holding(word: str) -> set[str]:
    """The documents whose title or text hold `word` as a whole word."""
    return {i for i, title, _, _, text in CORPUS if re.search(rf"\b{word}\b", f"{title} {text}", re.IGNORECASE)}


def test_a_quoted_phrase_keeps_only_the_documents_holding_it(index):
    for mode in MODES:
        assert ids(index.search('"nap in sunny windows"', k=10, mode=mode)) == ["cat"]
        assert ids(index.search(parse_query('"nap in sunny windows"'), k=10, mode=mode)) == ["cat"]
    # unquoted, or with syntax=False, the words rank every document by meaning
    assert len(index.search("nap in sunny windows", k=10, mode="dense")) == len(DOCS)
    assert len(index.search('"nap in sunny windows"', k=10, mode="dense", syntax=False)) == len(DOCS)


def test_an_excluded_word_never_comes_back(index):
    owls = holding("owls")
    assert owls == {"owl"} and "owl" in ids(index.search("mice", k=10))
    for mode in MODES:
        found = ids(index.search("mice -owls", k=10, mode=mode))
        assert found and not set(found) & owls
    assert "owl" in ids(index.search("mice -owls", k=10, mode="dense", syntax=False))


def test_a_field_in_the_query_is_a_filter_anded_with_where(index):
    for mode in MODES:
        assert ids(index.search("kind:animal mice at night", k=10, mode=mode)) == \
            ids(index.search("mice at night", k=10, mode=mode, where={"kind": "animal"}))
    assert set(ids(index.search("kind:animal,food something", k=10))) == \
        {i for i, _, kind, _, _ in CORPUS if kind in ("animal", "food")}
    assert set(ids(index.search("year:2024 things", k=10, where={"kind": "machine"}))) == \
        {i for i, _, kind, day, _ in CORPUS if kind == "machine" and day.startswith("2024")}
    # a word:thing whose field the index lacks is words
    assert ids(index.search("colour:animal mice", k=3, mode="keyword"))[0] in holding("mice")


def test_encode_gives_the_indexs_unit_vectors(index, single):
    """bert-as-service's encode: (n, dimension) float32 unit vectors, the same wherever the index lives."""
    import numpy as np

    texts = ["kittens chasing mice", "a jet engine"]
    vectors = index.encode(texts, batch_size=1)
    assert vectors.shape == (2, single.manifest["dimension"]) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(vectors, single.encode(texts), atol=1e-5)
    query = index.encode("kittens", input_type="query")
    np.testing.assert_allclose(query, single.queries.encode("kittens"), atol=1e-5)


def test_a_typo_is_read_as_the_word_the_documents_hold_and_the_answer_says_so(index):
    """Every implementation corrects the same way: a sharded index merges its shards' readings
    (a word one shard holds is never corrected; "kittens" is in one shard only)."""
    for mode in (None, "dense", "keyword"):
        clean = index.search("kittens chase mice", k=3, mode=mode)
        typed = index.search("kitens chase mise", k=3, mode=mode)
        assert clean.suggestion is None and typed.suggestion == "kittens chase mice"
        assert ids(typed) == ids(clean)
    assert index.search('"kitens"', k=3).suggestion is None  # quoted: searched as typed
