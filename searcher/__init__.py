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
"""

from searcher.encoding.encoder import Encoder, ModelError
from searcher.errors import ShardUnavailable
from searcher.index.facade import (
    Hit,
    Index,
    IndexCorruptError,
    IndexExistsError,
    IndexIOError,
    IndexLockedError,
    IndexNotFoundError,
    IndexReport,
    ModelMismatchError,
    SearcherError,
)
from searcher.readers.loaders import Document, LoadOptions, Skipped
from searcher.remote import RemoteIndex, connect
from searcher.search.retrieval import Results
from searcher.cluster.sharded import ShardedIndex, open_index

__all__ = [
    "Document", "Encoder", "Hit", "Index", "IndexCorruptError", "IndexExistsError",
    "IndexIOError", "IndexLockedError", "IndexNotFoundError", "IndexReport", "LoadOptions", "ModelError",
    "ModelMismatchError", "RemoteIndex", "Results", "SearcherError", "ShardUnavailable", "ShardedIndex", "Skipped",
    "connect", "open_index",
]
