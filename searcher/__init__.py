"""searcher: semantic search over your own documents.

    from searcher import Index
    index = Index.create("indexes/notes")
    index.add_paths(["docs/"])
    hits = index.search("small felines", k=5)

    searcher.open_index(folder)       an Index, or a ShardedIndex for a sharded folder
    searcher.connect(url)             a running `searcher serve`, with the same reading API

A sharded index's search gives `Results` (a list of Hits) whose `missing_shards` names the
shards that did not answer (`partial`); a call only a missing shard can answer raises
ShardUnavailable.

The names below load on first use (PEP 562): `import searcher.remote` or `searcher.connect`
loads no model, FAISS, tantivy or SQLite wrapper (tests/test_layout.py checks it).
"""

from __future__ import annotations

import importlib

# name -> the module that defines it
_EXPORTS = {
    "Document": "searcher.readers.documents",
    "Skipped": "searcher.readers.documents",
    "LoadOptions": "searcher.readers.options",
    "Encoder": "searcher.encoding.encoder",
    "ModelError": "searcher.encoding.encoder",
    "Hit": "searcher.search.results",
    "Results": "searcher.search.results",
    "SearchOptions": "searcher.search.options",
    "ParsedQuery": "searcher.search.query",
    "parse_query": "searcher.search.query",
    "SearchableIndex": "searcher.search.protocol",
    "Index": "searcher.index.facade",
    "IndexReport": "searcher.index.writer",
    "ShardedIndex": "searcher.cluster.sharded",
    "open_index": "searcher.cluster.sharded",
    "RemoteIndex": "searcher.remote",
    "connect": "searcher.remote",
    **{name: "searcher.errors" for name in (
        "IndexCorruptError", "IndexExistsError", "IndexIOError", "IndexLockedError", "IndexNotFoundError",
        "ModelMismatchError", "SearcherError", "ShardUnavailable")},
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'searcher' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
