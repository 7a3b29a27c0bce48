"""The vector index: chunk vectors in FAISS, keyed by chunk id.

Index types are FAISS `index_factory` strings wrapped in an id map, so that the ids FAISS
returns are the chunk ids of the SQLite store whatever the type. Files are written to a
temporary name, flushed to disk and renamed into place, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

DEFAULT_FACTORY = "IDMap2,Flat"


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, write) -> None:
    """Call write(tmp_path), fsync the result and rename it over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    fsync_dir(path.parent)


def gpu_available() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class FaissVectorIndex:
    """Inner-product search over unit vectors (so scores are cosines), with add/remove by id."""

    def __init__(self, index: faiss.Index, factory: str, use_gpu: bool = False):
        self.index = index
        self.factory = factory
        self.use_gpu = use_gpu and gpu_available()
        self._gpu_index = None  # search copy on the GPU, rebuilt after changes

    @classmethod
    def create(cls, dimension: int, factory: str = DEFAULT_FACTORY, use_gpu: bool = False):
        if not factory.startswith("IDMap"):
            factory = f"IDMap2,{factory}"
        index = faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
        return cls(index, factory, use_gpu)

    @classmethod
    def load(cls, path: Path, factory: str = DEFAULT_FACTORY, use_gpu: bool = False):
        return cls(faiss.read_index(str(path)), factory, use_gpu)

    def save(self, path: Path) -> None:
        write_atomic(Path(path), lambda tmp: faiss.write_index(self.index, str(tmp)))

    @property
    def dimension(self) -> int:
        return self.index.d

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        """All stored ids (for consistency checks)."""
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not self.index.is_trained:
            self.index.train(vectors)
        self.index.add_with_ids(vectors, np.ascontiguousarray(ids, dtype=np.int64))
        self._gpu_index = None

    def remove(self, ids) -> int:
        ids = np.ascontiguousarray(np.asarray(list(ids), dtype=np.int64))
        if len(ids) == 0:
            return 0
        removed = self.index.remove_ids(faiss.IDSelectorBatch(ids))
        self._gpu_index = None
        return int(removed)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k nearest vectors to each query; ids are -1 where fewer exist."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = max(1, min(k, len(self))) if len(self) else 1
        if len(self) == 0:
            n = len(queries)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        return self._searcher().search(queries, k)

    def _searcher(self):
        if not self.use_gpu:
            return self.index
        if self._gpu_index is None:
            try:
                res = faiss.StandardGpuResources()
                self._gpu_res = res
                self._gpu_index = faiss.index_cpu_to_gpu(res, 0, self.index)
            except (RuntimeError, AttributeError):
                self.use_gpu = False  # this index type has no GPU version: stay on the CPU
                return self.index
        return self._gpu_index
