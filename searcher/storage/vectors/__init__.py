"""Vector backends: the interface (base.py), the factory keyed by the manifest (factory.py)
and FAISS, the first implementation (faiss_backend.py, whose names are re-exported here)."""

from searcher.storage.vectors.base import VectorBackend
from searcher.storage.vectors.factory import BACKENDS, DEFAULT_BACKEND, backend_class, empty_vectors, open_vectors
from searcher.storage.vectors.faiss_backend import (DEFAULT_INDEX_TYPE, INDEX_TYPES, FaissVectorIndex, build_index, check_index_type,
                            nlist_for, plan)

__all__ = [
    "BACKENDS", "DEFAULT_BACKEND", "DEFAULT_INDEX_TYPE", "INDEX_TYPES", "FaissVectorIndex", "VectorBackend",
    "backend_class", "build_index", "check_index_type", "empty_vectors", "nlist_for", "open_vectors", "plan",
]
