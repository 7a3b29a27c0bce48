"""The LangChain and LlamaIndex retrievers (searcher.integrations) over a real index (the default
model) and a real server: the same results as Index.search, sync and async, and clear errors."""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("llama_index.core")

from searcher.integrations import langchain as lc  # noqa: E402
from searcher.integrations import llamaindex as li  # noqa: E402
from searcher.web import create_app  # noqa: E402
from searcher.web.server import serving  # noqa: E402

QUERIES = ["kittens chase mice", "how does a car engine work", "baking bread in an oven"]
MODES = [None, "dense", "keyword", "hybrid"]


def langchain_ids(retriever, query):
    return [d.metadata["id"] for d in retriever.invoke(query)]


def llamaindex_ids(retriever, query):
    return [n.node.metadata["id"] for n in retriever.retrieve(query)]


def expected(index, query, k, mode):
    return [h.doc_id for h in index.search(query, k=k, mode=mode)]


@pytest.mark.parametrize("mode", MODES)
def test_both_retrievers_return_what_index_search_returns(animals_index, mode):
    lc_retriever = lc.SearcherRetriever(index=animals_index, k=3, mode=mode)
    li_retriever = li.SearcherRetriever(index=animals_index, k=3, mode=mode)
    for query in QUERIES:
        want = expected(animals_index, query, 3, mode)
        assert want  # keyword mode finds only the documents with a query word
        assert langchain_ids(lc_retriever, query) == want
        assert llamaindex_ids(li_retriever, query) == want
        assert asyncio.run(lc_retriever.ainvoke(query)) == lc_retriever.invoke(query)
        assert [n.node.metadata["id"] for n in asyncio.run(li_retriever.aretrieve(query))] == want


def test_a_langchain_document_carries_the_hit(animals_index):
    animals_index.add_documents([{"id": "dog", "title": "Dogs", "source": "pets/dogs.md",
                                  "text": "Puppies fetch sticks and bark at the postman.",
                                  "metadata": {"author": "Ann", "title": "not the title"}}])
    hit = animals_index.search("puppies fetch sticks", k=1)[0]
    doc = lc.SearcherRetriever(index=animals_index, k=1).invoke("puppies fetch sticks")[0]
    assert doc.page_content == hit.passage
    assert doc.id == "dog"
    assert doc.metadata == {"id": "dog", "title": "Dogs", "source": "pets/dogs.md", "score": hit.score,
                            "cosine": hit.cosine, "bm25": hit.bm25, "start": hit.start, "end": hit.end, "page": None,
                            "metadata": {"author": "Ann", "title": "not the title"}}


def test_a_llamaindex_node_carries_the_hit(animals_index):
    from llama_index.core.schema import MetadataMode

    hit = animals_index.search("kittens chase mice", k=1)[0]
    found = li.SearcherRetriever(index=animals_index, k=1).retrieve("kittens chase mice")[0]
    node = found.node
    assert found.score == hit.score
    assert node.text == hit.passage
    assert node.id_ == f"cat#{hit.start}"
    assert node.ref_doc_id == "cat"
    assert (node.start_char_idx, node.end_char_idx) == (hit.start, hit.end)
    assert node.metadata == {"id": "cat", "title": "Cats", "source": hit.source, "score": hit.score,
                             "cosine": hit.cosine, "bm25": hit.bm25, "start": hit.start, "end": hit.end, "page": None, "metadata": {}}
    for_llm = node.get_content(metadata_mode=MetadataMode.LLM)
    assert hit.source == ""  # so neither it nor the empty metadata is shown, nor id, score and offsets
    assert for_llm == f"title: Cats\n\n{hit.passage}"


def test_the_retrievers_fit_a_chain_and_a_query_engine(animals_index):
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine

    query = "kittens chase mice"
    want = expected(animals_index, query, 2, None)
    prompt = ChatPromptTemplate.from_template("Notes:\n{context}\n\nQuestion: {question}")
    retriever = lc.SearcherRetriever(index=animals_index, k=2)
    chain = {"context": retriever | (lambda docs: "\n".join(d.metadata["id"] for d in docs)),
             "question": RunnablePassthrough()} | prompt
    assert chain.invoke(query).to_string() == f"Human: Notes:\n{want[0]}\n{want[1]}\n\nQuestion: {query}"
    engine = RetrieverQueryEngine.from_args(li.SearcherRetriever(index=animals_index, k=2), llm=MockLLM())
    assert [n.node.metadata["id"] for n in engine.query(query).source_nodes] == want
    assert [n.node.metadata["id"] for n in asyncio.run(engine.aquery(query)).source_nodes] == want


def test_async_searches_run_off_the_event_loop(animals_index, monkeypatch):
    threads = []
    search = animals_index.search

    def spy(*args, **kwargs):
        threads.append(threading.get_ident())
        return search(*args, **kwargs)

    monkeypatch.setattr(animals_index, "search", spy)

    async def both():
        lc_docs = await lc.SearcherRetriever(index=animals_index, k=2).ainvoke("kittens")
        li_nodes = await li.SearcherRetriever(index=animals_index, k=2).aretrieve("kittens")
        return threading.get_ident(), lc_docs, li_nodes

    loop_thread, lc_docs, li_nodes = asyncio.run(both())
    assert len(lc_docs) == len(li_nodes) == 2
    assert len(threads) == 2 and loop_thread not in threads


def test_an_index_path_is_opened_and_closed_by_the_retriever(animals_index):
    want = expected(animals_index, "kittens chase mice", 2, None)
    for module, ids in ((lc, langchain_ids), (li, llamaindex_ids)):
        retriever = module.SearcherRetriever(str(animals_index.path), k=2)
        assert ids(retriever, "kittens chase mice") == want
        retriever.close()
        lent = module.SearcherRetriever(index=animals_index, k=2)
        lent.close()  # an Index passed in is the caller's: it stays open
        assert expected(animals_index, "kittens chase mice", 2, None) == want


def test_the_url_mode_searches_a_running_server(animals_index):
    with serving(create_app(animals_index)) as url:
        for mode in (None, "dense", "keyword"):
            want = expected(animals_index, "kittens chase mice", 3, mode)
            lc_retriever = lc.SearcherRetriever(url=url, k=3, mode=mode)
            li_retriever = li.SearcherRetriever(url=url, k=3, mode=mode)
            assert langchain_ids(lc_retriever, "kittens chase mice") == want
            assert llamaindex_ids(li_retriever, "kittens chase mice") == want
            assert [d.metadata["id"] for d in asyncio.run(lc_retriever.ainvoke("kittens chase mice"))] == want
            assert [n.node.metadata["id"] for n in asyncio.run(li_retriever.aretrieve("kittens chase mice"))] == want
        local = animals_index.search("kittens chase mice", k=1)[0]
        doc = lc.SearcherRetriever(url=url, k=1).invoke("kittens chase mice")[0]
        assert (doc.page_content, doc.metadata["start"], doc.metadata["end"]) == (local.passage, local.start, local.end)
        assert doc.metadata["score"] == pytest.approx(local.score, abs=1e-5)


@pytest.mark.parametrize("module", [lc, li], ids=["langchain", "llamaindex"])
def test_bad_arguments_are_value_errors(animals_index, module):
    with pytest.raises(ValueError, match="exactly one of index= .* and url="):
        module.SearcherRetriever()
    with pytest.raises(ValueError, match="not both"):
        module.SearcherRetriever(index=animals_index, url="http://127.0.0.1:8000")
    for k in (0, -1, "3", 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            module.SearcherRetriever(index=animals_index, k=k)
    with pytest.raises(ValueError, match="unknown search mode"):
        module.SearcherRetriever(index=animals_index, mode="fuzzy")
    with pytest.raises(ValueError, match="at most 100"):
        module.SearcherRetriever(url="http://127.0.0.1:8000", k=101)
    with pytest.raises(ValueError, match="http://127.0.0.1:8000"):
        module.SearcherRetriever(url="localhost:8000")
    with pytest.raises(TypeError, match="index must be an Index"):
        module.SearcherRetriever(index=42)


@pytest.mark.parametrize("name, package, extra", [
    ("langchain", "langchain_core", "langchain"),
    ("llamaindex", "llama_index", "llamaindex"),
])
def test_a_missing_framework_names_the_extra_to_install(monkeypatch, name, package, extra):
    # None in sys.modules makes an import fail as if the package were absent. Its submodules,
    # already imported by the other tests, would still be found by name, so they go too.
    for cached in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, cached, None)
    monkeypatch.setitem(sys.modules, package, None)
    monkeypatch.delitem(sys.modules, f"searcher.integrations.{name}", raising=False)
    with pytest.raises(ImportError) as raised:
        importlib.import_module(f"searcher.integrations.{name}")
    assert f"pip install -e '.[{extra}]'" in str(raised.value)


def test_changing_k_or_mode_on_a_retriever_takes_effect(animals_index):
    for retriever, run in ((lc.SearcherRetriever(index=animals_index, k=3), lambda r: r.invoke("kittens")),
                           (li.SearcherRetriever(index=animals_index, k=3), lambda r: r.retrieve("kittens"))):
        assert len(run(retriever)) == 3
        retriever.k = 1
        assert len(run(retriever)) == 1
        retriever.k = 0
        with pytest.raises(ValueError, match="k must be at least 1"):
            run(retriever)
