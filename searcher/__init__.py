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

from .encoder import Encoder, ModelError
from .errors import ShardUnavailable
from .index import (
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
from .loaders import Document, LoadOptions, Skipped
from .remote import RemoteIndex, connect
from .retrieval import Results
from .sharded import ShardedIndex, open_index

__all__ = [
    "Document", "Encoder", "Hit", "Index", "IndexCorruptError", "IndexExistsError",
    "IndexIOError", "IndexLockedError", "IndexNotFoundError", "IndexReport", "LoadOptions", "ModelError",
    "ModelMismatchError", "RemoteIndex", "Results", "SearcherError", "ShardUnavailable", "ShardedIndex", "Skipped",
    "connect", "open_index",
]
