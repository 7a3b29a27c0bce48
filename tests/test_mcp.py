"""`searcher mcp`, driven by the MCP SDK's own client over stdio (a real subprocess, real model)."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest
from click.testing import CliRunner

from searcher.cli import main

from .conftest import ANIMALS

mcp = pytest.importorskip("mcp", reason="the mcp extra is not installed")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402


def results(call) -> dict:
    assert not call.is_error, call.content
    return json.loads(call.content[0].text)


async def session_calls(args: list[str], steps):
    """Start `searcher mcp ARGS` and run `steps(session)` against it."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    params = StdioServerParameters(command=sys.executable, args=["-m", "searcher", "mcp", *args], env=env)
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            return await steps(session)


@pytest.fixture
def small_index(animals_index):
    return animals_index  # conftest's: ANIMALS in an index of the real model


def test_the_tools_search_read_and_refuse_bad_arguments(small_index):
    expected = [h.doc_id for h in small_index.search("kittens chasing mice", k=3)]

    async def steps(session):
        tools = {t.name: t for t in (await session.list_tools()).tools}
        assert {"search", "similar", "get_document"} <= set(tools)
        props = tools["search"].input_schema["properties"]
        assert props["query"]["description"] and props["k"]["description"] and "mode" in props
        found = results(await session.call_tool("search", {"query": "kittens chasing mice", "k": 3}))
        assert [r["id"] for r in found["results"]] == expected
        top = found["results"][0]
        assert {"id", "title", "source", "score", "cosine", "bm25", "passage", "start", "end"} <= set(top)
        assert found["close_match"] is True and "suggestion" not in found
        typo = results(await session.call_tool("search", {"query": "kitens chasing mice", "k": 3}))
        assert typo["suggestion"] == "kittens chasing mice" and [r["id"] for r in typo["results"]] == expected
        keyword = results(await session.call_tool("search", {"query": "petrol", "k": 1, "mode": "keyword"}))
        assert [r["id"] for r in keyword["results"]] == ["car"]
        only = results(await session.call_tool("search", {"query": "kittens", "k": 5, "where": {"id": {"$in": ["sea", "code"]}}}))
        assert {r["id"] for r in only["results"]} <= {"sea", "code"} and only["results"]
        bad = await session.call_tool("search", {"query": "kittens", "where": {"id": {"$like": "x"}}})
        assert bad.is_error and "unknown filter operator" in bad.content[0].text

        bad = await session.call_tool("search", {"query": "kittens", "k": 0})
        assert bad.is_error and "greater than or equal to 1" in bad.content[0].text  # the schema's bound
        bad = await session.call_tool("search", {"query": "kittens", "mode": "fuzzy"})
        assert bad.is_error
        bad = await session.call_tool("search", {"query": "   "})
        assert bad.is_error and "empty" in bad.content[0].text

        doc = results(await session.call_tool("get_document", {"id": top["id"], "start": top["start"], "end": top["end"]}))
        assert doc["text"] == top["passage"] and doc["title"] == top["title"]
        missing = await session.call_tool("get_document", {"id": "no such document"})
        assert missing.is_error and "no document with id" in missing.content[0].text
        past = results(await session.call_tool("get_document", {"id": "cat", "start": 5, "end": 10**6}))
        assert past["text"] == ANIMALS[0]["text"][5:] and past["end"] == len(ANIMALS[0]["text"])  # clamped
        outside = await session.call_tool("get_document", {"id": "cat", "start": 10**6})
        assert outside.is_error and "does not start within" in outside.content[0].text

        like = results(await session.call_tool("similar", {"id": "cat", "k": 3}))
        assert [r["id"] for r in like["results"]] == [h.doc_id for h in small_index.similar("cat", k=3)]
        assert "cat" not in [r["id"] for r in like["results"]]
        pets = results(await session.call_tool("similar", {"id": "cat", "where": {"id": {"$in": ["sea", "car"]}}}))
        assert {r["id"] for r in pets["results"]} == {"sea", "car"}
        nope = await session.call_tool("similar", {"id": "no such document"})
        assert nope.is_error and "no document with id" in nope.content[0].text

        # The index is opened once; a commit by another process shows up in the next call.
        small_index.add_documents([{"id": "zebra", "text": "Zebras graze on the savanna at dusk."}])
        later = results(await session.call_tool("search", {"query": "zebras savanna", "k": 1, "mode": "keyword"}))
        assert [r["id"] for r in later["results"]] == ["zebra"]

    asyncio.run(session_calls(["--index", str(small_index.path)], steps))


def test_the_url_mode_reads_a_running_searcher_serve(small_index):
    from searcher.web import create_app
    from searcher.web.server import serving

    expected = [h.doc_id for h in small_index.search("baking bread", k=2)]

    async def steps(session):
        found = results(await session.call_tool("search", {"query": "baking bread", "k": 2}))
        assert [r["id"] for r in found["results"]] == expected
        assert results(await session.call_tool("get_document", {"id": "cat"}))["text"] == ANIMALS[0]["text"]
        like = results(await session.call_tool("similar", {"id": "cat", "k": 2}))
        assert [r["id"] for r in like["results"]] == [h.doc_id for h in small_index.similar("cat", k=2)]
        bad = await session.call_tool("search", {"query": "bread", "k": 500})
        assert bad.is_error and "less than or equal to 100" in bad.content[0].text

    with serving(create_app(small_index)) as url:
        asyncio.run(session_calls(["--url", url], steps))


def test_without_the_mcp_package_the_command_says_what_to_install(monkeypatch, tmp_path):
    for name in [n for n in sys.modules if n == "mcp" or n.startswith("mcp.")] + ["mcp"]:
        monkeypatch.setitem(sys.modules, name, None)  # as if it were not installed
    monkeypatch.delitem(sys.modules, "searcher.integrations.mcp_server", raising=False)
    result = CliRunner().invoke(main, ["mcp", "--index", str(tmp_path)])
    assert result.exit_code != 0 and "pip install -e '.[mcp]'" in result.output


def test_the_http_transport_serves_the_same_tools(small_index):
    import socket
    import subprocess
    import time

    from mcp.client.streamable_http import streamable_http_client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    server = subprocess.Popen([sys.executable, "-m", "searcher", "mcp", "--index", str(small_index.path),
                               "--http", str(port)], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the model loads first
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None, server.stderr.read().decode()
            time.sleep(0.2)

        async def run():
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return results(await session.call_tool("search", {"query": "petrol engine", "k": 1}))

        assert [r["id"] for r in asyncio.run(run())["results"]] == ["car"]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_mcp_refuses_a_url_that_is_not_a_searcher_server_and_both_sources(small_index):
    from searcher.web import create_app
    from searcher.web.server import serving

    with serving(create_app(small_index)) as url:
        wrong = CliRunner().invoke(main, ["mcp", "--url", url + "/nothing-here"])
        assert wrong.exit_code != 0 and "searcher server" in wrong.output
        both = CliRunner().invoke(main, ["mcp", "--url", url, "--index", str(small_index.path)])
        assert both.exit_code == 2 and "not both" in both.output
