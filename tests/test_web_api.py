"""The JSON API and the HTML pages through Flask's test client, over a small real index."""

from __future__ import annotations

import functools
import re
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searcher.web import create_app
from searcher.web.highlight import document_html, query_terms, snippet
from searcher.web.requests import MAX_QUERY_CHARS
from searcher.search.results import Results
from tests.web_support import LONG_ID, XSS_TEXT, StandInIndex, web_app, web_client, web_index  # noqa: F401 (fixtures)

ESCAPED_XSS = "&lt;script&gt;alert(1)&lt;/script&gt;"


def api_error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error", "message", "status"} and body["status"] == status
    assert "Traceback" not in response.get_data(as_text=True)
    return body


# -- /api/search ------------------------------------------------------------------------

def test_search_returns_ranked_results_with_passage_offsets(web_client, web_index):
    r = web_client.get("/api/search", query_string={"q": "kittens chasing mice", "k": 3})
    assert r.status_code == 200 and r.is_json
    body = r.get_json()
    assert body["query"] == "kittens chasing mice"
    assert isinstance(body["took_ms"], float) and body["took_ms"] >= 0
    assert len(body["results"]) == 3
    first = body["results"][0]
    assert set(first) == {"doc_id", "score", "title", "source", "passage", "start", "end", "page", "cosine", "bm25"}
    assert first["doc_id"] == "cat" and first["title"] == "Cats"
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)
    for hit in body["results"]:
        text = web_index.get_document(hit["doc_id"])["text"]
        assert text[hit["start"] : hit["end"]] == hit["passage"]


def test_search_pages_do_not_overlap(web_client):
    first = web_client.get("/api/search?q=water&k=3").get_json()
    second = web_client.get("/api/search?q=water&k=3&offset=3").get_json()
    assert first["has_more"] is True and first["next_offset"] == 3
    ids = [h["doc_id"] for h in first["results"] + second["results"]]
    assert len(ids) == 6 and len(set(ids)) == 6
    last = web_client.get("/api/search?q=water&k=5&offset=5").get_json()
    assert len(last["results"]) == 2 and last["has_more"] is False and last["next_offset"] is None
    beyond = web_client.get("/api/search?q=water&offset=1000").get_json()
    assert beyond["results"] == [] and beyond["has_more"] is False


def test_search_results_are_the_engines_hit_to_dict(web_client, web_index):
    """/api/search serialises each hit with Hit.to_dict() (less metadata, score rounded), so the
    API and the engine's JSON (`searcher search --json`) cannot drift apart."""
    body = web_client.get("/api/search", query_string={"q": "kittens chasing mice", "k": 3}).get_json()
    hits = web_index.search("kittens chasing mice", 4)[:3]  # the service asks for one more
    expected = []
    for hit in hits:
        d = hit.to_dict()
        del d["metadata"]
        expected.append({**d, "score": round(float(hit.score), 6)})
    assert body["results"] == expected


def test_search_result_fields_follow_hit_to_dict():
    from searcher.index.facade import Hit

    hit = Hit("d", 0.123456789, "T", "s.md", "passage", 3, 10, 7, {"tag": "x"})

    class OneHit(StandInIndex):
        def search(self, query, k=10, offset=0, mode=None):
            return Results([hit])

        def __len__(self):
            return 1

    body = create_app(OneHit()).test_client().get("/api/search?q=x").get_json()
    expected = {k: v for k, v in hit.to_dict().items() if k != "metadata"}
    assert body["results"] == [{**expected, "score": 0.123457}]


def test_error_helpers_import_nothing_back():
    """searcher.web.errors imports none of app, api and views, and nothing imports from app (no cycle)."""
    import ast
    from pathlib import Path

    def imported(name):
        tree = ast.parse((Path(__file__).parent.parent / "searcher" / "web" / f"{name}.py").read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}

    assert imported("errors").isdisjoint({"app", "api", "views"})
    for name in ("api", "views", "errors", "service", "highlight", "server", "auth", "writes"):
        assert "app" not in imported(name), name


def test_query_at_the_length_limit_is_accepted(web_client):
    r = web_client.get("/api/search", query_string={"q": "word " * (MAX_QUERY_CHARS // 5)})
    assert r.status_code == 200


@pytest.mark.parametrize("params, reason", [
    ({}, "missing"),
    ({"q": ""}, "empty"),
    ({"q": "   \t "}, "empty"),
    ({"q": "\x00\x01"}, "empty"),
    ({"q": "x" * (MAX_QUERY_CHARS + 1)}, "too long"),
    ({"q": "cats", "k": "abc"}, "k must be"),
    ({"q": "cats", "k": ""}, "k must be"),
    ({"q": "cats", "k": "1.5"}, "k must be"),
    ({"q": "cats", "k": "0"}, "k must be"),
    ({"q": "cats", "k": "-1"}, "k must be"),
    ({"q": "cats", "k": "101"}, "k must be"),
    ({"q": "cats", "k": "1_0"}, "k must be"),
    ({"q": "cats", "k": "99999999999999999999"}, "k must be"),
    ({"q": "cats", "offset": "-1"}, "offset must be"),
    ({"q": "cats", "offset": "x"}, "offset must be"),
    ({"q": "cats", "offset": "1001"}, "offset must be"),
])
def test_bad_search_requests_get_400_with_a_reason(web_client, params, reason):
    body = api_error(web_client.get("/api/search", query_string=params), 400)
    assert body["error"] == "bad_request"
    assert reason in body["message"]


# -- the mode parameter ---------------------------------------------------------------------

def test_unknown_mode_is_a_bad_request(web_client):
    body = api_error(web_client.get("/api/search?q=cats&mode=no-such-mode"), 400)
    assert "unknown search mode" in body["message"]


@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
def test_each_mode_is_passed_through(web_client, mode):
    body = web_client.get(f"/api/search?q=cats&mode={mode}").get_json()
    assert body["mode"] == mode and body["results"]


class EmptyIndex(StandInIndex):
    """A stand-in with no documents, so that many generated requests run without the model."""

    def search(self, query, k=10, offset=0, mode=None, **narrowing):
        return Results()

    def search_with_facets(self, query, k, offset, fields, mode=None, **narrowing):
        return Results(), {name: {} for name in fields}

    def __len__(self):
        return 0


@functools.cache
def fake_client():
    return create_app(EmptyIndex()).test_client()


@settings(max_examples=150, deadline=None)
@given(q=st.one_of(st.none(), st.text(max_size=1100)), k=st.one_of(st.none(), st.text(max_size=8)),
       offset=st.one_of(st.none(), st.text(max_size=8)), mode=st.one_of(st.none(), st.text(max_size=8)))
def test_any_query_string_gets_200_or_400_never_500(q, k, offset, mode):
    client = fake_client()
    params = {name: v for name, v in (("q", q), ("k", k), ("offset", offset), ("mode", mode)) if v is not None}
    for path in ("/api/search", "/"):
        r = client.get(path, query_string=params)
        assert r.status_code in (200, 400), (path, params, r.status_code)


# -- documents, health, stats -----------------------------------------------------------

def test_document_by_id(web_client, web_index):
    body = web_client.get("/api/documents/cat").get_json()
    assert body["id"] == "cat" and body["title"] == "Cats" and "kittens" in body["text"]
    assert set(body) == {"id", "title", "source", "metadata", "text", "added_at"}


def test_document_ids_with_slashes_work_in_the_path_and_as_a_parameter(web_client):
    by_path = web_client.get("/api/documents/" + quote(LONG_ID))
    assert by_path.status_code == 200 and by_path.get_json()["id"] == LONG_ID
    by_param = web_client.get("/api/documents", query_string={"id": LONG_ID})
    assert by_param.get_json()["id"] == LONG_ID


@pytest.mark.parametrize("path", [
    "/api/documents/nope",
    "/api/documents/%2e%2e/%2e%2e/etc/passwd",
    "/api/documents//etc/passwd",
    "/api/documents?id=/etc/passwd",
])
def test_unknown_documents_get_404_json_and_no_file_is_read(web_client, path):
    body = api_error(web_client.get(path), 404)
    assert body["error"] == "not_found" and "no document" in body["message"]
    assert "root:" not in web_client.get(path).get_data(as_text=True)


def test_document_without_id_is_a_bad_request(web_client):
    api_error(web_client.get("/api/documents"), 400)


def test_health_and_stats(web_client):
    assert web_client.get("/api/health").get_json() == {"status": "ok", "documents": 7}
    stats = web_client.get("/api/stats").get_json()
    assert stats["documents"] == 7 and stats["chunks"] >= 7
    assert stats["model"] == "all-MiniLM-L6-v2" and stats["dimension"] == 384


# -- errors -----------------------------------------------------------------------------

def test_api_errors_are_json(web_client):
    assert api_error(web_client.get("/api/nothing-here"), 404)["error"] == "not_found"
    assert api_error(web_client.post("/api/search?q=cats"), 405)["error"] == "method_not_allowed"
    big = web_client.get("/api/search?q=cats", data="x" * 100_000)
    assert api_error(big, 413)["error"] == "request_entity_too_large"


def test_unexpected_errors_give_a_500_without_details(web_app, web_client, monkeypatch):
    service = web_app.extensions["searcher"]

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals at /srv/private")

    monkeypatch.setattr(service.index, "search", broken)
    monkeypatch.setattr(service.index, "search_with_facets", broken)
    r = web_client.get("/api/search?q=cats")
    body = api_error(r, 500)
    assert "secret" not in r.get_data(as_text=True)
    page = web_client.get("/?q=cats")
    assert page.status_code == 500 and "text/html" in page.content_type
    assert "secret" not in page.get_data(as_text=True) and "Traceback" not in page.get_data(as_text=True)
    assert body["error"] == "internal_server_error"


def test_debug_is_off(web_app):
    assert not web_app.debug and web_app.config["MAX_CONTENT_LENGTH"] <= 1 << 20


# -- the pages ----------------------------------------------------------------------------

def html(response) -> str:
    assert "text/html" in response.content_type
    return response.get_data(as_text=True)


def test_empty_state(web_client):
    page = html(web_client.get("/"))
    assert "Search 7 documents" in page and "autofocus" in page
    assert 'name="viewport"' in page


def test_results_page_keeps_the_query_and_marks_the_match(web_client):
    r = web_client.get("/?q=kittens+chase+mice&k=2")
    page = html(r)
    assert r.status_code == 200
    assert 'value="kittens chase mice"' in page
    assert "autofocus" not in page  # on phones a focused box would cover the results
    assert '<input type="hidden" name="k" value="2">' in page  # a new search keeps the page size
    assert "Results 1–2" in page and " ms" in page
    assert '<mark class="sentence">' in page and '<mark class="term">kittens</mark>' in page
    assert 'href="/?q=kittens+chase+mice&amp;k=2&amp;offset=2"' in page  # the next page
    nxt = html(web_client.get("/?q=kittens+chase+mice&k=2&offset=2"))
    assert "Results 3–4" in nxt and 'rel="prev"' in nxt


def test_result_links_open_the_document_at_the_passage(web_client):
    page = html(web_client.get("/?q=read a text file line by line&k=1"))
    link = re.search(r'<h2><a href="([^"]+)">Python notes</a>', page).group(1).replace("&amp;", "&")
    assert link.startswith("/document?id=") and link.endswith("#hit")
    doc = html(web_client.get(link.split("#")[0]))
    hit = re.sub(r"<[^>]+>", "", re.search(r'<mark id="hit"[^>]*>(.*?)</div>', doc, re.S).group(1))
    assert "line by line" in hit and "Section 0." in doc.split('<mark id="hit"')[0]
    assert "Back to results" in doc


def test_bad_parameters_show_an_error_state(web_client):
    r = web_client.get("/?q=cats&k=1000")
    assert r.status_code == 400 and "Couldn't search" in html(r) and "k must be" in html(r)
    long = web_client.get("/?q=" + "x" * 1001)
    assert long.status_code == 400 and "too long" in html(long)


def test_document_page_ignores_odd_offsets(web_client):
    for query in ("start=%C2%B2&end=9", "start=5&end=2", "start=-1&end=3", "start=0&end=99999999999999"):
        r = web_client.get(f"/document?id=cat&{query}")
        assert r.status_code == 200 and '<mark id="hit"' not in html(r), query


def test_unknown_document_page_is_404(web_client):
    r = web_client.get("/document?id=nope")
    assert r.status_code == 404 and "no document" in html(r).lower()


def test_script_in_documents_and_queries_is_escaped(web_client):
    results = html(web_client.get("/?q=injected web page markup script"))
    assert ESCAPED_XSS.replace("script", '<mark class="term">script</mark>') in results
    assert XSS_TEXT not in results and "<img" not in results and "<b>Injected" not in results
    doc = html(web_client.get("/document?id=xss&start=0&end=30"))
    assert ESCAPED_XSS in doc and XSS_TEXT not in doc and "<img" not in doc
    echoed = html(web_client.get("/", query_string={"q": '"><script>alert(3)</script>'}))
    assert "<script>alert(3)" not in echoed and "&lt;script&gt;alert(3)" in echoed
    # The API returns the text as JSON data, which a browser never runs as a page.
    api = web_client.get("/api/documents/xss")
    assert api.is_json and api.get_json()["text"].count(XSS_TEXT) == 1


def test_pages_need_nothing_from_the_internet(web_client):
    for path in ("/", "/?q=cats", "/document?id=cat"):
        page = html(web_client.get(path))
        assert not re.search(r"(src|href)=\"(https?:)?//", page), path
    assert web_client.get("/static/style.css").status_code == 200
    assert web_client.get("/static/app.js").status_code == 200


def test_security_headers(web_client):
    headers = web_client.get("/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


# -- highlighting -----------------------------------------------------------------------

def test_snippet_marks_the_best_sentence_and_escapes():
    passage = "Cats sleep. <b>Files</b> are read line by line here. Dogs bark."
    out = str(snippet(passage, "reading files"))
    assert '<mark class="sentence">&lt;b&gt;<mark class="term">Files</mark>&lt;/b&gt; are' in out
    assert "<b>" not in out
    # the keyword engine's terms: its stop words ("a") out, Porter stems ("files" -> "file")
    assert query_terms("How do I read a file?") == {"how", "do", "i", "read", "file"}


def test_the_marked_terms_are_the_querys_free_words_not_its_syntax():
    """Excluded words are not marked, and the syntax (quotes, minus, field names, OR) is not a word."""
    assert query_terms('"line by line" read -binary -"file mode" type:md') == query_terms("line by line read") \
        == {"line", "read"}
    out = str(snippet("Owls and mice share the barn at night.", "mice -owls"))
    assert '<mark class="term">mice</mark>' in out and '<mark class="term">Owls</mark>' not in out


def test_snippet_of_a_long_passage_is_cut_to_a_window():
    passage = " ".join(f"Sentence {i} talks about nothing." for i in range(100)) + " The key fact is here."
    out = str(snippet(passage, "key fact"))
    assert len(out) < 700 and out.startswith("… ") and "<mark class=\"sentence\">The" in out


def test_document_html_ignores_bad_spans():
    assert "<mark" not in str(document_html("abc", 2, 99))
    assert str(document_html("a<b", 1, 2)) == 'a<mark id="hit" class="hit" tabindex="-1">&lt;</mark>b'


# -- a real server ------------------------------------------------------------------------

def test_waitress_answers_concurrent_searches_correctly(web_app):
    """Requests on several threads at once: each gets its own, correct answer."""
    import json
    from concurrent.futures import ThreadPoolExecutor
    from urllib.request import urlopen

    from searcher.web.server import serving

    queries = {"kittens": "cat", "petrol engine": "car", "yeast dough": "bread", "coral reefs": "sea"}
    with serving(web_app) as url:
        def top(query):
            with urlopen(f"{url}/api/search?k=1&q={quote(query)}", timeout=60) as r:
                return query, json.load(r)["results"][0]["doc_id"]

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(top, list(queries) * 4))
    assert len(answers) == 16 and all(queries[q] == doc for q, doc in answers)


def test_waitress_refuses_large_bodies_with_json(web_app):
    import http.client
    import json
    from urllib.parse import urlparse

    from searcher.web.server import serving

    with serving(web_app) as url:
        conn = http.client.HTTPConnection(urlparse(url).hostname, urlparse(url).port, timeout=30)
        conn.request("GET", "/api/search?q=cats", body=b"x" * 200_000)
        response = conn.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"] == "request_entity_too_large"
        conn.close()
