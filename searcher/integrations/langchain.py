"""A LangChain retriever over a searcher index or a running `searcher serve`.

    from searcher.integrations.langchain import SearcherRetriever

    retriever = SearcherRetriever(index="indexes/notes", k=5)   # or url="http://127.0.0.1:8000"
    docs = retriever.invoke("how do I read a file line by line")  # await retriever.ainvoke(...)

Each result is a `langchain_core.documents.Document`: `page_content` is the hit's passage (its
best chunk), `id` the document id, and `metadata` holds id, title, source, score, start, end
(the passage's character offsets in the document) and the document's own metadata under
"metadata" (kept apart so that its keys never collide with these; {} with url=, whose search
results do not carry it). Needs langchain-core: pip install -e '.[langchain]'.
"""

from __future__ import annotations

import asyncio
from typing import Any

from searcher.integrations.common import SearchSource, hit_metadata, install_hint

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from pydantic import ConfigDict, PrivateAttr
except ImportError as e:
    raise install_hint(__name__, "langchain", "langchain-core", e) from e

__all__ = ["SearcherRetriever"]


class SearcherRetriever(BaseRetriever):
    """`Index.search(query, k=k, mode=mode)` as a LangChain retriever.

    Give exactly one of `index` (an `Index`, or the path of one, opened with `Index.open`) and
    `url` (a running `searcher serve`, at most 100 results). `mode`: "dense", "keyword",
    "hybrid", or None for the index's default. The async calls run the search in a worker
    thread, so they never block the event loop. `close()` closes an index it opened.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any = None
    url: str | None = None
    k: int = 10
    mode: str | None = None
    _searches: SearchSource = PrivateAttr()

    def __init__(self, index: Any = None, *, url: str | None = None, k: int = 10, mode: str | None = None,
                 **kwargs: Any):
        searches = SearchSource(index, url, k, mode)  # a plain ValueError for bad arguments, before pydantic
        super().__init__(index=index, url=url, k=k, mode=mode, **kwargs)
        self._searches = searches

    def _documents(self, query: str) -> list[Document]:
        return [Document(page_content=hit.passage, metadata=hit_metadata(hit), id=hit.doc_id)
                for hit in self._searches.search(query, self.k, self.mode)]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return self._documents(query)

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        return await asyncio.to_thread(self._documents, query)

    def close(self) -> None:
        self._searches.close()
