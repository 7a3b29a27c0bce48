"""An index folder on disk: its manifest, its write lock, and the vectors file of each generation.

Layout of a folder:
    manifest.json          model, dimension, pooling, chunk settings, index type, format version
    content.db             documents, chunks, state, checksums (SQLite, WAL), the FTS5 keyword
                           table or the journal of keyword changes for tantivy
    keywords.tantivy/      the tantivy keyword index, when the manifest's keyword_engine is tantivy
    vectors.<gen>.faiss    chunk vectors of commit <gen>; content.db names the live <gen> and
                           holds the SHA-256 of its file
    map.<gen>.json         the map of the corpus for commit <gen> (searcher/quality/corpus_map.py), a
                           cache written by readers; not part of a generation
    write.lock             held by the one process that writes
    sources.json           the remote sources the index was built from, their last syncs
                           (searcher/index/sources.py); only where there are some

A generation is loaded with `load_generation` (the vectors file SQLite names, verified
against its checksum and its chunk count) and made with `commit_generation` (a new file, then
the SQLite transaction that names it, then the old files go).

Both `Index` and `check` go through this module, so the rules live in one place: a commit
always writes a generation number that no file in the folder has (so a leftover file of an
interrupted commit is never mistaken for, or overwritten by, a new one), and a file is
trusted only when its checksum matches the one SQLite recorded for it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import re
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from searcher.errors import IndexCorruptError, IndexIOError, IndexLockedError, IndexNotFoundError, SearcherError
from searcher.storage.files import write_atomic
from searcher.storage.store import disk_errno, is_disk_error
from searcher.storage.keywords import ENGINES as KEYWORD_ENGINES
from searcher.storage.vectors import BACKENDS as VECTOR_BACKENDS
from searcher.storage.vectors import INDEX_TYPES, open_vectors

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SHARDS_MANIFEST = "shards.json"  # what a sharded index's folder holds instead (searcher/cluster/shards.py)
DATABASE = "content.db"
LOCK = "write.lock"
SOURCES = "sources.json"  # the sources an index was built from (searcher/index/sources.py); backed up with it
_VECTORS_NAME = re.compile(r"vectors\.(\d+)\.faiss")

# Manifest fields: name -> (required, allowed types). Checked on every open, so a damaged
# manifest gives IndexCorruptError naming the field, never a traceback further on.
MANIFEST_FIELDS = {
    "format_version": (True, (int,)),
    "model": (True, (str,)),
    "model_fingerprint": (True, (str,)),
    "dimension": (True, (int,)),
    "pooling": (True, (str,)),
    "chunk_tokens": (True, (int,)),
    "overlap": (True, (int,)),
    "index_type": (False, (str,)),
    "index_factory": (False, (str,)),
    "search_params": (False, (dict,)),
    "keyword_engine": (False, (str,)),
    "vector_backend": (False, (str,)),
    "created_at": (False, (str,)),
    "checksum": (False, (str,)),
}
MANIFEST_HELP = ("`searcher check --repair` cannot rebuild a manifest (it names the model and the chunk settings "
                 "the vectors were made with): restore it from a backup, or build a new index from the source files")


def vectors_path(folder: Path, generation: int) -> Path:
    return Path(folder) / f"vectors.{generation}.faiss"


def generations_on_disk(folder: Path) -> list[int]:
    """Generation numbers of every vectors file in the folder, live or left over."""
    found = []
    for p in Path(folder).glob("vectors.*.faiss"):
        m = _VECTORS_NAME.fullmatch(p.name)
        if m:
            found.append(int(m.group(1)))
    return sorted(found)


def next_generation(folder: Path, live: int) -> int:
    """A generation number above the live one and above every file already in the folder."""
    return max([live, *generations_on_disk(folder)]) + 1


def leftover_files(folder: Path, live: int) -> list[Path]:
    """Files an interrupted write left: vectors of other generations, temporary files."""
    folder = Path(folder)
    keep = vectors_path(folder, live).name
    stray = [p for p in folder.glob("vectors.*.faiss") if p.name != keep]
    return sorted(stray + list(folder.glob(".*.tmp-*")))


def remove_leftovers(folder: Path, live: int) -> int:
    """Delete `leftover_files` (only under the write lock: a writer's files are its own)."""
    stray = leftover_files(folder, live)
    for p in stray:
        p.unlink(missing_ok=True)
    return len(stray)


def write_vectors(folder: Path, generation: int, vectors) -> dict[str, str]:
    """Write `vectors` (a vector backend) as generation `generation`'s file, durably; returns
    {file name: SHA-256}, the checksums the SQLite commit that makes it live must record."""
    vfile = vectors_path(folder, generation)
    vectors.save(vfile)
    return {vfile.name: file_sha256(vfile)}


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in blocks (memory stays small for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def exclusive_lock(folder: Path):
    """One writer per index folder, across processes; a second fails at once."""
    fh = open(Path(folder) / LOCK, "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexLockedError(
                f"another process is writing to the index in {folder}; wait for it to finish"
            ) from None
        yield
    finally:
        fh.close()


def ensure_unlocked(folder: Path) -> None:
    """Fail at once (IndexLockedError) when another process is writing, before slow set-up such
    as loading the model; the writer still takes the lock for real when it writes."""
    if (Path(folder) / LOCK).exists():
        with exclusive_lock(folder):
            pass


def manifest_checksum(manifest: dict) -> str:
    """SHA-256 of a manifest's fields other than `checksum`, in a canonical JSON form."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hexdigest()


def write_manifest(path: Path, manifest: dict) -> None:
    """Replace the manifest in index folder `path` atomically, with the checksum of its fields
    (so a flipped bit that still reads as JSON, a changed number or name, is detected)."""
    manifest = {**{k: v for k, v in manifest.items() if k != "checksum"}, "checksum": manifest_checksum(manifest)}
    write_atomic(Path(path) / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))


def read_manifest(path: Path) -> dict:
    """The folder's manifest, checked field by field (IndexCorruptError names a bad one)."""
    mf = Path(path) / MANIFEST
    if not mf.is_file():
        if (Path(path) / SHARDS_MANIFEST).is_file():
            raise IndexNotFoundError(f"{path} is a sharded index ({SHARDS_MANIFEST}), not a single one: open it "
                                     f"with searcher.open_index")
        raise IndexNotFoundError(f"no index in {path} (no {MANIFEST}); build one with `searcher index`")
    try:
        text = mf.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise IndexCorruptError(f"{mf} is damaged (not UTF-8: {e}); {MANIFEST_HELP}") from e
    except OSError as e:
        raise IndexIOError(e.errno or errno.EIO, f"cannot read {mf}: {e.strerror or e}") from e
    try:
        manifest = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise IndexCorruptError(f"{mf} is damaged (not valid JSON: {e}); {MANIFEST_HELP}") from e
    if not isinstance(manifest, dict):
        raise IndexCorruptError(f"{mf} is not a JSON object (it holds a {type(manifest).__name__}); {MANIFEST_HELP}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorruptError(
            f"{path} has index format {manifest.get('format_version')!r}, this searcher reads {FORMAT_VERSION}"
        )
    for name, (required, types) in MANIFEST_FIELDS.items():
        if name not in manifest:
            if required:
                raise IndexCorruptError(f"{mf} lacks the field {name!r}; {MANIFEST_HELP}")
            continue
        value = manifest[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise IndexCorruptError(f"{mf}: field {name!r} is {value!r}, not a {types[0].__name__}; {MANIFEST_HELP}")
    for name in ("dimension", "chunk_tokens"):
        if manifest[name] < 1:
            raise IndexCorruptError(f"{mf}: field {name!r} is {manifest[name]}, not a positive number")
    if not 0 <= manifest["overlap"] < manifest["chunk_tokens"]:
        raise IndexCorruptError(f"{mf}: field 'overlap' is {manifest['overlap']}, not in [0, chunk_tokens)")
    if manifest.get("index_type", "flat") not in INDEX_TYPES:
        raise IndexCorruptError(f"{mf}: field 'index_type' is {manifest['index_type']!r}, "
                                f"not one of {', '.join(INDEX_TYPES)}")
    for name, known, default in (("keyword_engine", KEYWORD_ENGINES, "fts5"), ("vector_backend", VECTOR_BACKENDS, "faiss")):
        if manifest.get(name, default) not in known:
            raise IndexCorruptError(f"{mf}: field {name!r} is {manifest[name]!r}, not one of {', '.join(known)}")
    for key, value in manifest.get("search_params", {}).items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise IndexCorruptError(f"{mf}: search_params[{key!r}] is {value!r}, not a positive integer")
    if "checksum" in manifest and manifest["checksum"] != manifest_checksum(manifest):
        raise IndexCorruptError(
            f"{mf} does not match its checksum: the file is damaged (or was edited by hand: if on purpose, "
            f"delete its \"checksum\" field); {MANIFEST_HELP}")
    return manifest


def load_generation(folder: Path, manifest: dict, store, use_gpu: bool = False):
    """(generation, vectors) of the store's live generation, verified: the file's SHA-256 is
    the one recorded (when one was: indexes from before checksums have none), its dimension
    the manifest's and its count the chunk rows'. IndexCorruptError otherwise. Retries when
    another process commits in between."""
    folder = Path(folder)
    for _ in range(5):
        generation, chunks, checksum = store.snapshot()
        vfile = vectors_path(folder, generation)
        # The checksum first: FAISS never parses a damaged file (a damaged length field could
        # make it allocate without bound). A generation's file is never rewritten, only
        # removed by a later commit, so the file FAISS reads next is the one just verified.
        try:
            actual = file_sha256(vfile) if checksum is not None else None
        except OSError:
            time.sleep(0.05)  # a commit removed the file under us: read the generation again
            continue
        if actual != checksum:
            if store.generation != generation:
                continue  # a commit landed between the two reads
            raise IndexCorruptError(
                f"{vfile} does not match the checksum recorded when it was written (the file "
                f"is damaged); run `searcher check --repair --index {folder}`")
        try:
            vectors = open_vectors(vfile, manifest, use_gpu)
        except (RuntimeError, OSError):
            time.sleep(0.05)
            continue
        if len(vectors) != chunks or vectors.dimension != manifest["dimension"]:
            raise IndexCorruptError(
                f"{folder}: generation {generation} has {chunks} chunks but {len(vectors)} "
                f"vectors of dimension {vectors.dimension}; run `searcher check --repair --index {folder}`")
        return generation, vectors
    raise IndexCorruptError(
        f"{vectors_path(folder, store.generation)} is missing or unreadable; "
        f"run `searcher check --repair --index {folder}`")


def commit_generation(folder: Path, store, live: int, vectors, keywords, docs=(), chunks=(),
                      delete_doc_ids=(), next_chunk_id: int | None = None, delete_chunk_ids=()) -> int:
    """Make `vectors` (already changed) and these rows the next generation, under the write
    lock: the vectors file (a number no file has) and its checksum, then one SQLite
    transaction (where the keyword engine records its changes), then the old files go and the
    keyword engine applies what it recorded. Returns the new generation.

    The generation is committed once SQLite is: a keyword engine that fails to apply its
    changes after that (tantivy: a full disk) keeps them recorded, to apply at the next open
    or write, and says so in the log; keyword search meanwhile checks hits against the chunks.

    A step that fails before that (the vectors file's write, fsync or rename, the folder's
    fsync, the SQLite transaction: a full disk, an I/O error) raises IndexIOError with its
    errno, naming the step; the new vectors file is removed, so nothing of the commit stays
    and the previous generation is still the live one.

    It returns the moment SQLite has committed: a process that searches while it writes swaps
    its vectors then, and calls `finish_commit` for the clean-up and the keyword engine's work,
    so its searches never read the new rows over the old vectors for longer than that."""
    new = next_generation(folder, live)
    vfile = vectors_path(folder, new)
    try:
        checksums = write_vectors(folder, new, vectors)
    except OSError as e:
        _discard(vfile)  # only a folder fsync that failed after the rename leaves it
        raise write_failed(folder, live, f"writing the vectors file {vfile.name}", e) from e
    try:
        if next_chunk_id is None:
            next_chunk_id = store.state("next_chunk_id")
        store.commit(new, docs, chunks, delete_doc_ids, next_chunk_id, checksums, keywords.record, delete_chunk_ids)
    except BaseException as e:
        if _live_generation(store) == new:  # failed after SQLite committed: the file is live, keep it
            log.warning("%s: generation %d is committed, but the commit then failed: %s", folder, new, e)
            raise
        _discard(vfile)  # never live: a retry on a full disk must not pile up such files
        if isinstance(e, OSError) or is_disk_error(e):
            raise write_failed(folder, live, f"the SQLite transaction in {DATABASE}", e) from e
        raise
    return new


def finish_commit(folder: Path, store, new: int, keywords) -> None:
    """After `commit_generation`: remove the older generations' files and let the keyword
    engine apply what the commit recorded. Neither can undo the commit; a failure is logged."""
    try:
        remove_leftovers(folder, new)
    except OSError as e:  # committed: what stays is only a leftover the next commit removes
        log.warning("%s: committed generation %d, but could not remove the older files: %s", folder, new, e)
    try:
        keywords.catch_up(store)
    except (SearcherError, OSError, sqlite3.Error) as e:
        log.warning("%s: committed, but the keyword changes wait for the next open or write: %s", folder, e)


def write_failed(folder: Path, live: int, step: str, e: BaseException) -> IndexIOError:
    """The error of a commit that failed at `step`: its errno (ENOSPC for SQLite's "full", EIO
    for its I/O errors), the file and step, and that the last commit still holds."""
    if isinstance(e, OSError):
        code = e.errno or errno.EIO
        where = f" ({e.filename})" if e.filename else ""
        reason = f"{e.strerror or e}{where}"
    else:
        code, reason = disk_errno(e), f"SQLite: {e}"
    return IndexIOError(code, (
        f"cannot commit to the index in {folder}: {step} failed: {reason}. Nothing of this commit was "
        f"kept; the index still holds its last commit (generation {live}). "
        + ("Free some space on the disk and run the write again." if code == errno.ENOSPC
           else "Check the disk, then run the write again.")))


def _live_generation(store) -> int | None:
    try:
        return store.generation
    except (sqlite3.Error, OSError):
        return None


def _discard(path: Path) -> None:
    try:
        Path(path).unlink(missing_ok=True)
    except OSError as e:
        log.warning("could not remove %s (the next commit removes it): %s", path, e)
