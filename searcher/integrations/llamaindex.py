"""A LlamaIndex retriever over a searcher index or a running `searcher serve`.

    from searcher.integrations.llamaindex import SearcherRetriever

    retriever = SearcherRetriever(index="indexes/notes", k=5)   # or url="http://127.0.0.1:8000"
    nodes = retriever.retrieve("how do I read a file line by line")  # await retriever.aretrieve(...)

Each result is a `NodeWithScore` (score: the hit's score) around a `TextNode` whose text is the
hit's passage (its best chunk), id_ f"{doc_id}#{start}", start_char_idx/end_char_idx the
passage's offsets in the document, the document as its SOURCE relationship (node.ref_doc_id
is the document id), and metadata id, title, source, score, cosine, bm25, start, end and the document's own
metadata under "metadata" ({} with url=, whose search results do not carry it). Only title,
source and metadata, those not empty, go into the text an LLM sees. Needs llama-index-core:
pip install -e '.[llamaindex]'.
"""

from __future__ import annotations

import asyncio
from typing import Any

from searcher.integrations.common import SearchSource, hit_metadata, install_hint

try:
    from llama_index.core.callbacks import CallbackManager
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode
except ImportError as e:
    raise install_hint(__name__, "llamaindex", "llama-index-core", e) from e

__all__ = ["SearcherRetriever"]

NOT_FOR_THE_LLM = ["id", "score", "cosine", "bm25", "start", "end"]


class SearcherRetriever(BaseRetriever):
    """`Index.search(query, k=k, mode=mode)` as a LlamaIndex retriever.

    Give exactly one of `index` (an `Index`, or the path of one, opened with `Index.open`) and
    `url` (a running `searcher serve`, at most 100 results). `mode`: "dense", "keyword",
    "hybrid", or None for the index's default. `aretrieve` runs the search in a worker thread,
    so it never blocks the event loop. `close()` closes an index it opened.
    """

    def __init__(self, index: Any = None, *, url: str | None = None, k: int = 10, mode: str | None = None,
                 callback_manager: CallbackManager | None = None, verbose: bool = False):
        self._searches = SearchSource(index, url, k, mode)
        self.k, self.mode = k, mode
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    def _nodes(self, query: str) -> list[NodeWithScore]:
        nodes = []
        for hit in self._searches.search(query, self.k, self.mode):
            metadata = hit_metadata(hit)
            hidden = NOT_FOR_THE_LLM + [key for key in ("title", "source", "page", "metadata") if not metadata[key]]
            node = TextNode(
                id_=f"{hit.doc_id}#{hit.start}", text=hit.passage, metadata=metadata,
                start_char_idx=hit.start, end_char_idx=hit.end,
                relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=hit.doc_id)},
                excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=list(hidden),
            )
            nodes.append(NodeWithScore(node=node, score=hit.score))
        return nodes

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return self._nodes(query_bundle.query_str)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return await asyncio.to_thread(self._nodes, query_bundle.query_str)

    def close(self) -> None:
        self._searches.close()
