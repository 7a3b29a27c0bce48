"""Retrievers for LLM frameworks over a searcher index or a running `searcher serve`.

- `searcher.integrations.langchain.SearcherRetriever`: a LangChain retriever returning
  `Document`s (extra: `pip install -e '.[langchain]'`).
- `searcher.integrations.llamaindex.SearcherRetriever`: a LlamaIndex retriever returning
  `NodeWithScore`s (extra: `pip install -e '.[llamaindex]'`).

Both take `index=` (an `Index`, or the path of one) or `url=` (a running `searcher serve`),
`k` and `mode` as `Index.search` does, and both search in a worker thread when called
asynchronously. This package imports neither framework; each module imports its own.
"""
