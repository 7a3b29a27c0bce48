"""searcher: semantic search over your own documents.

    from searcher import Index
    index = Index.create("indexes/notes")
    index.add_paths(["docs/"])
    hits = index.search("small felines", k=5)

    searcher.open_index(folder)       an Index, or a ShardedIndex for a sharded folder
    searcher.connect(url)             a running `searcher serve`, with the same reading API
"""

from .encoder import Encoder, ModelError
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
from .sharded import ShardedIndex, open_index

__all__ = [
    "Document", "Encoder", "Hit", "Index", "IndexCorruptError", "IndexExistsError",
    "IndexIOError", "IndexLockedError", "IndexNotFoundError", "IndexReport", "LoadOptions", "ModelError",
    "ModelMismatchError", "RemoteIndex", "SearcherError", "ShardedIndex", "Skipped", "connect", "open_index",
]
