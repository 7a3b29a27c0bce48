"""searcher: semantic search over your own documents.

    from searcher import Index
    index = Index.create("indexes/notes")
    index.add_paths(["docs/"])
    hits = index.search("small felines", k=5)
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

__all__ = [
    "Document", "Encoder", "Hit", "Index", "IndexCorruptError", "IndexExistsError",
    "IndexIOError", "IndexLockedError", "IndexNotFoundError", "IndexReport", "LoadOptions", "ModelError",
    "ModelMismatchError", "SearcherError", "Skipped",
]
