"""Suggestions as you type (searcher/search/suggest.py, Index.suggest, GET /api/suggest) on the
fake encoder: titles and the index's words by prefix, most frequent first, bounded, per
generation; the key and index rules of /api/search."""

from __future__ import annotations

import time

import pytest

from searcher import Index
from searcher.search.suggest import MAX_PREFIX_CHARS, SuggestCache, Vocabulary
from searcher.storage.keywords.tantivy_engine import TantivyAnalyzer
from searcher.web import create_app
from searcher.web.keys import ApiKey, KeyRing, digest

DOCS = [
    {"id": "p1", "title": "Python notes", "text": "Python reads files; python writes files; pythons are snakes."},
    {"id": "p2", "title": "Python tutorial", "text": "Python lists and python dicts. Pyramids are elsewhere."},
    {"id": "p3", "title": "Pyramids of Giza", "text": "The pyramids of Giza; python appears once here."},
    {"id": "c1", "title": "Café culture", "text": "Cafés serve coffee. The café opens early."},
]
READ_A = "srch_reada_" + "a" * 43
KEYS = KeyRing([ApiKey("reada", digest(READ_A), "read", "a")])


@pytest.fixture(scope="module")
def indexes(tmp_path_factory):
    from tests.fake_encoder import FakeEncoder

    folder = tmp_path_factory.mktemp("suggest")
    a = Index.create(folder / "a", encoder=FakeEncoder())
    a.add_documents(DOCS)
    b = Index.create(folder / "b", encoder=FakeEncoder())
    b.add_documents([{"id": "z", "title": "Zebras", "text": "Zebras graze; a zebra runs."}])
    yield {"a": a, "b": b}
    a.close()
    b.close()


@pytest.fixture(scope="module")
def client(indexes):
    return create_app(indexes=indexes).test_client()


def texts(body) -> list[str]:
    return [s["text"] for s in body["suggestions"]]


def test_titles_then_words_that_start_with_the_prefix_most_frequent_first(client):
    r = client.get("/api/suggest?q=py")
    assert r.status_code == 200
    body = r.get_json()
    assert body["query"] == "py" and isinstance(body["took_ms"], float)
    titles = [s for s in body["suggestions"] if s["kind"] == "title"]
    terms = [s for s in body["suggestions"] if s["kind"] == "term"]
    assert [t["text"] for t in titles] == ["Python notes", "Python tutorial", "Pyramids of Giza"]  # shortest first
    assert [t["text"] for t in terms][:2] == ["python", "pyramids"]  # 3 chunks (and 2 titles) against 2 (and 1)
    assert terms[0]["count"] > terms[1]["count"]
    assert all(s["text"].lower().startswith("py") for s in body["suggestions"])


def test_the_last_word_is_completed_and_the_typed_words_kept(client):
    assert texts(client.get("/api/suggest?q=Giza%20py").get_json()) == ["Giza python", "Giza pyramids", "Giza pythons"]
    # a title matches the whole prefix, folded: case, accents and spaces do not matter
    assert "Café culture" in texts(client.get("/api/suggest", query_string={"q": "CAFE  cu"}).get_json())
    assert "cafes" in texts(client.get("/api/suggest?q=caf").get_json())


def test_words_are_not_stems_and_stop_words_are_left_out(client):
    found = texts(client.get("/api/suggest?q=the").get_json())
    assert "the" not in found
    assert "snakes" in texts(client.get("/api/suggest?q=snak").get_json())  # not the stem "snake"


def test_the_answer_is_bounded(client, indexes):
    assert len(client.get("/api/suggest?q=p").get_json()["suggestions"]) <= 10
    assert len(client.get("/api/suggest?q=py&k=2").get_json()["suggestions"]) == 2
    vocabulary = Vocabulary({f"w{i:03d}": i for i in range(500)}, {})
    assert [s.text for s in vocabulary.suggest("w", 50)] == [f"w{i:03d}" for i in range(499, 489, -1)]


@pytest.mark.parametrize("query, why", [
    ("", "give the text typed so far"), ("   ", "give the text typed so far"),
    ("x" * (MAX_PREFIX_CHARS + 1), "longer than 100"), ("py\x00", "control"), ("\u0007a", "control"),
])
def test_a_bad_prefix_is_a_400_saying_why(client, query, why):
    r = client.get("/api/suggest", query_string={"q": query})
    assert r.status_code == 400 and why in r.get_json()["message"]


def test_no_prefix_or_a_bad_k_is_a_400(client):
    assert client.get("/api/suggest").status_code == 400
    for k in ("0", "11", "x"):
        r = client.get(f"/api/suggest?q=py&k={k}")
        assert r.status_code == 400 and "k must be" in r.get_json()["message"]


def test_nothing_to_suggest_is_an_empty_list(client):
    assert client.get("/api/suggest?q=qqqx").get_json()["suggestions"] == []


def test_index_rules_are_those_of_api_search(client):
    assert texts(client.get("/api/suggest?q=zeb&index=b").get_json())[0] == "Zebras"
    assert client.get("/api/suggest?q=zeb").get_json()["suggestions"] == []  # the default index is a
    assert client.get("/api/suggest?q=zeb&index=nope").status_code == 404
    assert client.get("/api/suggest?q=zeb&index=*").status_code == 400  # one index


def test_keys_as_for_api_search(indexes):
    keyed = create_app(indexes=indexes, keys=KEYS).test_client()
    assert keyed.get("/api/suggest?q=py").status_code == 401
    auth = {"Authorization": f"Bearer {READ_A}"}
    assert keyed.get("/api/suggest?q=py", headers=auth).status_code == 200
    assert keyed.get("/api/suggest?q=zeb&index=b", headers=auth).status_code == 403


def test_a_new_generation_is_suggested_once_counted(tmp_path, fake_encoder):
    index = Index.create(tmp_path / "idx", encoder=fake_encoder)
    index.add_documents(DOCS)
    client = create_app(index).test_client()
    assert client.get("/api/suggest?q=zeb").get_json()["suggestions"] == []
    index.add_documents([{"id": "z", "title": "Zebras", "text": "Zebras graze."}])
    assert [s.text for s in index.suggest("zeb", fresh=True)][:1] == ["Zebras"]
    index.delete("z")
    deadline = time.monotonic() + 30  # the old words answer while the new ones are counted
    while client.get("/api/suggest?q=zeb").get_json()["suggestions"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/api/suggest?q=zeb").get_json()["suggestions"] == []
    index.close()


def test_the_cache_builds_each_generation_once_and_answers_from_the_last_meanwhile():
    built = []

    def build(generation):
        def run():
            built.append(generation)
            return Vocabulary({f"g{generation}": 1}, {}, generation)
        return run

    cache = SuggestCache()
    assert cache.get(1, build(1)).generation == 1
    assert cache.get(1, build(1)).generation == 1 and built == [1]
    stale = cache.get(2, build(2))  # the old one answers; the new one is built meanwhile
    assert stale.generation == 1
    assert cache.get(2, build(2), fresh=True).generation == 2 and built == [1, 2]


def test_vocabulary_counts_a_word_once_per_chunk_with_the_engines_analysis():
    vocabulary = Vocabulary.build([["Zebra zebra ZEBRA", "a zebra"], ["Zébras"]], [("Zebra facts", 2)],
                                  TantivyAnalyzer().surface_words)
    assert vocabulary.words("ze") == [("zebra", 4), ("zebras", 1)]  # 2 chunks + a title of 2 documents
    assert vocabulary.titles("zebra f") == [("Zebra facts", 2)]


def test_long_ranges_ranked_in_numpy_answer_as_the_python_ranking_does(monkeypatch):
    """A one-letter prefix of a large vocabulary is ranked in numpy (searcher/search/suggest.py
    LONG_RANGE): the same answers, ties included (count, then shorter title, then alphabetical)."""
    import random

    from searcher.search import suggest

    rng = random.Random(5)
    words = {"".join(rng.choice("abc") for _ in range(rng.randint(2, 7))): rng.randint(1, 4) for _ in range(3000)}
    titles = {}
    for _ in range(3000):
        title = " ".join("".join(rng.choice("abc") for _ in range(rng.randint(1, 4))) for _ in range(2))
        titles[title] = (title.title(), rng.randint(1, 3))
    prefixes = ["a", "b", "ab", "ca", "abc", "c b"]
    python = {p: (Vocabulary(words, titles).words(p), Vocabulary(words, titles).titles(p)) for p in prefixes}
    monkeypatch.setattr(suggest, "LONG_RANGE", 0)
    numpy = {p: (Vocabulary(words, titles).words(p), Vocabulary(words, titles).titles(p)) for p in prefixes}
    assert numpy == python
    assert all(len(python[p][0]) == 10 and len(python[p][1]) == 10 for p in ("a", "b"))  # full pages, ties among them
