"""Facets, date order and the recency boost (searcher/search/facets.py, Index.search/facets)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timezone

import pytest

from searcher import Index
from searcher.search.facets import FACET_DEPTH, add_filter, count_facets, facet_filter, field_values, reorder

TYPES = ("pdf", "md", "txt", "docx")
WORDS = "river mountain garden engine kitten bread ocean planet library music".split()


def corpus(n: int = 120, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        year = rng.choice((2021, 2022, 2023, 2024))
        meta = {"type": rng.choice(TYPES), "folder": f"/data/{rng.choice('abc')}",
                "modified": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00+00:00"}
        if i % 10 == 0:
            del meta["modified"]  # some documents have no date
        if i % 7 == 0:
            meta["tags"] = ["x", "y"] if i % 2 else ["x"]
        text = " ".join(rng.choice(WORDS) for _ in range(12))
        docs.append({"id": f"d{i}", "title": f"Doc {i}", "text": text, "metadata": meta})
    return docs


@pytest.fixture(scope="module")
def facet_index(tmp_path_factory, fake_encoder):
    idx = Index.create(tmp_path_factory.mktemp("facets") / "idx", encoder=fake_encoder, index_type="flat")
    docs = corpus()
    idx.add_documents(docs)
    yield idx, {d["id"]: d["metadata"] for d in docs}
    idx.close()


def direct_count(metadatas, field):
    counts = Counter()
    for meta in metadatas:
        if field == "year":
            values = [meta["modified"][:4]] if "modified" in meta else []
        else:
            value = meta.get(field)
            values = [] if value is None or isinstance(value, list) else [value]  # lists are not counted
        counts.update(set(values))
    return dict(counts)


@pytest.mark.parametrize("where", [None, {"type": "pdf"}, {"folder": {"$in": ["/data/a", "/data/b"]}}])
def test_facet_counts_equal_a_direct_count_over_the_matching_documents(facet_index, where):
    idx, metas = facet_index
    extra = {"where": where} if where else {}
    # Dense ranks every document: with a depth past the corpus, every matching one is counted.
    facets = idx.facets("kitten garden", ["type", "folder", "year", "tags"], mode="dense", depth=500, **extra)
    matching = [m for m in metas.values()
                if where is None or all(m.get(k) == v if not isinstance(v, dict) else m.get(k) in v["$in"]
                                        for k, v in where.items())]
    for field in ("type", "folder", "year", "tags"):
        assert facets[field] == direct_count(matching, field), field
        counts = list(facets[field].values())
        assert counts == sorted(counts, reverse=True)  # the most frequent first
    # With a smaller depth: the counts are those of the documents the search ranks first.
    top = idx.search("kitten garden", k=30, mode="dense", **extra)
    shallow = idx.facets("kitten garden", ["type", "year"], mode="dense", depth=30, **extra)
    for field in ("type", "year"):
        assert shallow[field] == direct_count([metas[h.doc_id] for h in top], field)


def test_keyword_facets_count_only_documents_with_the_words(facet_index):
    idx, metas = facet_index
    facets = idx.facets("library", ["type"], mode="keyword", depth=500)
    with_word = [metas[d] for d, m in metas.items() if "library" in idx.get_document(d)["text"].split()]
    assert facets["type"] == direct_count(with_word, "type")


def test_clicking_a_facet_value_keeps_exactly_those_documents(facet_index):
    idx, metas = facet_index
    facets = idx.facets("ocean planet", ["year", "type"], mode="dense", depth=500)
    year, count = next(iter(facets["year"].items()))
    where = add_filter({"type": "md"}, facet_filter("year", year))
    assert where == {"type": "md", "modified": {"$gte": year, "$lt": str(int(year) + 1)}}
    hits = idx.search("ocean planet", k=100, mode="dense", where=facet_filter("year", year))
    assert len(hits) == count and all(metas[h.doc_id]["modified"].startswith(year) for h in hits)
    both = idx.search("ocean planet", k=100, mode="dense", where=where)
    assert {h.doc_id for h in both} == {d for d, m in metas.items()
                                         if m["type"] == "md" and m.get("modified", "").startswith(year)}


def test_sort_by_modified_orders_the_best_documents_newest_first(facet_index):
    idx, metas = facet_index
    ranked = [h.doc_id for h in idx.search("engine bread", k=FACET_DEPTH, mode="dense")]  # the whole corpus
    newest_first = sorted(ranked, key=lambda d: (d not in metas or "modified" not in metas[d],
                                                 -datetime.fromisoformat(metas[d].get("modified", "2000-01-01")).timestamp()))
    by_date = idx.search("engine bread", k=40, mode="dense", sort="modified")
    assert [h.doc_id for h in by_date] == newest_first[:40]  # undated last; ties in relevance order
    dates = [metas[h.doc_id].get("modified") for h in by_date]
    assert dates == sorted(dates, reverse=True)
    # Pages of a sorted search follow on from each other, past the window's end too (each
    # page asks k + 1, as the web does): every document of the window once, then nothing.
    page2 = idx.search("engine bread", k=10, offset=10, mode="dense", sort="modified")
    assert [h.doc_id for h in page2] == [h.doc_id for h in by_date[10:20]]
    for options in ({"sort": "modified"}, {"recency": 30}):
        seen = []
        for offset in range(0, 130, 10):
            seen += [h.doc_id for h in idx.search("engine bread", k=11, offset=offset, mode="dense", **options)][:10]
        assert len(seen) == len(set(seen)) == FACET_DEPTH, options
    # Within a filter, only the matching documents, still newest first.
    pdf_ranking = [h.doc_id for h in idx.search("engine bread", k=100, mode="dense", where={"type": "pdf"})]
    pdfs = idx.search("engine bread", k=100, mode="dense", sort="modified", where={"type": "pdf"})
    assert sorted(h.doc_id for h in pdfs) == sorted(d for d, m in metas.items() if m["type"] == "pdf")
    assert [h.doc_id for h in pdfs] == sorted(pdf_ranking, key=lambda d: (
        "modified" not in metas[d], -datetime.fromisoformat(metas[d].get("modified", "2000-01-01")).timestamp()))


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_one_ranking_gives_the_page_and_its_facets_as_the_two_calls_do(facet_index, mode):
    idx, _ = facet_index
    for options in ({}, {"where": {"folder": "/data/a"}}, {"sort": "modified"}):
        hits, facets = idx.search_with_facets("kitten library", 10, 5, ["type", "year"], mode=mode, **options)
        alone = idx.search("kitten library", 10, 5, mode=mode, **options)
        assert [(h.doc_id, h.score) for h in hits] == [(h.doc_id, h.score) for h in alone]
        where = {"where": options["where"]} if "where" in options else {}
        assert facets == idx.facets("kitten library", ["type", "year"], mode=mode, **where)


def test_recency_boost_weights_scores_by_age(facet_index):
    idx, metas = facet_index
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    plain = {h.doc_id: h.score for h in idx.search("music river", k=200, mode="dense")}
    boosted = idx.search("music river", k=20, mode="dense", recency=365, now=now)
    oldest = min(datetime.fromisoformat(m["modified"]) for m in metas.values() if "modified" in m)
    for hit in boosted:
        modified = metas[hit.doc_id].get("modified")
        age = (now - (datetime.fromisoformat(modified) if modified else oldest)).total_seconds() / 86400
        expected = plain[hit.doc_id] * 0.5 ** (age / 365) if plain[hit.doc_id] > 0 else plain[hit.doc_id]
        assert hit.score == pytest.approx(expected, rel=1e-5)
    assert [h.score for h in boosted] == sorted((h.score for h in boosted), reverse=True)
    # A short half-life favours new documents: the boosted top ten are newer on average.
    top_plain = list(plain)[:10]
    mean_year = lambda ids: sum(int(metas[d].get("modified", "2021")[:4]) for d in ids) / len(ids)  # noqa: E731
    short = idx.search("music river", k=10, mode="dense", recency=30, now=now)
    assert mean_year([h.doc_id for h in short]) > mean_year(top_plain)


def test_bad_facet_sort_and_recency_arguments_are_value_errors(facet_index):
    idx, _ = facet_index
    for kwargs, message in (({"sort": "size"}, "unknown sort"), ({"recency": 0}, "half-life"),
                            ({"recency": "soon"}, "half-life")):
        with pytest.raises(ValueError, match=message):
            idx.search("river", **kwargs)
    for fields in (["type", "$or"], ["a b"], [""], [f"f{i}" for i in range(11)]):
        with pytest.raises(ValueError, match="facet"):
            idx.facets("river", fields)
    with pytest.raises(ValueError, match="four digits"):
        facet_filter("year", "soon")


def test_field_values_and_counting_rules():
    assert field_values({"modified": "2024-03-01T00:00:00+00:00"}, "year") == ["2024"]
    assert field_values({"modified": "yesterday"}, "year") == []
    assert field_values({"to": ["a@x", "b@x"]}, "to") == []  # no filter could keep a list's items
    assert field_values({"flag": True, "e": ""}, "flag") == [] == field_values({"e": ""}, "e")
    counts = count_facets([{"to": ["a", "b"]}, {"to": "a"}, {"to": "a"}, {}], ["to"])
    assert counts == {"to": {"a": 2}}
    assert facet_filter("title", "Cats") == {"metadata.title": "Cats"}  # facets count metadata keys


def test_every_facet_value_filters_to_exactly_its_count(tmp_path, fake_encoder):
    docs = [{"id": f"m{i}", "title": f"Mail {i}", "text": f"garden note {i}",
             "metadata": {"to": ["ann@x", "bob@x"] if i % 2 else "carl@x", "title": "Inbox" if i % 3 else "Sent"}}
            for i in range(12)]
    with Index.create(tmp_path / "idx", encoder=fake_encoder) as idx:
        idx.add_documents(docs)
        facets = idx.facets("garden note", ["to", "title"], mode="dense", depth=50)
        assert facets["to"] == {"carl@x": 6}
        for field, values in facets.items():
            for value, count in values.items():
                assert len(idx.search("garden note", k=50, mode="dense", where=facet_filter(field, value))) == count


def test_reorder_keeps_relevance_order_among_equal_dates():
    scored = {"a": (0.9, 1), "b": (0.8, 2), "c": (0.7, 3), "d": (0.6, 4)}
    metas = {"a": {}, "b": {"modified": "2024-01-01"}, "c": {"modified": "2024-01-01"}, "d": {"modified": "2025-01-01"}}
    out = reorder(scored, metas, "modified", None, datetime(2025, 6, 1, tzinfo=timezone.utc))
    assert list(out) == ["d", "b", "c", "a"]


def test_cli_sort_recency_and_facets(tmp_path, encoder):
    import json

    from click.testing import CliRunner

    from searcher.cli import main

    path = tmp_path / "idx"
    docs = [{"id": f"n{i}", "title": f"Note {i}", "text": f"Garden note {i}: water the beans and tomatoes.",
             "metadata": {"type": "md" if i % 2 else "pdf", "modified": f"202{i}-01-01T00:00:00+00:00"}}
            for i in range(4)]
    with Index.create(path, device="cpu") as idx:
        idx.add_documents(docs)
    run = CliRunner().invoke(main, ["search", "garden beans", "--index", str(path), "--sort", "modified",
                                    "--facets", "type,year", "--json"])
    assert run.exit_code == 0, run.output
    body = json.loads(run.output)
    assert [r["doc_id"] for r in body["results"]] == ["n3", "n2", "n1", "n0"]
    assert body["facets"] == {"type": {"md": 2, "pdf": 2}, "year": {"2020": 1, "2021": 1, "2022": 1, "2023": 1}}
    text = CliRunner().invoke(main, ["search", "garden beans", "--index", str(path), "--facets", "type",
                                     "--recency", "30"])
    assert text.exit_code == 0 and "type: md (2), pdf (2)" in text.output
    for args, reason in ((["--sort", "size"], "Invalid value for '--sort'"), (["--recency", "0"], "--recency"),
                         (["--facets", "a b"], "facet is a field name")):
        bad = CliRunner().invoke(main, ["search", "garden", "--index", str(path), *args])
        assert bad.exit_code == 2 and reason in bad.output, bad.output
