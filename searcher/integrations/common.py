"""What both retrievers share: the search source (an index or a server), the k/mode checks,
and a Hit's metadata. No framework is imported here."""

from __future__ import annotations

import os
from typing import Any

from searcher.remote import API_MAX_K, RemoteIndex
from searcher.search.protocol import SearchableIndex
from searcher.search.results import Hit, check_k, check_mode


def install_hint(module: str, extra: str, package: str, error: ImportError) -> ImportError:
    """The ImportError a module raises when its framework is not installed."""
    return ImportError(f"{module} needs {package}, which is not installed: pip install -e '.[{extra}]' "
                       f"({error})")


def resolve_source(index: Any = None, url: str | None = None) -> tuple[Any, bool]:
    """What the retriever searches, and whether the retriever opened it (and so closes it).

    Exactly one of `index` (an Index, anything with Index's search, or the path of an index,
    single or sharded, opened with searcher.open_index) and `url` (a running `searcher serve`, read through RemoteIndex)."""
    if (index is None) == (url is None):
        raise ValueError("give exactly one of index= (an Index or the path of one) and url= "
                         "(a running `searcher serve`, e.g. http://127.0.0.1:8000)"
                         + ("" if index is None else ", not both"))
    if url is not None:
        if not isinstance(url, str):
            raise ValueError(f"url must be a string like http://127.0.0.1:8000, not {url!r}")
        return RemoteIndex(url), True
    if isinstance(index, (str, os.PathLike)):
        from searcher.cluster.sharded import open_index

        return open_index(index), True
    if not isinstance(index, SearchableIndex):
        raise TypeError(f"index must be an Index or the path of one, not {type(index).__name__}")
    return index, False


def check_options(k: Any, mode: Any, remote: bool) -> tuple[int, str | None]:
    """k as an int (at least 1; at most API_MAX_K against a server) and mode as given (None:
    the index's default), or a ValueError saying which is wrong."""
    k, _ = check_k(k)
    if mode is not None:
        check_mode(mode)
    if remote and k > API_MAX_K:
        raise ValueError(f"a searcher server returns at most {API_MAX_K} results, so k must be at most "
                         f"{API_MAX_K} with url=, not {k}")
    return k, mode


class SearchSource:
    """What a retriever searches (an index or a server), and whether it closes it. k and mode
    are the retriever's, checked at each search, so changing them on a retriever takes effect."""

    def __init__(self, index: Any = None, url: str | None = None, k: Any = 10, mode: Any = None):
        check_options(k, mode, remote=url is not None)  # bad arguments fail at construction
        self.remote = url is not None
        self.source, self.owned = resolve_source(index, url)

    def search(self, query: str, k: Any, mode: Any) -> list[Hit]:
        k, mode = check_options(k, mode, self.remote)
        return self.source.search(query, k=k, mode=mode)

    def close(self) -> None:
        """Close the source if the retriever opened it (an Index passed in stays open)."""
        if self.owned:
            self.source.close()


def hit_metadata(hit: Hit) -> dict:
    """A hit's fields besides its passage. The document's own metadata stays under "metadata",
    so its keys never collide with these (it is {} for hits from a server: the API's search
    results do not carry it)."""
    return {"id": hit.doc_id, "title": hit.title, "source": hit.source, "score": hit.score,
            "cosine": hit.cosine, "bm25": hit.bm25,
            "start": hit.start, "end": hit.end, "page": hit.page, "metadata": dict(hit.metadata)}
