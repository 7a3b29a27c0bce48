"""Several indexes in one server (searcher/web/indexes.py, issue 14): `?index=NAME` picks one,
`index=*` merges them by reciprocal rank fusion, unknown names are 404s, the page has a
selector and keeps the index in its links, `serve --index NAME=DIR`, and keys limited to
some indexes. Two small fake-encoder indexes (tests/fake_encoder.py; no model)."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.cli.options import parse_index_specs
from searcher.search.fusion import RRF_K
from searcher.remote import RemoteIndex
from tests.conftest import ANIMALS
from searcher.web import create_app
from searcher.web.keys import ApiKey, KeyFileError, KeyRing, digest, parse_key_file, read_key_file
from searcher.web.server import serving

# Ids shared with ANIMALS on purpose: a document id is per index.
KITCHEN = [
    {"id": "cat", "title": "Cat food", "text": "Cats eat fish, chicken and a little water each day.",
     "metadata": {"type": "recipe"}},
    {"id": "bread", "title": "Rye bread", "text": "Rye flour, water, salt and a sourdough starter rise overnight.",
     "metadata": {"type": "recipe"}},
    {"id": "soup", "title": "Fish soup", "text": "Simmer fish bones in salt water with onions for an hour.",
     "metadata": {"type": "recipe"}},
    {"id": "tea", "title": "Tea", "text": "Pour boiling water over the leaves and wait three minutes.",
     "metadata": {"type": "note"}},
]
PETS = [{**doc, "metadata": {"type": "note"}} for doc in ANIMALS]

READ_PETS = "srch_pets1_" + "p" * 43
READ_ALL = "srch_all1_" + "r" * 43
READ_KITCHEN = "srch_kitch1_" + "k" * 43
ADMIN_KITCHEN = "srch_adm1_" + "a" * 43
KEYS = KeyRing([
    ApiKey("pets1", digest(READ_PETS), "read", "pets"),
    ApiKey("all1", digest(READ_ALL), "read"),
    ApiKey("kitch1", digest(READ_KITCHEN), "read", "kitchen,elsewhere"),  # a name not served is allowed
    ApiKey("adm1", digest(ADMIN_KITCHEN), "admin", "kitchen"),
])


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    from tests.fake_encoder import FakeEncoder

    encoder = FakeEncoder()
    folder = tmp_path_factory.mktemp("indexes")
    pets = Index.create(folder / "pets", encoder=encoder)
    pets.add_documents(PETS)
    kitchen = Index.create(folder / "kitchen", encoder=encoder)
    kitchen.add_documents(KITCHEN)
    yield {"pets": pets, "kitchen": kitchen}
    pets.close()
    kitchen.close()


@pytest.fixture(scope="module")
def client(two):
    return create_app(indexes=two).test_client()


def ids(body) -> list:
    return [(r.get("index"), r["doc_id"]) for r in body["results"]]


def rrf(lists: dict[str, list[str]], k: float = RRF_K) -> list[tuple[str, str]]:
    """Reciprocal rank fusion written out: sum of 1/(k + rank); ties in the order the lists were given."""
    scores: dict[tuple[str, str], float] = {}
    for name, doc_ids in lists.items():
        for rank, doc_id in enumerate(doc_ids, 1):
            scores[(name, doc_id)] = scores.get((name, doc_id), 0.0) + 1 / (k + rank)
    order = list(lists)
    return sorted(scores, key=lambda key: (-scores[key], order.index(key[0])))


# -- the registry and ?index= -------------------------------------------------------------

def test_api_indexes_lists_them_with_the_default_first(client):
    body = client.get("/api/indexes").get_json()
    assert body == {"indexes": [{"name": "pets", "documents": len(PETS), "status": "ok"},
                                {"name": "kitchen", "documents": len(KITCHEN), "status": "ok"}],
                    "default": "pets"}


def test_index_selects_one_and_absent_is_the_default(client, two):
    for name, idx in two.items():
        body = client.get(f"/api/search?q=water&k=3&index={name}").get_json()
        assert [r["doc_id"] for r in body["results"]] == [h.doc_id for h in idx.search("water", k=3)]
        assert body["index"] == name and all("index" not in r for r in body["results"])
    default = client.get("/api/search?q=water&k=3").get_json()
    assert [r["doc_id"] for r in default["results"]] == [h.doc_id for h in two["pets"].search("water", k=3)]
    assert "index" not in default
    # Document ids are per index: the same id is another document in each.
    assert client.get("/api/documents?id=cat&index=kitchen").get_json()["title"] == "Cat food"
    assert client.get("/api/documents/cat?index=pets").get_json()["title"] == "Cats"
    assert client.get("/api/documents?id=soup").status_code == 404  # soup is in kitchen, not the default
    similar = client.get("/api/similar?id=soup&index=kitchen").get_json()
    assert {r["doc_id"] for r in similar["results"]} <= {d["id"] for d in KITCHEN} - {"soup"}
    assert client.get("/api/stats?index=kitchen").get_json()["documents"] == len(KITCHEN)
    assert client.get("/api/about?index=kitchen").get_json()["counts"]["documents"] == len(KITCHEN)
    assert client.get("/api/map?index=kitchen").get_json()["documents"] == len(KITCHEN)


@pytest.mark.parametrize("path", ["/api/search?q=water", "/api/documents?id=cat", "/api/documents/cat",
                                  "/api/similar?id=cat", "/api/stats", "/api/about", "/api/map", "/api/health"])
def test_an_unknown_index_is_a_json_404(client, path):
    r = client.get(path + ("&" if "?" in path else "?") + "index=nope")
    assert r.status_code == 404
    assert r.get_json()["error"] == "not_found" and "no index named 'nope'" in r.get_json()["message"]


@pytest.mark.parametrize("path", ["/?q=water", "/document?id=cat", "/similar?id=cat", "/about", "/map"])
def test_an_unknown_index_is_a_404_page(client, path):
    r = client.get(path + ("&" if "?" in path else "?") + "index=nope")
    assert r.status_code == 404 and "no index named" in r.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/api/documents?id=cat", "/api/similar?id=cat", "/api/stats", "/api/map",
                                  "/document?id=cat"])
def test_every_index_is_for_searches_only(client, path):
    r = client.get(path + "&index=*" if "?" in path else path + "?index=*")
    assert r.status_code == 400 and "for searches" in r.get_data(as_text=True)


# -- index=*: reciprocal rank fusion of each index's own list ------------------------------

@pytest.mark.parametrize("query, mode", [("water", None), ("cats eat fish", "keyword"), ("salt water", "dense")])
def test_all_merges_by_reciprocal_rank_fusion(client, query, mode):
    extra = f"&mode={mode}" if mode else ""
    own = {name: [r["doc_id"] for r in client.get(f"/api/search?q={query}&k=20&index={name}{extra}").get_json()["results"]]
           for name in ("pets", "kitchen")}
    expected = rrf(own)
    merged = client.get(f"/api/search?q={query}&k=4&index=*{extra}").get_json()
    assert ids(merged) == expected[:4] and merged["index"] == "*"
    assert merged["has_more"] == (len(expected) > 4) and merged["next_offset"] == (4 if len(expected) > 4 else None)
    for row, key in zip(merged["results"], expected):
        rank = own[key[0]].index(key[1]) + 1
        assert row["fused_score"] == pytest.approx(1 / (RRF_K + rank), abs=1e-6)
    # The next page is the next slice of the same fused list.
    second = client.get(f"/api/search?q={query}&k=4&offset=4&index=*{extra}").get_json()
    assert ids(second) == expected[4:8]
    everything = client.get(f"/api/search?q={query}&k=100&index=*{extra}").get_json()
    assert ids(everything) == expected and everything["has_more"] is False


def test_all_sums_the_facets_and_filters_each_index(client):
    facets = client.get("/api/search?q=water&index=*&facets=type").get_json()["facets"]
    assert facets == {"type": {"note": len(PETS) + 1, "recipe": 3}}
    recipes = client.get('/api/search?q=water&index=*&k=20&where={"type":"recipe"}').get_json()
    assert {(r["index"], r["doc_id"]) for r in recipes["results"]} == {("kitchen", "cat"), ("kitchen", "bread"),
                                                                       ("kitchen", "soup")}


def test_health_probes_every_index(client):
    body = client.get("/api/health").get_json()
    assert body == {"status": "ok", "documents": len(PETS) + len(KITCHEN),
                    "indexes": {"pets": {"status": "ok", "documents": len(PETS)},
                                "kitchen": {"status": "ok", "documents": len(KITCHEN)}}}
    assert client.get("/api/health?index=kitchen").get_json() == {"status": "ok", "documents": len(KITCHEN)}


# -- the page -------------------------------------------------------------------------------

def links(html: str, path: str) -> list[dict]:
    return [parse_qs(urlsplit(unescape(href)).query) for href in re.findall(rf'href="({path}\?[^"]*)"', html)]


def test_the_page_has_a_selector_with_two_indexes_and_none_with_one(client, two):
    html = client.get("/?q=water&index=kitchen").get_data(as_text=True)
    select = re.search(r'<select id="index" name="index".*?</select>', html, re.S).group()
    assert re.findall(r'<option value="([^"]*)"', select) == ["*", "pets", "kitchen"]
    assert re.search(r'<option value="kitchen" selected>', select)
    assert re.search(r'<option value="pets" selected>', client.get("/").get_data(as_text=True))  # the default
    assert re.search(r'<option value="\*" selected>', client.get("/?q=water&index=*").get_data(as_text=True))
    single = create_app(two["pets"]).test_client()
    assert "<select" not in single.get("/?q=water").get_data(as_text=True)
    plain = links(single.get("/?q=water").get_data(as_text=True), "/document")
    assert plain and all("index" not in q for q in plain)  # one index: the URLs are as before


def test_the_page_keeps_the_index_in_its_links(client):
    html = client.get("/?q=water&index=kitchen&k=2").get_data(as_text=True)
    docs = links(html, "/document")
    assert docs and all(q["index"] == ["kitchen"] for q in docs)
    assert all(q["index"] == ["kitchen"] for q in links(html, "/similar"))
    pages = links(html, "/")
    assert pages and all(q["index"] == ["kitchen"] for q in pages)  # more results, facets, sort
    assert 'href="/about?index=kitchen"' in html and 'href="/map?index=kitchen"' in html
    doc = client.get("/document?id=cat&index=kitchen&q=water").get_data(as_text=True)
    assert "Cat food" in doc and all(q["index"] == ["kitchen"] for q in links(doc, "/similar"))
    assert all(q["index"] == ["kitchen"] for q in links(doc, "/"))
    similar = client.get("/similar?id=soup&index=kitchen").get_data(as_text=True)
    assert all(q["index"] == ["kitchen"] for q in links(similar, "/document"))
    assert 'data-search="/api/search?index=kitchen"' in client.get("/map?index=kitchen").get_data(as_text=True)
    assert "the index <q>kitchen</q>" in client.get("/about?index=kitchen").get_data(as_text=True)


def test_the_merged_page_links_each_result_to_its_own_index(client):
    html = client.get("/?q=water&index=*&k=20").get_data(as_text=True)
    expected = ids(client.get("/api/search?q=water&index=*&k=20").get_json())
    docs = links(html, "/document")
    assert [(q["index"][0], q["id"][0]) for q in docs] == expected
    assert [(q["index"][0], q["id"][0]) for q in links(html, "/similar")] == expected
    assert re.findall(r'<span class="index"[^>]*>([^<]*)</span>', html) == [name for name, _ in expected]
    assert f"{len(PETS) + len(KITCHEN)} documents searched" in html
    assert all(q["index"] == ["*"] for q in links(html, "/"))


# -- writes go to the index named ---------------------------------------------------------

def test_writes_go_to_the_named_index(tmp_path, fake_encoder):
    a = Index.create(tmp_path / "a", encoder=fake_encoder)
    b = Index.create(tmp_path / "b", encoder=fake_encoder)
    try:
        app2 = create_app(indexes={"pets": a, "kitchen": b}, keys=KEYS).test_client()
        owl = {"id": "owl", "text": "Barn owls hunt voles over meadows at dusk."}
        assert app2.post("/api/documents?index=nope", json=owl, headers=bearer(ADMIN_KITCHEN)).status_code == 404
        assert app2.post("/api/documents?index=*", json=owl, headers=bearer(ADMIN_KITCHEN)).status_code == 400
        assert app2.post("/api/documents?index=pets", json=owl, headers=bearer(ADMIN_KITCHEN)).status_code == 403
        assert app2.post("/api/documents", json=owl, headers=bearer(ADMIN_KITCHEN)).status_code == 201  # its default
        assert len(b) == 1 and len(a) == 0
        found = app2.get("/api/search?q=barn owls&index=kitchen", headers=bearer(READ_ALL)).get_json()
        assert [r["doc_id"] for r in found["results"]] == ["owl"]
        assert app2.delete("/api/documents/owl?index=pets", headers=bearer(ADMIN_KITCHEN)).status_code == 403
        assert app2.delete("/api/documents/owl?index=kitchen", headers=bearer(ADMIN_KITCHEN)).status_code == 200
        assert len(b) == 0
    finally:
        a.close()
        b.close()


# -- keys limited to some indexes ---------------------------------------------------------

@pytest.fixture(scope="module")
def keyed(two):
    return create_app(indexes=two, keys=KEYS).test_client()


def test_a_limited_key_lists_and_reads_only_its_indexes(keyed):
    pets = bearer(READ_PETS)
    assert keyed.get("/api/indexes", headers=pets).get_json() == {
        "indexes": [{"name": "pets", "documents": len(PETS), "status": "ok"}], "default": "pets"}
    for path in ("/api/search?q=water&index=kitchen", "/api/documents?id=cat&index=kitchen", "/api/stats?index=kitchen",
                 "/api/health?index=kitchen", "/?q=water&index=kitchen", "/document?id=cat&index=kitchen"):
        r = keyed.get(path, headers=pets)
        assert r.status_code == 403, path
        assert "may not read the index 'kitchen'" in unescape(r.get_data(as_text=True))
    assert keyed.get("/api/search?q=water&index=nope", headers=pets).status_code == 404
    merged = keyed.get("/api/search?q=water&index=*&k=50", headers=pets).get_json()
    assert merged["results"] and {r["index"] for r in merged["results"]} == {"pets"}
    assert keyed.get("/api/health", headers=pets).get_json()["indexes"].keys() == {"pets"}
    assert "<select" not in keyed.get("/?q=water", headers=pets).get_data(as_text=True)  # one index to choose from
    everyone = keyed.get("/api/search?q=water&index=*&k=50", headers=bearer(READ_ALL)).get_json()
    assert {r["index"] for r in everyone["results"]} == {"pets", "kitchen"}
    assert [i["name"] for i in keyed.get("/api/indexes", headers=bearer(READ_ALL)).get_json()["indexes"]] == \
        ["pets", "kitchen"]


def test_a_key_without_the_default_index_reads_its_own(keyed):
    kitchen = bearer(READ_KITCHEN)
    assert keyed.get("/api/indexes", headers=kitchen).get_json()["default"] == "kitchen"
    body = keyed.get("/api/search?q=water&k=20", headers=kitchen).get_json()
    assert {r["doc_id"] for r in body["results"]} <= {d["id"] for d in KITCHEN}
    assert keyed.get("/api/documents?id=cat", headers=kitchen).get_json()["title"] == "Cat food"
    assert keyed.get("/api/search?q=water&index=pets", headers=kitchen).status_code == 403


def test_a_key_limited_to_indexes_the_server_lacks_reads_nothing(two):
    ring = KeyRing([ApiKey("none1", digest(READ_PETS.replace("pets1", "none1")), "read", "other")])
    c = create_app(indexes=two, keys=ring).test_client()
    headers = bearer(READ_PETS.replace("pets1", "none1"))
    assert c.get("/api/indexes", headers=headers).get_json() == {"indexes": [], "default": None}
    assert c.get("/api/search?q=water", headers=headers).status_code == 403
    assert c.get("/api/search?q=water&index=*", headers=headers).status_code == 403


def test_the_sign_in_page_names_no_index(keyed):
    html = keyed.get("/sign-in").get_data(as_text=True)
    assert "kitchen" not in html and "<select" not in html


def test_keys_add_with_indexes(tmp_path):
    path = tmp_path / "keys.txt"
    added = CliRunner().invoke(main, ["keys", "add", "--scope", "read", "--indexes", "notes,mail", "--file", str(path)])
    assert added.exit_code == 0, added.output
    [entry] = read_key_file(path)
    assert entry.indexes == "notes,mail" and entry.index_limit == {"notes", "mail"}
    assert KeyRing.from_file(path).lookup(added.stdout.strip()).index_limit == {"notes", "mail"}
    listed = CliRunner().invoke(main, ["keys", "list", "--file", str(path)])
    assert any(line.split() == [entry.id, "read", "notes,mail", "-", "-"] for line in listed.output.splitlines())
    bad = CliRunner().invoke(main, ["keys", "add", "--scope", "read", "--indexes", "a b", "--file", str(path)])
    assert bad.exit_code == 2 and "index name" in bad.output
    assert len(read_key_file(path)) == 1
    with pytest.raises(KeyFileError, match="keys.txt:1"):
        parse_key_file("abc sha256:" + "0" * 64 + " read a/b\n", "keys.txt")


# -- searcher serve --index NAME=DIR ---------------------------------------------------------

def test_index_specs_parse_names_and_folders(tmp_path):
    from searcher.index.facade import DEFAULT_INDEX_DIR

    assert parse_index_specs(()) == [("default", Path(DEFAULT_INDEX_DIR))]
    assert parse_index_specs(("notes=/srv/notes", "indexes/mail", "./a=b")) == [
        ("notes", Path("/srv/notes")), ("mail", Path("indexes/mail")), ("a-b", Path("./a=b"))]


@pytest.mark.parametrize("args, message", [
    (["--index", "a={0}/x", "--index", "a={0}/y"], "two indexes are named 'a'"),
    (["--index", "{0}/one/notes", "--index", "{0}/two/notes"], "two indexes are named 'notes'"),
    (["--index", "a={0}/x", "--index", "b={0}/x"], "given twice"),
    (["--index", "my notes={0}/x"], "an index name is"),
    (["--index", "a="], "folder after a= is missing"),
])
def test_serve_refuses_bad_index_names_before_opening_anything(tmp_path, args, message):
    result = CliRunner().invoke(main, ["serve", *[a.format(tmp_path) for a in args]])
    assert result.exit_code == 2, result.output  # a usage error, not "no index in ..." (exit 1)
    assert message in result.output
    assert not any(tmp_path.iterdir())  # nothing was created or opened


def test_remote_index_reads_a_named_index(two):
    from searcher import SearcherError

    with serving(create_app(indexes=two)) as url:
        kitchen = RemoteIndex(url, index="kitchen")
        assert kitchen.check() == len(KITCHEN)
        assert [h.doc_id for h in kitchen.search("water", k=3)] == [h.doc_id for h in two["kitchen"].search("water", k=3)]
        assert kitchen.get_document("cat")["title"] == "Cat food"
        assert RemoteIndex(url).get_document("cat")["title"] == "Cats"
        with pytest.raises(SearcherError):
            RemoteIndex(url, index="nope").check()
        with pytest.raises(SearcherError):
            RemoteIndex(url, index="nope").get_document("cat")
