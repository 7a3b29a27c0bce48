"""Which vector backend an index uses: the manifest's "vector_backend" (FAISS when absent)."""

from __future__ import annotations

from pathlib import Path

from searcher.storage.vectors.base import VectorBackend
from searcher.storage.vectors.faiss_backend import FaissVectorIndex

BACKENDS: dict[str, type[VectorBackend]] = {"faiss": FaissVectorIndex}
DEFAULT_BACKEND = "faiss"


def backend_class(manifest: dict) -> type[VectorBackend]:
    name = manifest.get("vector_backend", DEFAULT_BACKEND)
    if name not in BACKENDS:
        raise ValueError(f"unknown vector backend {name!r}: this searcher has {', '.join(BACKENDS)}")
    return BACKENDS[name]


def empty_vectors(manifest: dict, use_gpu: bool = False) -> VectorBackend:
    return backend_class(manifest).empty(manifest, use_gpu)


def open_vectors(path: Path, manifest: dict, use_gpu: bool = False) -> VectorBackend:
    return backend_class(manifest).open(path, manifest, use_gpu)
