"""Per-document access (searcher/search/access.py, docs/access.md): documents that name their
readers, keys that carry a user and groups, and every read path filtered before ranking.

Two users see different halves of one small index: ann (group finance) the finance half,
bob (group legal) the legal half; both see the two documents that name no readers."""

from __future__ import annotations

import asyncio
import json

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.readers.options import LoadOptions
from searcher.search.access import Viewer, scoped
from searcher.search.filter_columns import FilterColumns
from searcher.search.filters import compile_where
from searcher.web import create_app
from searcher.web.keys import KeyRing, add_key, read_key_file

DOCS = [
    {"id": "budget", "title": "Quarterly budget", "readers": ["group:finance"],
     "text": "The finance team's quarterly budget: revenue, costs and the forecast for next year.",
     "metadata": {"type": "xlsx", "folder": "/srv/finance"}},
    {"id": "payroll", "title": "Payroll run", "readers": ["user:ann"],
     "text": "Salaries are paid on the last working day of each month; the payroll run closes two days before.",
     "metadata": {"type": "pdf", "folder": "/srv/finance"}},
    {"id": "contract", "title": "Supplier contract", "readers": ["group:legal"],
     "text": "The legal team reviews every supplier contract: liability, termination and the governing law.",
     "metadata": {"type": "docx", "folder": "/srv/legal"}},
    {"id": "patent", "title": "Patent filing", "readers": ["user:bob", "group:patents"],
     "text": "A patent filing describes the invention, its claims and the prior art it improves on.",
     "metadata": {"type": "odt", "folder": "/srv/legal"}},
    {"id": "handbook", "title": "Staff handbook",
     "text": "The staff handbook explains holidays, expenses and how to book a meeting room.",
     "metadata": {"type": "md", "folder": "/srv/public"}},
    {"id": "menu", "title": "Cafeteria menu",
     "text": "This week the cafeteria serves soup, pasta and a vegetable curry on Friday.",
     "metadata": {"type": "md", "folder": "/srv/public"}},
]
PUBLIC = {"handbook", "menu"}
ANN, BOB = Viewer("ann", ("finance",)), Viewer("bob", ("legal",))
SEES = {"ann": {"budget", "payroll"} | PUBLIC, "bob": {"contract", "patent"} | PUBLIC}
HIDDEN = {"ann": {"contract", "patent"}, "bob": {"budget", "payroll"}}
VIEWERS = {"ann": ANN, "bob": BOB}
QUERY = "budget payroll contract patent handbook cafeteria"  # a word of every document
HIDDEN_FACETS = {"ann": {"docx", "odt", "/srv/legal"}, "bob": {"xlsx", "pdf", "/srv/finance"}}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    idx = Index.create(tmp_path_factory.mktemp("access") / "idx", device="cpu")
    report = idx.add_documents(DOCS)
    assert report.added == len(DOCS), report.summary()
    yield idx
    idx.close()


def ids(hits) -> set[str]:
    return {h.doc_id for h in hits}


# -- the library ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["dense", "keyword", "hybrid"])
@pytest.mark.parametrize("who", ["ann", "bob"])
def test_each_user_finds_only_their_half_in_every_mode(shared, mode, who):
    assert ids(shared.search(QUERY, k=10, mode=mode, access=VIEWERS[who])) == SEES[who]
    assert ids(shared.search(QUERY, k=10, mode=mode)) == {d["id"] for d in DOCS}  # None: every document
    assert ids(shared.search(QUERY, k=10, mode=mode, access=Viewer())) == PUBLIC  # no user: no readers only


def test_a_hidden_document_is_never_counted_in_a_facet(shared):
    for who, viewer in VIEWERS.items():
        hits, counts = shared.search_with_facets(QUERY, k=10, fields=("type", "folder"), access=viewer)
        assert ids(hits) == SEES[who]
        shown = set(counts["type"]) | set(counts["folder"])
        assert not shown & HIDDEN_FACETS[who], counts
        assert sum(counts["type"].values()) == len(SEES[who])
        assert shared.facets(QUERY, ("type",), access=viewer) == {"type": counts["type"]}


def test_a_hidden_document_shapes_no_visible_documents_dense_score(shared, tmp_path):
    """Ranked among only what ann may read, as if the index held nothing else."""
    alone = Index.create(tmp_path / "alone", device="cpu")
    alone.add_documents([d for d in DOCS if d["id"] in SEES["ann"]])
    mine = {h.doc_id: h.score for h in shared.search("money", k=10, mode="dense", access=ANN)}
    theirs = {h.doc_id: h.score for h in alone.search("money", k=10, mode="dense")}
    assert list(mine) == list(theirs) and mine == pytest.approx(theirs, abs=1e-5)
    alone.close()


def test_similar_documents_and_vectors_follow_the_viewer(shared):
    assert ids(shared.similar("budget", k=10, access=ANN)) == SEES["ann"] - {"budget"}
    with pytest.raises(KeyError):  # a hidden document is not said to exist
        shared.similar("contract", access=ANN)
    assert shared.get_document("patent", access=ANN) is None
    assert shared.get_document("patent", access=BOB)["id"] == "patent"
    assert shared.get_document("patent", access=Viewer(None, ("patents",)))["id"] == "patent"
    vector = shared.document_vector("contract")
    assert ids(shared.search_vector(vector, k=10, access=ANN)) == SEES["ann"]


def test_suggestions_offer_only_titles_the_viewer_may_read(shared):
    def titles(access=None):
        kw = {} if access is None else {"access": access}
        return {s.text for s in shared.suggest("pa", fresh=True, **kw) if s.kind == "title"}

    assert titles() == {"Payroll run", "Patent filing"}
    assert titles(ANN) == {"Payroll run"}
    assert titles(BOB) == {"Patent filing"}
    assert titles(Viewer()) == set()


def test_the_document_count_is_of_what_the_viewer_may_read(shared):
    assert (shared.count(), shared.count(ANN), shared.count(BOB), shared.count(Viewer())) == (6, 4, 4, 2)


def test_a_filter_that_keeps_every_chunk_searches_as_no_filter(shared, fake_animals_index):
    live = fake_animals_index.live
    assert live.view(live.read_store(), scoped(None, ANN)).allowed is None  # no document has readers
    assert shared.live.view(shared.live.read_store(), scoped(None, ANN)).allowed is not None


def test_readers_are_checked_and_normalised(shared, fake_index):
    report = fake_index.add_documents([
        {"id": "ok", "text": "some words", "readers": ["user:ann", "group:finance", "user:ann"]},
        {"id": "csv", "text": "some words", "readers": "group:b, user:c"},
        {"id": "none", "text": "some words", "readers": []},
        {"id": "bad", "text": "some words", "readers": ["ann"]},
        {"id": "spaces", "text": "some words", "readers": ["user:ann smith"]},
    ])
    assert report.added == 3 and [s.path for s in report.skipped] == ["bad", "spaces"], report.summary()
    assert "user:NAME" in report.skipped[0].reason
    assert fake_index.get_document("ok")["metadata"]["readers"] == ["group:finance", "user:ann"]
    assert fake_index.get_document("csv")["metadata"]["readers"] == ["group:b", "user:c"]
    assert "readers" not in fake_index.get_document("none")["metadata"]
    with pytest.raises(ValueError):
        Viewer("ann,bob")


def test_has_in_sql_and_in_memory_agree_on_lists_scalars_objects_and_missing(fake_index):
    fake_index.add_documents([{"id": f"d{i}", "text": "words", "metadata": {"f": value}} if value != "-" else
                              {"id": f"d{i}", "text": "words"}
                              for i, value in enumerate([["a", "b"], "a", {"k": 1}, 1, [1, True], "-", ["c"], None])])
    store = fake_index.store
    for where in ({"f": {"$has": "a"}}, {"f": {"$has": [1]}}, {"$not": {"f": {"$has": ["a", "c"]}}},
                  {"f": {"$has": ["b", 1]}}, {"title": {"$has": ""}}):
        by_sql = store.chunk_ids_where(*compile_where(where))
        assert FilterColumns(store, store.generation).allowed(store, where).tolist() == by_sql, where
    assert scoped({"type": "pdf"}, ANN) == {"$and": [{"type": "pdf"}, ANN.where()]}
    assert scoped(None, None) is None


def test_readers_of_a_run_change_without_encoding_again(fake_index, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.md").write_text("Notes about the quarterly forecast.")
    (folder / "rows.jsonl").write_text(json.dumps({"id": "r1", "text": "row one", "readers": ["user:carol"]}) + "\n"
                                       + json.dumps({"id": "r2", "text": "row two"}) + "\n")
    first = fake_index.add_paths([folder], LoadOptions(workers=0, readers="group:finance"))
    assert first.added == 3

    def readers():
        return {d: (fake_index.get_document(d)["metadata"].get("readers")) for d in (str(folder / "a.md"), "r1", "r2")}

    assert readers() == {str(folder / "a.md"): ["group:finance"], "r1": ["user:carol"], "r2": ["group:finance"]}
    vectors = len(fake_index.vectors)
    again = fake_index.add_paths([folder], LoadOptions(workers=0, readers=["group:legal", "user:dan"]))
    assert (again.added, again.updated, again.unchanged, again.chunks) == (0, 0, 3, 0)  # nothing encoded
    assert len(fake_index.vectors) == vectors
    assert readers() == {str(folder / "a.md"): ["group:legal", "user:dan"], "r1": ["user:carol"],
                         "r2": ["group:legal", "user:dan"]}
    assert ids(fake_index.search("forecast", k=5, mode="keyword", access=Viewer("dan"))) == {str(folder / "a.md")}
    assert not fake_index.search("forecast", k=5, mode="keyword", access=Viewer("ann", ("finance",)))
    fake_index.add_paths([folder], LoadOptions(workers=0))  # no --readers (a watcher's run): they keep theirs
    assert readers() == {str(folder / "a.md"): ["group:legal", "user:dan"], "r1": ["user:carol"],
                         "r2": ["group:legal", "user:dan"]}
    fake_index.add_paths([folder], LoadOptions(workers=0, readers="everyone"))  # every key reads them now
    assert readers() == {str(folder / "a.md"): None, "r1": ["user:carol"], "r2": None}


def test_a_document_written_again_without_readers_keeps_them_until_told_otherwise(fake_index):
    fake_index.add_documents([{"id": "memo", "text": "a memo", "readers": ["user:bob"]}])
    fake_index.add_documents([{"id": "memo", "text": "a memo, changed"}], on_conflict="replace")
    assert fake_index.get_document("memo")["metadata"]["readers"] == ["user:bob"]
    assert fake_index.get_document("memo", access=ANN) is None
    fake_index.add_documents([{"id": "memo", "text": "a memo, changed", "readers": []}])
    assert "readers" not in fake_index.get_document("memo")["metadata"]
    assert fake_index.get_document("memo", access=ANN)["id"] == "memo"


def test_the_index_command_checks_readers_before_opening_anything(tmp_path):
    result = CliRunner().invoke(main, ["index", str(tmp_path), "--index", str(tmp_path / "idx"),
                                       "--readers", "finance"])
    assert result.exit_code == 2 and "user:NAME" in result.output
    assert not (tmp_path / "idx").exists()


# -- keys -----------------------------------------------------------------------------------

def test_keys_carry_a_user_and_groups(tmp_path):
    path = tmp_path / "keys.txt"
    runner = CliRunner()
    added = runner.invoke(main, ["keys", "add", "--scope", "read", "--user", "ann", "--groups", "legal,finance",
                                 "--file", str(path)])
    assert added.exit_code == 0, added.output
    [entry] = read_key_file(path)
    assert (entry.user, entry.groups, entry.viewer) == ("ann", ("finance", "legal"), Viewer("ann", ("finance", "legal")))
    assert path.read_text().splitlines()[-1].endswith(" * user=ann groups=finance,legal")
    listed = runner.invoke(main, ["keys", "list", "--file", str(path)])
    assert "ann" in listed.output and "finance,legal" in listed.output
    bad = runner.invoke(main, ["keys", "add", "--scope", "read", "--user", "ann smith", "--file", str(path)])
    assert bad.exit_code == 2
    entry, _ = add_key(path, "admin", "notes", user="root")
    assert entry.viewer is None  # an admin key reads every document
    assert [k.indexes for k in read_key_file(path)] == ["*", "notes"]


# -- the web: the API, the pages, index=*, the map, suggestions -------------------------------

@pytest.fixture(scope="module")
def keyed(shared, tmp_path_factory):
    """(app, {who: key}) over the index served twice (for index=*), with keys for ann, bob, a
    read key of nobody and an admin key."""
    path = tmp_path_factory.mktemp("keys") / "keys.txt"
    keys = {"ann": add_key(path, "read", user="ann", groups="finance")[1],
            "bob": add_key(path, "read", user="bob", groups="legal")[1],
            "nobody": add_key(path, "read")[1],
            "admin": add_key(path, "admin")[1]}
    app = create_app(indexes={"main": shared, "again": shared}, keys=KeyRing.from_file(path))
    return app, keys


def get(keyed, who: str, url: str):
    app, keys = keyed
    return app.test_client().get(url, headers={"Authorization": f"Bearer {keys[who]}"})


def api_ids(keyed, who: str, url: str) -> set[str]:
    response = get(keyed, who, url)
    assert response.status_code == 200, response.get_json()
    return {r["doc_id"] for r in response.get_json()["results"]}


@pytest.mark.parametrize("who", ["ann", "bob"])
def test_the_api_search_facets_and_every_index_follow_the_key(keyed, who):
    assert api_ids(keyed, who, f"/api/search?q={QUERY}&k=10") == SEES[who]
    assert api_ids(keyed, who, f"/api/search?q={QUERY}&k=20&index=*") == SEES[who]
    body = get(keyed, who, f"/api/search?q={QUERY}&k=10&facets=type,folder&mode=keyword").get_json()
    assert {r["doc_id"] for r in body["results"]} == SEES[who]
    assert not (set(body["facets"]["type"]) | set(body["facets"]["folder"])) & HIDDEN_FACETS[who]
    merged = get(keyed, who, f"/api/search?q={QUERY}&k=20&index=*&facets=type").get_json()
    assert not set(merged["facets"]["type"]) & HIDDEN_FACETS[who]
    assert api_ids(keyed, "nobody", f"/api/search?q={QUERY}&k=10") == PUBLIC
    assert api_ids(keyed, "admin", f"/api/search?q={QUERY}&k=10") == {d["id"] for d in DOCS}


@pytest.mark.parametrize("who", ["ann", "bob"])
def test_a_hidden_document_is_a_404_everywhere(keyed, who):
    for hidden in HIDDEN[who]:
        for url in (f"/api/documents/{hidden}", f"/api/documents?id={hidden}", f"/api/similar?id={hidden}",
                    f"/document?id={hidden}", f"/similar?id={hidden}"):
            response = get(keyed, who, url)
            assert response.status_code == 404, url
            assert hidden not in response.get_data(as_text=True).replace(f"{hidden!r}", "")
    own = next(iter(SEES[who] - PUBLIC))
    assert get(keyed, who, f"/api/documents/{own}").status_code == 200
    assert get(keyed, who, f"/document?id={own}").status_code == 200
    assert api_ids(keyed, who, f"/api/similar?id={own}&k=10") == SEES[who] - {own}


@pytest.mark.parametrize("who", ["ann", "bob"])
def test_the_search_page_the_map_and_suggestions_follow_the_key(keyed, who):
    page = get(keyed, who, f"/?q={QUERY}&k=10").get_data(as_text=True)
    for doc in DOCS:
        assert (f"id={doc['id']}&" in page) == (doc["id"] in SEES[who]), doc["id"]
    for value in HIDDEN_FACETS[who]:
        assert value not in page
    assert "4 documents searched" in page  # counted as the key reads them
    body = get(keyed, who, "/api/map").get_json()
    assert set(body["points"]["id"]) == SEES[who] and body["documents"] == len(SEES[who])
    assert not set(body["facets"]["type"]) & HIDDEN_FACETS[who]
    hidden_titles = {d["title"] for d in DOCS if d["id"] in HIDDEN[who]}
    assert not {c["title"] for c in body["clusters"]} & hidden_titles
    assert sum(c["size"] for c in body["clusters"]) == len(SEES[who])
    other = "bob" if who == "ann" else "ann"
    assert get(keyed, who, "/api/map").headers["ETag"] != get(keyed, other, "/api/map").headers["ETag"]
    assert [i["documents"] for i in get(keyed, who, "/api/indexes").get_json()["indexes"]] == [4, 4]
    titles = {s["text"] for s in get(keyed, who, "/api/suggest?q=pa").get_json()["suggestions"] if s["kind"] == "title"}
    assert titles == {d["title"] for d in DOCS if d["id"] in SEES[who] and d["title"].lower().startswith("pa")}


def test_the_write_api_takes_readers(fake_index, tmp_path):
    path = tmp_path / "keys.txt"
    admin = add_key(path, "admin")[1]
    ann = add_key(path, "read", user="ann")[1]
    client = create_app(fake_index, keys=KeyRing.from_file(path)).test_client()
    posted = client.post("/api/documents", headers={"Authorization": f"Bearer {admin}"},
                         json=[{"id": "memo", "text": "a memo for bob only", "readers": ["user:bob"]},
                               {"id": "note", "text": "a memo for ann", "readers": ["user:ann"]}])
    assert posted.status_code == 201, posted.get_json()
    found = client.get("/api/search?q=memo&mode=keyword", headers={"Authorization": f"Bearer {ann}"}).get_json()
    assert [r["doc_id"] for r in found["results"]] == ["note"]
    bad = client.post("/api/documents", headers={"Authorization": f"Bearer {admin}"},
                      json={"id": "x", "text": "words", "readers": "bob"})
    assert bad.status_code == 400 and "user:NAME" in bad.get_json()["message"]


# -- shards, MCP ---------------------------------------------------------------------------------

def test_the_filter_goes_down_to_every_shard(shared, tmp_path):
    from searcher.cluster.sharded import open_index
    from searcher.cluster.shards import split_index

    split_index(shared.path, tmp_path / "sharded", 2)
    sharded = open_index(tmp_path / "sharded", device="cpu")
    try:
        for who, viewer in VIEWERS.items():
            for mode in ("dense", "keyword", "hybrid"):
                assert ids(sharded.search(QUERY, k=10, mode=mode, access=viewer)) == SEES[who]
            hits, counts = sharded.search_with_facets(QUERY, k=10, fields=("type",), access=viewer)
            assert not set(counts["type"]) & HIDDEN_FACETS[who]
            for hidden in HIDDEN[who]:
                assert sharded.get_document(hidden, access=viewer) is None
                with pytest.raises(KeyError):
                    sharded.similar(hidden, access=viewer)
        assert ids(sharded.similar("budget", k=10, access=ANN)) == SEES["ann"] - {"budget"}
        assert (sharded.count(ANN), sharded.count(Viewer()), sharded.count()) == (4, 2, 6)
    finally:
        sharded.close()


def test_the_mcp_tools_read_as_the_viewer(shared):
    pytest.importorskip("mcp", reason="the mcp extra is not installed")
    from mcp import Client

    from searcher.integrations.mcp_server import build_server

    async def calls():
        async with Client(build_server(shared, access=ANN)) as client:
            found = await client.call_tool("search", {"query": QUERY, "k": 10})
            hidden = await client.call_tool("get_document", {"id": "patent"})
            similar = await client.call_tool("similar", {"id": "contract"})
            return found, hidden, similar

    found, hidden, similar = asyncio.run(calls())
    assert {r["id"] for r in json.loads(found.content[0].text)["results"]} == SEES["ann"]
    assert hidden.is_error and "no document" in hidden.content[0].text
    assert similar.is_error and "no document" in similar.content[0].text


def test_a_sources_items_get_the_runs_readers(fake_index):
    from searcher.index.sources import sync_source
    from tests.test_sources_sync import Memory

    box = Memory()
    box.put("plan.txt", "The finance plan for the year.")
    box.put("rows.jsonl", '{"id": "r1", "text": "a row of its own", "readers": ["user:carol"]}\n')
    sync_source(fake_index, box, LoadOptions(workers=0, readers="group:finance"))
    assert fake_index.get_document(box.key("plan.txt"))["metadata"]["readers"] == ["group:finance"]
    assert fake_index.get_document("r1")["metadata"]["readers"] == ["user:carol"]
    assert fake_index.get_document(box.key("plan.txt"), access=BOB) is None


def test_mcp_reads_as_a_user_only_over_an_index():
    pytest.importorskip("mcp", reason="the mcp extra is not installed")
    result = CliRunner().invoke(main, ["mcp", "--url", "http://127.0.0.1:9", "--user", "ann"])
    assert result.exit_code == 2 and "server's key decides" in result.output
    result = CliRunner().invoke(main, ["mcp", "--index", "nowhere", "--user", "ann smith"])
    assert result.exit_code == 2 and "user name" in result.output


def test_a_recorded_source_keeps_its_readers_and_a_change_reaches_unchanged_items(fake_index, monkeypatch):
    from searcher.index import sources
    from tests.test_sources_sync import Memory

    box = Memory()
    monkeypatch.setattr(sources, "open_source", lambda url, options=None: box)
    box.put("plan.txt", "The finance plan for the year.")
    sources.sync(fake_index, box.url, {}, LoadOptions(workers=0, readers="group:finance"))
    box.put("plan.txt", "The finance plan for next year.")  # a new version, read again by the poller's run
    [(_, report, error)] = sources.sync_recorded(fake_index, LoadOptions(workers=0))
    assert error is None and report.updated == 1
    assert fake_index.get_document(box.key("plan.txt"))["metadata"]["readers"] == ["group:finance"]
    box.reads.clear()
    report = sources.sync(fake_index, box.url, {}, LoadOptions(workers=0, readers="group:board"))
    assert box.reads == ["plan.txt"] and (report.unchanged, report.chunks) == (1, 0)  # read, not encoded
    assert fake_index.get_document(box.key("plan.txt"))["metadata"]["readers"] == ["group:board"]
    assert sources.read_sources(fake_index.path)[0]["readers"] == ["group:board"]


def test_serve_watch_takes_readers(tmp_path):
    from searcher.web.launcher import ServeConfig, ServeConfigError

    (tmp_path / "docs").mkdir()
    index = [("team", tmp_path / "idx")]
    config = ServeConfig(indexes=index, watch=[tmp_path / "docs"], readers=["group:finance,user:ann"])
    assert config.readers == ["group:finance", "user:ann"]
    assert ServeConfig(indexes=index, watch=[tmp_path / "docs"], readers=["everyone"]).readers == []
    with pytest.raises(ServeConfigError, match="give --watch"):
        ServeConfig(indexes=index, readers=["group:finance"])
    with pytest.raises(ServeConfigError, match="user:NAME"):
        ServeConfig(indexes=index, watch=[tmp_path / "docs"], readers=["finance"])


def test_readers_options_take_commas_and_repeats():
    from searcher.cli.indexing import check_readers_option

    assert check_readers_option(None, None, ("group:board,user:carol", "group:finance")) == \
        ["group:board", "group:finance", "user:carol"]
    assert check_readers_option(None, None, ("everyone",)) == []
    assert check_readers_option(None, None, ()) is None


def test_a_mailboxs_messages_are_its_owners(fake_index):
    from searcher.index.sources import sync_source
    from searcher.sources.imap import Mailbox
    from tests.test_sources_sync import Memory

    assert Mailbox("imaps://ann@mail.example.org/INBOX").readers == ["user:ann"]
    assert Mailbox("imaps://ann%40example.org@mail.example.org/INBOX").readers == ["user:ann@example.org"]
    assert Mailbox("imaps://DOMAIN%5Cann@mail.example.org/INBOX").readers is None  # no reader name: none
    box = Memory()  # a source that names its owner, as a Mailbox does
    box.readers = ["user:ann"]
    box.put("1.eml", "From: bob@example.org\nSubject: Budget\n\nThe budget is due on Friday.")
    sync_source(fake_index, box, LoadOptions(workers=0))
    assert fake_index.get_document(box.key("1.eml"))["metadata"]["readers"] == ["user:ann"]
    sync_source(fake_index, box, LoadOptions(workers=0, readers="group:finance"), reread=True)  # --readers wins
    assert fake_index.get_document(box.key("1.eml"))["metadata"]["readers"] == ["group:finance"]
