"""What a vector backend must do: hold one unit vector per chunk id and find the nearest.

One backend object is one generation's vectors: `open` reads a saved generation, `save`
writes one (to a temporary name, then renamed), and the index folder names the files
(searcher/storage/folder.py). A backend's own tuning (FAISS's index types, training, re-planning)
stays inside it; `prepare_commit` is where it may rebuild itself before a commit is saved.
A backend is not thread-safe for writes: the Index changes a `copy` (or adds under its lock)
while other threads search the live one.
Every implementation passes tests/test_vector_backends.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class VectorBackend(ABC):
    name: str  # the manifest's "vector_backend"

    @classmethod
    @abstractmethod
    def empty(cls, manifest: dict, use_gpu: bool = False) -> "VectorBackend":
        """A new, empty backend for an index with this manifest (dimension, settings)."""

    @classmethod
    @abstractmethod
    def open(cls, path: Path, manifest: dict, use_gpu: bool = False) -> "VectorBackend":
        """The generation saved in file `path`."""

    @staticmethod
    def manifest_fields(manifest: dict) -> dict:
        """Fields this backend adds to a new index's manifest (its settings)."""
        return {}

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write this generation to `path` atomically."""

    @abstractmethod
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add unit vectors under chunk ids (ids not already present)."""

    @abstractmethod
    def remove(self, ids) -> int:
        """Remove these chunk ids (absent ones are ignored); how many were there."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (len(queries), <= k), best first; scores are cosines; id -1 pads.
        `allowed`: only these ids are candidates (a filter, applied before ranking, not after)."""

    @abstractmethod
    def __len__(self) -> int:
        """How many vectors it holds."""

    @abstractmethod
    def ids(self) -> np.ndarray:
        """Every chunk id it holds (any order)."""

    @property
    @abstractmethod
    def dimension(self) -> int:
        ...

    @abstractmethod
    def describe(self) -> str:
        """A short description of what it is now (FAISS: its factory string)."""

    @abstractmethod
    def copy(self) -> "VectorBackend":
        """An independent copy (a writer changes it while searches go on reading this one)."""

    def prepare_commit(self, manifest: dict) -> "VectorBackend":
        """The backend to save at a commit, after its changes, with the settings the index has
        now (`manifest`): itself, or a rebuild of itself."""
        return self

    def export(self, approximate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(ids, exact vectors) of everything it holds; ValueError if it cannot give them back.
        `approximate`: a backend that keeps only compressed codes gives their reconstructions
        instead (good enough for a map of the corpus, never for a rebuild)."""
        raise ValueError(f"the {self.name} backend cannot give its vectors back")

    def search_params(self) -> dict:
        return {}

    def set_search_params(self, **params) -> None:
        """Change search-time settings (FAISS: nprobe, ef_search); others ignore them."""
