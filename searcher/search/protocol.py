"""The search API, declared once: what every index offers for reading (`SearchableIndex`:
`Index`, `ShardedIndex`, `RemoteIndex`), what a server needs of an index it opened
(`ServedIndex`), and what a sharded index asks of each shard (`Shard`).

tests/test_contract.py runs one suite against a single index, a two-shard index and a
RemoteIndex on a test server, with the same assertions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

from searcher.search.facets import DEFAULT_FACETS
from searcher.search.query import ParsedQuery
from searcher.search.results import Hit


@runtime_checkable
class SearchableIndex(Protocol):
    """Reading an index, wherever it lives. A sharded index's (and a server's over one) lists
    are `Results` that name the shards that did not answer."""

    def search(self, query: str | ParsedQuery, k: int = 10, offset: int = 0, mode: str | None = None,
               where: dict | None = None, sort: str | None = None, recency: float | None = None,
               syntax: bool = True) -> list[Hit]:
        """The top `k` documents for `query` after skipping `offset` (searcher/search/options.py).
        The text is read in the query language (searcher/search/query.py); `syntax=False`
        searches it as plain words; a ParsedQuery is searched as it is."""

    def search_with_facets(self, query: str | ParsedQuery, k: int = 10, offset: int = 0,
                           fields: Iterable[str] = DEFAULT_FACETS, *, mode: str | None = None,
                           where: dict | None = None, sort: str | None = None, recency: float | None = None,
                           syntax: bool = True) -> tuple[list[Hit], dict[str, dict]]:
        """`search`, and the counts of `fields` among the ranking's best documents."""

    def similar(self, doc_id: str, k: int = 10, where: dict | None = None) -> list[Hit]:
        """The documents nearest in meaning to `doc_id`, never itself; KeyError: no such document."""

    def get_document(self, doc_id: str) -> dict | None:
        """The stored document (id, source, title, metadata, text, ...), or None."""

    def info(self) -> dict:
        """What the index holds and how it is set up (documents, chunks, model, ...)."""

    def encode(self, texts: str | Sequence[str], *, input_type: str = "document", batch_size: int | None = None,
               truncate: bool = True) -> Any:
        """Texts to an (n, dimension) float32 array of unit vectors, as this index encodes a
        chunk ("document") or a query ("query"); in process, or on the server for a RemoteIndex."""

    def __len__(self) -> int:
        """The number of documents."""

    def close(self) -> None:
        """Let go of what the index holds open."""


@runtime_checkable
class ServedIndex(SearchableIndex, Protocol):
    """An index opened in this process, single or sharded: what `searcher serve` (searcher/web)
    reads and writes through. `sharded`: a set of shards, with no database of its own; `path`:
    the folder it was opened from (None: one that has none). Its reads (search,
    search_with_facets, similar, get_document, and `count`) also take `access=`, the Viewer
    a server's key reads as (searcher/search/access.py)."""

    sharded: bool
    path: Path | None

    @property
    def analyzer(self) -> Any:
        """The keyword analysis of its engine (what the page's highlighter marks)."""

    def committed_generation(self) -> int | None:
        """The generation its database has committed now, as this thread reads it (what a
        search's hits are read from); None for a sharded index (each shard has its own)."""

    def counts(self) -> dict:
        """documents, chunks, vectors, keyword_pending and generation (None for a sharded
        index), read without walking the folder (what /metrics shows each scrape)."""

    def reopen(self) -> "ServedIndex":
        """A new one on the same folder and model (after its files were restored)."""

    def add_documents(self, documents: Iterable, progress=None, on_conflict: str = "skip", encoder=None) -> Any:
        """Add or replace documents; an IndexReport."""

    def add_paths(self, paths: Iterable, options=None, progress=None, prune: bool = False,
                  on_conflict: str = "skip", accept=None, encoder=None) -> Any:
        """Index files and folders; an IndexReport."""

    def delete(self, doc_ids) -> int:
        """Remove documents; how many were there."""


class Answer(Protocol):
    def result(self) -> Any: ...


class Shard(Protocol):
    """One shard, as a sharded index asks it (searcher/cluster/sharded.py): a local `Index`
    through `LocalShard`, or a Ray Serve deployment (searcher/cluster/ray_serving.py).
    `submit(method, *args, **kwargs)` asks one of the calls below without waiting."""

    def submit(self, method: str, *args, **kwargs) -> Answer: ...

    def rank(self, query: str | ParsedQuery, k: int = 10, mode: str | None = None, fusion=None,
             where: dict | None = None, keyword_stats=None, query_vector=None,
             syntax: bool = True) -> list[tuple[str, float, int]]: ...

    def fetch(self, ranking: Iterable[tuple[str, float, int]]) -> list[Hit]: ...

    def metadata(self, doc_ids: Iterable[str]) -> dict[str, dict]: ...

    def keyword_statistics(self, query: str) -> Any: ...

    def known_fields(self, names: Iterable[str]) -> set[str]: ...

    def spelling(self, words: list[str]) -> dict: ...

    def document_vector(self, doc_id: str) -> Any: ...

    def search_vector(self, vector, k: int = 10, where: dict | None = None) -> Sequence[Hit]: ...

    def get_document(self, doc_id: str) -> dict | None: ...

    def info(self) -> dict: ...

    def __len__(self) -> int: ...

    def reopen(self) -> "Shard": ...

    def close(self) -> None: ...
