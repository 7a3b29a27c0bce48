"""What an index says about itself (`Index.info`: counts, settings, sizes on disk, its commit
time) and the evaluation records `searcher eval` keeps in it."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

from searcher.errors import IndexLockedError
from searcher.index.live import LiveGeneration
from searcher.storage.folder import DATABASE, exclusive_lock, vectors_path
from searcher.storage.store import ContentStore, readable

RECORD_WAIT = 10.0  # seconds record_evaluation waits for another process's write lock


def index_info(path: Path, manifest: dict, live: LiveGeneration, encoder) -> dict:
    """Index.info (see there); `live` is reloaded first if another process committed."""
    vectors, generation = live.current()
    store = live.read_store()
    disk = disk_usage(path, generation, live.keywords.path)
    return {
        "path": str(path),
        "documents": store.count_documents(),
        "chunks": store.count_chunks(),
        "vectors": len(vectors),
        "model": manifest["model"],
        "dimension": manifest["dimension"],
        "pooling": manifest["pooling"],
        "query_prefix": manifest.get("query_prefix", ""),
        "document_prefix": manifest.get("document_prefix", ""),
        "chunk_tokens": manifest["chunk_tokens"],
        "overlap": manifest["overlap"],
        "index_type": manifest.get("index_type", "flat"),
        "index_factory": vectors.describe(),
        "search_params": vectors.search_params(),
        "vector_backend": vectors.name,
        "keyword_engine": live.keywords.name,
        "keyword_pending": live.keywords.pending(store),
        "device": encoder.device if encoder is not None else None,
        "precision": encoder.precision if encoder is not None else None,
        "backend": encoder.backend if encoder is not None else None,
        "generation": generation,
        "committed_at": committed_at(path, store, generation),
        "created_at": manifest.get("created_at"),
        "size_bytes": disk["total"],
        "disk": disk,
        "evaluations": store.evaluations(),
    }


def index_counts(live: LiveGeneration) -> dict[str, int]:
    """Index.counts: index_info's counts without its walk of the folder."""
    vectors, generation = live.current()
    store = live.read_store()
    return {"documents": store.count_documents(), "chunks": store.count_chunks(), "vectors": len(vectors),
            "keyword_pending": live.keywords.pending(store), "generation": generation}


def committed_at(path: Path, store: ContentStore, generation: int) -> str | None:
    """When the live generation was committed (ISO 8601, UTC): recorded by the commit, or,
    for an index last committed before commits recorded it, its vectors file's time."""
    seconds = store.committed_at()
    if seconds is None:
        try:
            seconds = vectors_path(path, generation).stat().st_mtime
        except OSError:
            return None
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds")


def disk_usage(path: Path, generation: int, keyword_dir: Path | None) -> dict[str, int]:
    """Bytes on disk by kind: `database` (content.db and its -wal/-shm; the fts5 keyword
    table lives in it), `vectors` (the live generation's file), `keywords` (the keyword
    engine's own folder, tantivy's; None for an engine without one), `other` (the manifest,
    the lock, leftovers of interrupted writes) and `total`, all the folder's files."""
    sizes = {"database": 0, "vectors": 0, "keywords": 0, "other": 0}
    live = vectors_path(path, generation).name
    for p in path.rglob("*"):
        try:
            if not p.is_file():
                continue
            size = p.stat().st_size
        except OSError:  # removed meanwhile (a commit's old files, SQLite's -shm)
            continue
        rel = p.relative_to(path)
        if len(rel.parts) == 1 and p.name in (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm"):
            kind = "database"
        elif len(rel.parts) == 1 and p.name == live:
            kind = "vectors"
        elif keyword_dir is not None and Path(keyword_dir) in p.parents:
            kind = "keywords"
        else:
            kind = "other"
        sizes[kind] += size
    sizes["total"] = sum(sizes.values())
    return sizes


def record_evaluation(path: Path, live: LiveGeneration, result: dict, wait: float | None = None) -> None:
    """Index.record_evaluation (see there)."""
    deadline = time.monotonic() + (RECORD_WAIT if wait is None else wait)
    with live.write_lock:
        while True:
            try:
                with exclusive_lock(path), readable(path / DATABASE):
                    store = ContentStore(path / DATABASE)
                    try:
                        store.record_evaluation(result)
                    finally:
                        store.close()
                return
            except IndexLockedError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.2)
