"""Issue 30, items 5, 6, 7, 17 and 18: unbounded inputs (filters nested thousands of levels,
integers beyond 64 bits, metadata nested hundreds of levels) and hints that said more than
`check --repair` can do. Fake-encoder indexes (no model): the web through Flask's test
client, the CLI through CliRunner with `open_index` pointed at the fake index, MCP in process."""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import quote

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import searching as search_commands
from searcher.web import launcher
from searcher.cli import main
from searcher.search.filters import MAX_NESTING, MAX_VALUES, compile_where, loads_where
from tests.conftest import ANIMALS
from searcher.web import create_app
from searcher.web.keys import ApiKey, KeyRing, digest

BIG = 99999999999999999999999999  # beyond 64 bits
ADMIN = "srch_admin1_" + "a" * 43
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def sized_index(fake_index) -> Index:
    """ANIMALS with a `size` each, and three more: 2**63-1, 10**30 (stored as a float by
    SQLite's JSON) and a document whose id is a number beyond 64 bits."""
    fake_index.add_documents([{**doc, "metadata": {"size": i}} for i, doc in enumerate(ANIMALS)] + [
        {"id": "int64max", "text": "the largest 64-bit integer", "metadata": {"size": 2 ** 63 - 1}},
        {"id": "huge", "text": "a number beyond 64 bits", "metadata": {"size": 10 ** 30}},
        {"id": str(BIG), "text": "an id that is a long number"},
    ])
    return fake_index


@pytest.fixture
def client(sized_index):
    return create_app(sized_index, keys=KeyRing([ApiKey("admin1", digest(ADMIN), "admin")])).test_client()


@pytest.fixture
def cli_on(monkeypatch):
    """CLI commands open `index` (a fake-encoder index) whatever --index says."""
    def point_at(index):
        for module in (search_commands, launcher):  # searcher search|similar, searcher serve
            monkeypatch.setattr(module, "open_index", lambda *args, **kwargs: Index.open(index.path,
                                                                                         encoder=index.encoder))
    return point_at


def ids(index, where) -> list[str]:
    return sorted(h.doc_id for h in index.search("number", k=20, mode="dense", where=where))


def with_where(path: str, where: str) -> str:
    return f"{path}&where={quote(where)}"


def deep_list(levels: int) -> list:
    value: list = [0]
    for _ in range(levels - 1):
        value = [value]
    return value


def deep_not(levels: int) -> dict:
    where: dict = {"size": 1}
    for _ in range(levels):
        where = {"$not": where}
    return where


async def mcp_call(index, tool: str, arguments: dict):
    from mcp import Client

    from searcher.integrations.mcp_server import build_server

    async with Client(build_server(index)) as client:
        return await client.call_tool(tool, arguments)


# -- 5. a filter nested thousands of levels deep -------------------------------------------------

DEEP_TEXTS = {"brackets": "[" * 3000 + "]" * 3000, "objects": '{"$not":' * 3000 + "{}" + "}" * 3000}


@pytest.mark.parametrize("path", ["/?q=cats", "/similar?id=cat", "/api/similar?id=cat", "/api/search?q=cats"])
@pytest.mark.parametrize("deep", DEEP_TEXTS)
def test_a_filter_nested_thousands_of_levels_is_a_400_naming_the_limit(client, caplog, path, deep):
    with caplog.at_level(logging.ERROR):
        r = client.get(with_where(path, DEEP_TEXTS[deep]), headers=AUTH)
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    assert f"more than {MAX_NESTING} levels" in r.get_data(as_text=True)
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]  # nothing logged as a failure


def test_where_json_nested_thousands_of_levels_is_a_usage_error(tmp_path):
    for text in DEEP_TEXTS.values():
        result = run("search", "cats", "--index", tmp_path / "none", "--where-json", text)
        assert result.exit_code == 2, result.output
        assert f"more than {MAX_NESTING} levels" in result.output and "Traceback" not in result.output
        assert not isinstance(result.exception, RecursionError)


def test_the_depth_is_checked_where_every_caller_compiles_a_filter(sized_index):
    for where in ({"size": {"$in": deep_list(3000)}}, deep_not(3000)):
        with pytest.raises(ValueError, match=f"more than {MAX_NESTING} levels"):
            compile_where(where)
        with pytest.raises(ValueError, match=f"more than {MAX_NESTING} levels"):
            sized_index.search("cats", where=where)
    cycle: dict = {"size": {"$in": []}}
    cycle["size"]["$in"].append(cycle)  # a filter that contains itself is refused, not followed
    with pytest.raises(ValueError, match="levels"):
        compile_where(cycle)
    # brackets inside strings are not nesting; the limit itself is allowed
    assert loads_where(json.dumps({"title": "[{" * 500})) == {"title": "[{" * 500}
    with pytest.raises(ValueError, match="a value must be"):  # 64 levels: past the depth check, a plain bad value
        compile_where(loads_where('{"size": {"$in": ' + "[" * (MAX_NESTING - 2) + "]" * (MAX_NESTING - 2) + "}}"))


def test_mcp_refuses_a_deep_filter_with_the_limit(sized_index):
    pytest.importorskip("mcp", reason="the mcp extra is not installed")
    answer = asyncio.run(mcp_call(sized_index, "search", {"query": "cats", "where": {"size": {"$in": deep_list(200)}}}))
    assert answer.is_error and f"more than {MAX_NESTING} levels" in answer.content[0].text
    assert "cannot be searched right now" not in answer.content[0].text
    answer = asyncio.run(mcp_call(sized_index, "similar", {"id": "cat", "where": deep_not(20)}))
    assert answer.is_error and "more than 16 levels" in answer.content[0].text


# -- 6. integers beyond 64 bits ------------------------------------------------------------------

def test_integers_beyond_64_bits_compare_as_numbers(sized_index):
    everything = sorted([d["id"] for d in ANIMALS] + ["int64max", "huge"])
    assert ids(sized_index, {"size": {"$gt": BIG}}) == ["huge"]
    assert ids(sized_index, {"size": {"$lt": BIG}}) == sorted([d["id"] for d in ANIMALS] + ["int64max"])
    assert ids(sized_index, {"size": {"$gte": 2 ** 63}}) == ["huge"]
    assert ids(sized_index, {"size": 10 ** 30}) == ["huge"]
    assert ids(sized_index, {"size": {"$in": [10 ** 30, 0]}}) == ["cat", "huge"]
    assert ids(sized_index, {"size": {"$ne": 2 ** 63}}) == everything
    assert ids(sized_index, {"size": {"$gt": -10 ** 400}}) == everything  # beyond every float too
    assert ids(sized_index, {"size": {"$lt": 10 ** 400}}) == everything
    assert ids(sized_index, {"id": BIG}) == [str(BIG)]  # against the id (text), as its digits


def test_the_web_compares_integers_beyond_64_bits(client):
    for path in ("/api/search?q=number&mode=dense", "/api/similar?id=cat", "/?q=number", "/similar?id=cat"):
        r = client.get(with_where(path, json.dumps({"size": {"$gt": BIG}})), headers=AUTH)
        assert r.status_code == 200, (path, r.get_data(as_text=True)[:300])
    found = client.get("/api/search", query_string={"q": "number", "mode": "dense",
                                                    "where": json.dumps({"size": BIG})}, headers=AUTH)
    assert found.status_code == 200 and [h["doc_id"] for h in found.get_json()["results"]] == []
    found = client.get("/api/search", query_string={"q": "number", "mode": "dense",
                                                    "where": '{"size": {"$gte": %d}}' % BIG}, headers=AUTH)
    assert [h["doc_id"] for h in found.get_json()["results"]] == ["huge"]


def test_the_cli_compares_integers_beyond_64_bits(sized_index, cli_on):
    cli_on(sized_index)
    result = run("search", "number", "--index", sized_index.path, "--mode", "dense", "--json",
                 "--where", f"size>{BIG}")
    assert result.exit_code == 0, result.output
    assert [h["doc_id"] for h in json.loads(result.output)] == ["huge"]
    result = run("search", "number", "--index", sized_index.path, "--where", f"size={BIG}")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output


def test_mcp_compares_integers_beyond_64_bits(sized_index):
    pytest.importorskip("mcp", reason="the mcp extra is not installed")
    answer = asyncio.run(mcp_call(sized_index, "search", {"query": "number", "mode": "dense",
                                                          "where": {"size": {"$gt": BIG}}}))
    assert not answer.is_error, answer.content
    assert [r["id"] for r in json.loads(answer.content[0].text)["results"]] == ["huge"]


# -- 7. metadata nested hundreds of levels in POST /api/documents --------------------------------

@pytest.mark.parametrize("levels", [500, 700, 989])
def test_metadata_nested_hundreds_of_levels_is_a_400_naming_the_document(client, sized_index, caplog, levels):
    body = '{"id": "deep-one", "text": "hello", "metadata": {"a": ' + "[" * levels + "]" * levels + "}}"
    before = len(sized_index)
    with caplog.at_level(logging.INFO):
        r = client.post("/api/documents", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400, r.get_data(as_text=True)[:300]
    message = r.get_json()["message"]
    assert "deep-one" in message or levels >= 989 and "not valid JSON" in message, message
    assert len(sized_index) == before  # nothing written
    assert len(caplog.text) < 2000  # no traceback in the log


def test_deep_metadata_from_python_is_skipped_with_the_reason(fake_index):
    report = fake_index.add_documents([{"id": "deep", "text": "hello", "metadata": {"a": deep_list(300)}},
                                       {"id": "fine", "text": "hello", "metadata": {"a": deep_list(50)}}])
    assert report.added == 1 and [s.path for s in report.skipped] == ["deep"]
    assert "100 levels" in report.skipped[0].reason
    assert fake_index.get_document("fine")["metadata"]["a"] == deep_list(50)


def test_an_unexpected_error_logs_a_bounded_traceback(client, sized_index, monkeypatch, caplog):
    from searcher.web.errors import LOGGED_CHARS

    def recurse(*args, **kwargs):  # two frames a level, as clean_metadata had: Python cannot fold them
        return [recurse(*args, **kwargs) for _ in range(1)]

    service = client.application.extensions["searcher"]
    monkeypatch.setattr(service.index, "search", recurse)
    monkeypatch.setattr(service.index, "search_with_facets", recurse)
    with caplog.at_level(logging.ERROR):
        r = client.get("/api/search?q=cats", headers=AUTH)
    assert r.status_code == 500
    assert "RecursionError" in caplog.text and "recurse" in caplog.text
    assert len(caplog.text) < LOGGED_CHARS + 2000


# -- 17. hints that say what check --repair can do -----------------------------------------------

def test_check_of_a_bad_manifest_does_not_offer_repair(fake_animals_index):
    path = fake_animals_index.path
    manifest = json.loads((path / "manifest.json").read_text())
    (path / "manifest.json").write_text(json.dumps({**manifest, "dimension": "x"}))
    result = run("check", "--index", path)
    assert result.exit_code == 1
    assert "to fix it" not in result.output and "--repair` cannot fix this" in result.output


def test_check_of_a_damaged_database_says_what_repair_salvages(fake_animals_index):
    path = fake_animals_index.path
    fake_animals_index.close()
    with open(path / "content.db", "r+b") as f:
        f.truncate(4096)
    result = run("check", "--index", path)
    assert result.exit_code == 1
    assert "run `searcher check --index" not in result.output  # this is check
    assert "salvages what SQLite's .recover can read" in result.output
    assert "to fix it" not in result.output and "to fix what it can" in result.output


def test_check_of_damaged_vectors_still_offers_repair(fake_animals_index):
    path = fake_animals_index.path
    fake_animals_index.close()
    vectors = sorted(path.glob("vectors.*.faiss"))[-1]
    vectors.write_bytes(vectors.read_bytes()[:-8] + b"\0" * 8)
    result = run("check", "--index", path)
    assert result.exit_code == 1 and "run `searcher check --repair` to fix it" in result.output


def test_a_server_over_a_truncated_database_does_not_promise_repair(sized_index, fake_encoder):
    sized_index.close()  # its last writes move from the WAL into content.db
    index = Index.open(sized_index.path, encoder=fake_encoder)
    client = create_app(index).test_client()
    assert client.get("/api/search?q=cats&mode=keyword").status_code == 200
    with open(index.path / "content.db", "r+b") as f:
        f.truncate(4096)
    try:
        r = client.get("/api/search?q=cats&mode=keyword")
    finally:
        client.application.extensions["searcher"].index.close()
    assert r.status_code == 503
    message = r.get_json()["message"]
    assert "vectors" not in message and "fixes that" not in message
    assert "database is damaged" in message and "salvage" in message


def test_too_many_values_is_a_reason_not_an_unsearchable_index(sized_index):
    with pytest.raises(ValueError, match=f"more than {MAX_VALUES:,} values"):
        sized_index.search("cats", where={"id": {"$in": list(range(40_000))}})
    with pytest.raises(ValueError, match="more than 256 conditions"):
        sized_index.search("cats", where={"$or": [{"size": i} for i in range(3000)]})
    pytest.importorskip("mcp", reason="the mcp extra is not installed")
    many = {"id": {"$in": list(range(40_000))}}
    answer = asyncio.run(mcp_call(sized_index, "search", {"query": "cats", "where": many}))
    assert answer.is_error and f"more than {MAX_VALUES:,} values" in answer.content[0].text
    assert "cannot be searched right now" not in answer.content[0].text


def test_the_largest_filters_allowed_run_in_sqlite(sized_index):
    """At the limits, the SQL (the path taken when the columns cannot answer) stays within
    SQLite's expression depth and parameter count."""
    conditions = [{f"k{i}": {"$under": "/x"}} for i in range(255)]
    where = {"$or": conditions + [{"size": {"$in": list(range(MAX_VALUES - 255))}}]}
    sql, params = compile_where(where)
    store = sized_index.store
    assert len(store.chunk_ids_where(sql, params)) > 0


# -- 18. quoting in messages ---------------------------------------------------------------------

def test_similar_names_a_missing_id_with_both_quotes(sized_index, cli_on):
    cli_on(sized_index)
    result = run("similar", "esc", "--index", sized_index.path)
    assert result.exit_code == 1 and "no document with id 'esc'\n" in result.output, result.output


@pytest.mark.parametrize("host", ["[::1]", "::1"])
def test_serve_banner_brackets_an_ipv6_host_once(sized_index, cli_on, monkeypatch, host):
    import searcher.web.server

    made = searcher.web.server.make_server

    def make_server(app, host, port, threads):
        server = made(app, host, 0, threads)
        server.run = lambda: (_ for _ in ()).throw(KeyboardInterrupt)  # stop at once, as Ctrl+C does
        return server

    cli_on(sized_index)
    monkeypatch.setattr(searcher.web.server, "make_server", make_server)
    result = run("serve", "--index", sized_index.path, "--host", host, "--port", "0")
    assert result.exit_code == 0, result.output
    assert "on http://[::1]:" in result.output and "[[" not in result.output
