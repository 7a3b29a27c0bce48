"""Facets, order and similar documents through the web: /api/search's facets, sort and
recency, the page's facet links and filters in force, /similar and /api/similar."""

from __future__ import annotations

import json
import re
from collections import Counter
from html import unescape
from urllib.parse import parse_qs, urlparse

import pytest

from tests.web_support import DOCS, web_app, web_client, web_index  # noqa: F401 (fixtures)

META = {d["id"]: d["metadata"] for d in DOCS}


def links(body: str, cls: str | None = None) -> list[str]:
    pattern = r'<a class="%s" href="([^"]+)"' % re.escape(cls) if cls else r'<a (?:class="[^"]*" )?href="([^"]+)"'
    return [unescape(h) for h in re.findall(pattern, body)]


def query_of(url: str) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def test_api_facets_equal_a_direct_count_of_the_ranked_documents(web_client):
    r = web_client.get("/api/search", query_string={"q": "water", "k": 3, "facets": "type,folder,year", "mode": "dense"})
    assert r.status_code == 200
    body = r.get_json()
    # 7 documents, fewer than the facet depth: every one is ranked by the dense search.
    types = Counter(m["type"] for m in META.values())
    assert body["facets"]["type"] == dict(sorted(types.items(), key=lambda kv: (-kv[1], kv[0])))
    years = Counter(m["modified"][:4] for m in META.values())
    assert body["facets"]["year"] == dict(sorted(years.items(), key=lambda kv: (-kv[1], kv[0])))
    assert sum(body["facets"]["folder"].values()) == len(DOCS)
    assert len(body["results"]) == 3  # facets count beyond the page
    filtered = web_client.get("/api/search", query_string={"q": "water", "facets": "default", "mode": "dense",
                                                          "where": json.dumps({"type": "pdf"})}).get_json()
    assert filtered["facets"]["type"] == {"pdf": 2} and filtered["where"] == {"type": "pdf"}
    assert set(filtered["facets"]) == {"type", "folder", "year"}
    assert "facets" not in web_client.get("/api/search?q=water").get_json()  # only when asked


def test_api_sort_by_modified_and_recency(web_client):
    body = web_client.get("/api/search?q=water&k=7&mode=dense&sort=modified").get_json()
    dates = [META[r["doc_id"]]["modified"] for r in body["results"]]
    assert dates == sorted(dates, reverse=True) and len(dates) == 7 and body["sort"] == "modified"
    plain = web_client.get("/api/search?q=water&k=7&mode=dense").get_json()["results"]
    boosted = web_client.get("/api/search?q=water&k=7&mode=dense&recency=30").get_json()
    assert boosted["recency"] == 30
    by_id = {r["doc_id"]: r["score"] for r in plain}
    assert all(r["score"] < by_id[r["doc_id"]] for r in boosted["results"])  # every document is older than 30 days


@pytest.mark.parametrize("params, reason", [
    ({"facets": "type,$or"}, "facet is a field name"),
    ({"facets": ",".join(f"f{i}" for i in range(11))}, "at most 10 facets"),
    ({"sort": "size"}, "unknown sort"),
    ({"recency": "-3"}, "recency is a half-life"),
    ({"recency": "soon"}, "recency is a half-life"),
    ({"recency": "nan"}, "recency is a half-life"),
])
def test_bad_facet_sort_recency_get_400(web_client, params, reason):
    r = web_client.get("/api/search", query_string={"q": "water", **params})
    assert r.status_code == 400 and reason in r.get_json()["message"]
    page = web_client.get("/", query_string={"q": "water", **params})
    assert page.status_code == 400 and reason in unescape(page.get_data(as_text=True))


def test_page_lists_facets_as_links_that_add_a_removable_filter(web_client):
    body = web_client.get("/?q=water").get_data(as_text=True)
    assert 'class="facet" data-field="type"' in body and 'data-field="year"' in body
    facet_links = [u for u in links(body) if "where=" in u]
    pdf = next(u for u in facet_links if json.loads(query_of(u)["where"]) == {"type": "pdf"})
    filtered = web_client.get(pdf).get_data(as_text=True)
    assert "Filters" in filtered and "type: pdf" in filtered
    hits = re.findall(r'<h2><a href="[^"]*">([^<]+)</a></h2>', filtered)
    assert sorted(hits) == ["Engines", "Oceans"]  # the two PDFs
    # A second facet (a year) is ANDed; each filter in force has its own remove link.
    year_link = next(u for u in links(filtered) if "where=" in u and '"modified"' in query_of(u)["where"]
                     and "2024" in query_of(u)["where"])
    assert json.loads(query_of(year_link)["where"]) == {"type": "pdf", "modified": {"$gte": "2024", "$lt": "2025"}}
    both = web_client.get(year_link).get_data(as_text=True)
    assert re.findall(r'<h2><a href="[^"]*">([^<]+)</a></h2>', both) == ["Engines"]
    assert "year 2024" in both
    removes = links(both, "remove")
    assert len(removes) == 2
    left = [json.loads(query_of(u).get("where", "{}")) for u in removes]
    assert {"modified": {"$gte": "2024", "$lt": "2025"}} in left and {"type": "pdf"} in left
    # The search box keeps the filters for the next query.
    assert 'name="where"' in both


def test_facet_values_and_filters_are_escaped(web_client):
    body = web_client.get("/?q=injected+markup").get_data(as_text=True)
    assert "<b>html</b>" not in body and "&lt;b&gt;html&lt;/b&gt;" in body
    assert "<i>web</i>" not in body


def test_sort_links_keep_the_filter(web_client):
    body = web_client.get("/", query_string={"q": "water", "where": '{"type":"md"}'}).get_data(as_text=True)
    newest = next(u for u in links(body) if "sort=modified" in u)
    assert json.loads(query_of(newest)["where"]) == {"type": "md"}
    sorted_page = web_client.get(newest).get_data(as_text=True)
    titles = re.findall(r'<h2><a href="[^"]*">([^<]+)</a></h2>', sorted_page)
    assert titles == ["Python notes", "Baking", "Cats"]  # the Markdown notes, newest first


def test_each_result_and_document_links_to_similar_documents(web_client):
    body = web_client.get("/?q=kittens").get_data(as_text=True)
    similar = links(body, "similar")
    assert len(similar) == len(re.findall(r'<li class="result">', body)) > 0
    assert query_of(similar[0]) == {"id": "cat"}
    page = web_client.get(similar[0])
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    titles = re.findall(r'<h2><a href="[^"]*">([^<]+)</a></h2>', text)
    assert "Cats" not in titles and len(titles) == len(DOCS) - 1  # never the document itself
    doc = web_client.get("/document?id=cat").get_data(as_text=True)
    assert links(doc, "similar") == ["/similar?id=cat"]
    assert web_client.get("/similar?id=nope").status_code == 404
    assert web_client.get("/similar", query_string={"id": "cat", "where": "{bad"}).status_code == 400


def test_api_similar_takes_a_filter(web_client):
    body = web_client.get("/api/similar", query_string={"id": "cat", "where": '{"type": "pdf"}'}).get_json()
    assert sorted(r["doc_id"] for r in body["results"]) == ["car", "sea"]
    bad = web_client.get("/api/similar", query_string={"id": "cat", "where": '{"type": {"$near": 1}}'})
    assert bad.status_code == 400 and "$near" in bad.get_json()["message"]


def test_the_page_lists_the_facets_the_app_was_given(web_index, tmp_path):
    from click.testing import CliRunner

    from searcher.cli import main
    from searcher.web import create_app

    body = create_app(web_index, facets=("type",)).test_client().get("/?q=water").get_data(as_text=True)
    assert re.findall(r'class="facet" data-field="([^"]+)"', body) == ["type"]
    bad = CliRunner().invoke(main, ["serve", "--index", str(tmp_path / "none"), "--facets", "type,$x"])
    assert bad.exit_code == 2 and "facet is a field name" in bad.output
