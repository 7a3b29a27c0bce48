"""Filters applied before ranking (searcher/search/filters.py): the language, its errors, and that a
filtered search is what an exhaustive search over the matching documents gives."""

from __future__ import annotations

import random

import numpy as np
import pytest

from searcher import Index
from searcher.search.filters import compile_where, parse_where_option

KINDS = ("memo", "report", "letter")


def corpus(n: int, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    words = "harbour comet garden ledger violin orchard glacier lantern meadow anchor".split()
    return [{"id": f"d{i}", "title": f"Doc {i}", "source": f"/data/{'a' if i % 2 else 'b'}/sub{i % 3}/d{i}.txt",
             "text": " ".join(rng.choice(words) for _ in range(12)),
             "metadata": {"year": 2000 + i % 25, "kind": KINDS[i % 3], "score": i / 10, **({"draft": True} if i % 5 == 0 else {})}}
            for i in range(n)]


def matches(doc: dict, where: dict) -> bool:
    """The filters used below, evaluated in plain Python (the reference the SQL is held to)."""
    for key, cond in where.items():
        if key == "$or":
            if not any(matches(doc, c) for c in cond):
                return False
            continue
        if key == "$not":
            if matches(doc, cond):
                return False
            continue
        value = doc["source"] if key == "source" else doc["metadata"].get(key)
        cond = cond if isinstance(cond, dict) else {"$eq": cond}
        for op, x in cond.items():
            ok = {"$eq": lambda: value == x, "$ne": lambda: value != x,
                  "$gt": lambda: value is not None and value > x, "$gte": lambda: value is not None and value >= x,
                  "$lt": lambda: value is not None and value < x, "$lte": lambda: value is not None and value <= x,
                  "$in": lambda: value in x, "$nin": lambda: value not in x,
                  "$under": lambda: value == x or str(value).startswith(x.rstrip("/") + "/")}[op]()
            if not ok:
                return False
    return True


FILTERS = [
    {"kind": "memo"}, {"kind": {"$ne": "memo"}}, {"year": {"$gte": 2020}}, {"year": {"$gt": 2010, "$lt": 2015}},
    {"year": {"$lte": 2001}}, {"kind": {"$in": ["memo", "letter"]}}, {"kind": {"$nin": ["memo"]}},
    {"source": {"$under": "/data/a/sub1"}}, {"$or": [{"kind": "report"}, {"year": 2003}]},
    {"$not": {"kind": "memo"}}, {"kind": "letter", "year": {"$gte": 2012}}, {"score": {"$gt": 25.5}},
    {"draft": True}, {"draft": {"$eq": None}},
]


@pytest.fixture(scope="module")
def filtered(tmp_path_factory, fake_encoder):
    docs = corpus(400)
    index = Index.create(tmp_path_factory.mktemp("filters") / "idx", encoder=fake_encoder, index_type="flat")
    index.add_documents(docs)
    yield index, docs
    index.close()


def exhaustive(index, docs, where, query, k):
    """Rank every matching document by its best chunk's cosine, by brute force."""
    ids, vectors = index.vectors.export()
    owner = index.store.chunk_doc_ids([int(c) for c in ids])
    keep = {d["id"] for d in docs if matches(d, where)}
    scores = vectors @ index.queries.encode(query)[0]
    best: dict[str, float] = {}
    for cid, s in zip(ids, scores):
        doc = owner[int(cid)]
        if doc in keep and s > best.get(doc, -2):
            best[doc] = float(s)
    return [d for d, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))][:k]


@pytest.mark.parametrize("where", FILTERS, ids=lambda w: str(w)[:40])
def test_a_filtered_flat_search_is_the_exhaustive_search_over_the_matching_documents(filtered, where):
    index, docs = filtered
    hits = index.search("comet over the harbour", k=10, mode="dense", where=where)
    expected = exhaustive(index, docs, where, "comet over the harbour", 10)
    assert [h.doc_id for h in hits] == expected
    keyword = index.search("lantern", k=50, mode="keyword", where=where)
    assert all(matches(next(d for d in docs if d["id"] == h.doc_id), where) for h in keyword)
    unfiltered = [h.doc_id for h in index.search("lantern", k=400, mode="keyword")]
    assert [h.doc_id for h in keyword] == [d for d in unfiltered if d in {h.doc_id for h in keyword}]
    for hit in index.search("lantern meadow", k=5, mode="hybrid", where=where):
        assert matches(next(d for d in docs if d["id"] == hit.doc_id), where)


def test_pages_of_a_filtered_search_follow_each_other(filtered):
    index, _ = filtered
    where = {"kind": "report"}
    whole = [h.doc_id for h in index.search("garden ledger", k=20, mode="dense", where=where)]
    pages = [h.doc_id for o in (0, 5, 10, 15) for h in index.search("garden ledger", k=5, offset=o, mode="dense", where=where)]
    assert pages == whole and len(whole) == 20


def test_a_filter_that_keeps_one_document_among_thousands_finds_it(tmp_path, fake_encoder):
    docs = corpus(2000, seed=9)
    docs[1234]["metadata"]["kind"] = "unique"
    with Index.create(tmp_path / "idx", encoder=fake_encoder, index_type="ivf") as index:
        index.add_documents(docs)
        for mode in ("dense", "keyword", "hybrid"):
            query = docs[1234]["text"].split()[0] if mode != "dense" else "violin"
            hits = index.search(query, k=10, mode=mode, where={"kind": "unique"})
            assert [h.doc_id for h in hits] == ["d1234"], mode
        assert index.search("violin", where={"kind": "nothing has this"}) == []


def test_a_repeated_filter_reuses_its_allowed_ids_and_their_selector(tmp_path, fake_encoder):
    with Index.create(tmp_path / "idx", encoder=fake_encoder, index_type="ivf") as index:
        index.add_documents(corpus(600, seed=4))
        where = {"kind": "memo"}
        first = index.search("comet", k=5, mode="dense", where=where)
        assert index.search("comet", k=5, mode="dense", where=where) == first
        (allowed,) = index.live._filter_cache.values()  # read-only and sorted: the backend may keep its selector
        assert not allowed.flags.writeable and np.all(np.diff(allowed) > 0) and len(allowed) == 200
        assert len(index.vectors._selectors) == 1


@pytest.mark.parametrize("bad, reason", [
    ({"kind": {"$regex": "m.*"}}, "unknown filter operator '\\$regex'"),
    ({"$xor": []}, "unknown filter operator or field"),
    ({"kind": {"$in": "memo"}}, "takes a non-empty list"),
    ({"$or": {"kind": "memo"}}, "takes a non-empty list of filters"),
    ({"year": {"$gt": [2000]}}, "a value must be a string, number"),
    ({"year": {"$gt": None}}, "null cannot be compared"),
    ({"folder": {"$under": 3}}, "takes a folder path"),
    (["kind", "memo"], "a filter is a JSON object"),
])
def test_a_malformed_filter_is_a_value_error_saying_what_is_wrong(filtered, bad, reason):
    index, _ = filtered
    with pytest.raises(ValueError, match=reason):
        compile_where(bad)
    with pytest.raises(ValueError, match=reason):
        index.search("comet", where=bad)


def test_values_are_parameters_never_sql(filtered):
    index, _ = filtered
    assert index.search("comet", where={"kind": "x' OR '1'='1"}) == []
    assert index.search("comet", where={"k'ind\"); drop table documents; --": "memo"}) == []
    assert len(index) == 400


def test_cli_where_conditions():
    assert parse_where_option("type=pdf") == {"type": {"$eq": "pdf"}}
    assert parse_where_option("modified>=2024-01-01") == {"modified": {"$gte": "2024-01-01"}}
    assert parse_where_option("pages>10") == {"pages": {"$gt": 10}}
    assert parse_where_option("kind!=memo") == {"kind": {"$ne": "memo"}}
    with pytest.raises(ValueError, match="field=value"):
        parse_where_option("no operator here")


def test_the_web_api_and_the_cli_take_a_filter_and_refuse_a_bad_one(filtered, tmp_path, encoder):
    import json

    from click.testing import CliRunner

    from searcher.cli import main
    from searcher.web import create_app

    index, docs = filtered
    client = create_app(index).test_client()
    where = json.dumps({"kind": "letter", "year": {"$gte": 2020}})
    body = client.get(f"/api/search?q=garden&k=20&mode=keyword&where={where}").get_json()
    assert body["results"] and all(matches(next(d for d in docs if d["id"] == r["doc_id"]),
                                           {"kind": "letter", "year": {"$gte": 2020}}) for r in body["results"])
    for bad, reason in (("{not json", "where is not a valid filter"), ('{"kind": {"$like": "x"}}', "unknown filter operator")):
        answer = client.get(f"/api/search?q=garden&where={bad}")
        assert answer.status_code == 400 and reason in answer.get_json()["message"]
    page = client.get(f"/?q=garden&mode=keyword&k=2&where={where}").get_data(as_text=True)
    assert "where=" in page  # the next page keeps the filter

    for args, reason in ((["--where", "nonsense"], "field=value"), (["--where-json", "{oops"], "bad filter"),
                         (["--where-json", '{"a": {"$bad": 1}}'], "unknown filter operator")):
        result = CliRunner().invoke(main, ["search", "garden", "--index", str(tmp_path / "none"), *args])
        assert result.exit_code == 2 and reason in result.output
    built = tmp_path / "real"
    Index.create(built, device="cpu").close()
    with Index.open(built, device="cpu") as real:
        real.add_documents(docs[:30])
    out = CliRunner().invoke(main, ["search", "garden", "--index", str(built), "--json", "--mode", "keyword",
                                    "--where", "kind=memo", "--where", "year>=2010"])
    assert out.exit_code == 0, out.output
    found = json.loads(out.output)
    assert found and all(r["metadata"]["kind"] == "memo" and r["metadata"]["year"] >= 2010 for r in found)
