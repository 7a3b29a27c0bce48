"""Filters in memory (searcher/search/filter_columns.py) give exactly what SQLite gives for the same
filter (searcher/search/filters.py's SQL), over metadata of every JSON kind, for random filters."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from searcher import Index
from searcher.search.filter_columns import FilterColumns
from searcher.search.filters import compile_where

TEXTS = ["a", "b", "B", "memo", "/data/x", "/data/x/y", "/data/xy", "/Data/x/z", "é", "10", ""]
VALUES = [None, True, False, 0, 1, -3, 2.5, 10, 2 ** 40, *TEXTS, ["a", "b"], {"k": 1}]


def corpus(n: int = 120, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        meta = {}
        for field in ("f", "g", "path"):
            if rng.random() < 0.8:  # else the key is missing
                meta[field] = rng.choice(VALUES) if field != "path" else rng.choice(TEXTS[4:8] + [None, 3])
        docs.append({"id": str(i) if i % 4 == 0 else f"d{i:03d}", "title": rng.choice(["Cats", "dogs", "", "Émile"]),
                     "source": rng.choice(["/data/x/a.txt", "/data/xy/b.txt", "/other/c.txt"]),
                     "text": f"document {i} about things", "metadata": meta})
    return docs


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, fake_encoder):
    index = Index.create(tmp_path_factory.mktemp("columns") / "idx", encoder=fake_encoder, index_type="flat")
    index.add_documents(corpus())
    index.delete(["d007", "d050", "40"])  # rowids with gaps
    yield index
    index.close()


scalars = st.sampled_from([None, True, False, 0, 1, -3, 2.5, 4, 8, 10, 11, 12.0, *TEXTS, "z", "Cats", "8", "d004"])
fields = st.sampled_from(["f", "g", "path", "title", "source", "id", "missing", "metadata.f"])
operators = st.one_of(
    st.tuples(st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]), scalars),
    st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(scalars, min_size=1, max_size=4)),
    st.tuples(st.just("$under"), st.sampled_from(["/data/x", "/data", "/", "/data/x/", "/Data"])),
    st.tuples(st.just("$has"), st.one_of(scalars, st.lists(scalars, min_size=1, max_size=3))),
)
conditions = st.builds(lambda f, ops: {f: dict(ops)}, fields, st.lists(operators, min_size=1, max_size=2)) | \
    st.builds(lambda f, v: {f: v}, fields, scalars)
filters = st.recursive(conditions, lambda inner: st.one_of(
    st.builds(lambda xs: {"$and": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda xs: {"$or": xs}, st.lists(inner, min_size=1, max_size=3)),
    st.builds(lambda x: {"$not": x}, inner),
    st.builds(lambda a, b: {**a, **b}, inner, inner),
), max_leaves=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=filters)
def test_in_memory_filters_equal_sqlite(mixed, where):
    store = mixed.store
    try:
        compiled = compile_where(where)
    except ValueError:  # a malformed filter (null with $gt...) never reaches either
        assume(False)
    columns = FilterColumns(store, store.generation)
    by_sql = store.chunk_ids_where(*compiled)
    in_memory = columns.allowed(store, where)
    if in_memory is None:  # what the columns cannot answer exactly: only a number against the id column
        assert "id" in json.dumps(where), where
        return
    assert in_memory.tolist() == by_sql, where


def test_numbers_a_float_cannot_hold_fall_back_to_sql(mixed):
    store = mixed.store
    columns = FilterColumns(store, store.generation)
    assert columns.allowed(store, {"f": {"$gt": 2 ** 60}}) is None  # the caller asks SQLite
    for where in ({"f": {"$gt": 2 ** 60}}, {"f": {"$lt": 2 ** 60}}):  # texts sort after every number
        hits = mixed.search("document", k=200, mode="keyword", where=where)
        by_sql = set(store.chunk_doc_ids(store.chunk_ids_where(*compile_where(where))).values())
        assert {h.doc_id for h in hits} == by_sql and by_sql


def test_the_index_filters_in_memory_and_a_new_generation_gets_new_columns(mixed, tmp_path, fake_encoder):
    index = Index.create(tmp_path / "idx", encoder=fake_encoder, index_type="flat")
    index.add_documents([{"id": "a", "text": "alpha", "metadata": {"type": "pdf"}},
                         {"id": "b", "text": "beta", "metadata": {"type": "md"}}])
    assert [h.doc_id for h in index.search("alpha beta", k=5, mode="keyword", where={"type": "pdf"})] == ["a"]
    first = index.live._columns
    assert first is not None and first.generation == index.generation
    index.add_documents([{"id": "c", "text": "alpha gamma", "metadata": {"type": "pdf"}}])
    assert sorted(h.doc_id for h in index.search("alpha", k=5, mode="keyword", where={"type": "pdf"})) == ["a", "c"]
    assert index.live._columns is not first and index.live._columns.generation == index.generation
    index.close()


def test_a_number_against_the_text_id_column_is_left_to_sqlite(mixed):
    store = mixed.store
    columns = FilterColumns(store, store.generation)
    assert columns.allowed(store, {"id": 8}) is None
    hits = mixed.search("document", k=200, mode="keyword", where={"id": {"$in": [8, 12]}})
    assert sorted(h.doc_id for h in hits) == ["12", "8"]  # SQLite compares them as text


def test_under_is_case_sensitive_and_for_text_only(mixed):
    store = mixed.store
    docs = {d["id"]: d for d in corpus()}
    ids = set(store.chunk_doc_ids(store.chunk_ids_where(*compile_where({"path": {"$under": "/data/x"}}))).values())
    expected = {i for i, d in docs.items() if i not in ("d007", "d050", "40")
                and isinstance(d["metadata"].get("path"), str)
                and (d["metadata"]["path"] == "/data/x" or d["metadata"]["path"].startswith("/data/x/"))}
    assert ids == expected and expected  # not /data/xy, not /Data/x/z
