"""An index folder on disk: its manifest, its write lock, and the vectors file of each generation.

Layout of a folder:
    manifest.json          model, dimension, pooling, chunk settings, index type, format version
    content.db             documents, chunks, keyword table, state, checksums (SQLite, WAL)
    vectors.<gen>.faiss    chunk vectors of commit <gen>; content.db names the live <gen> and
                           holds the SHA-256 of its file
    write.lock             held by the one process that writes

Both `Index` and `check` go through this module, so the rules live in one place: a commit
always writes a generation number that no file in the folder has (so a leftover file of an
interrupted commit is never mistaken for, or overwritten by, a new one), and a file is
trusted only when its checksum matches the one SQLite recorded for it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import re
from contextlib import contextmanager
from pathlib import Path

from .errors import IndexCorruptError, IndexLockedError, IndexNotFoundError
from .vectors import INDEX_TYPES, write_atomic

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "content.db"
LOCK = "write.lock"
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
    "created_at": (False, (str,)),
}


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
    """Write `vectors` (a FaissVectorIndex) as generation `generation`'s file, durably; returns
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


def write_manifest(path: Path, manifest: dict) -> None:
    """Replace the manifest in index folder `path` atomically."""
    write_atomic(Path(path) / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))


def read_manifest(path: Path) -> dict:
    """The folder's manifest, checked field by field (IndexCorruptError names a bad one)."""
    mf = Path(path) / MANIFEST
    if not mf.is_file():
        raise IndexNotFoundError(f"no index in {path} (no {MANIFEST}); build one with `searcher index`")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexCorruptError(f"{mf} is unreadable: {e}") from e
    if not isinstance(manifest, dict):
        raise IndexCorruptError(f"{mf} is not a JSON object (it holds a {type(manifest).__name__})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexCorruptError(
            f"{path} has index format {manifest.get('format_version')!r}, this searcher reads {FORMAT_VERSION}"
        )
    for name, (required, types) in MANIFEST_FIELDS.items():
        if name not in manifest:
            if required:
                raise IndexCorruptError(f"{mf} lacks the field {name!r}")
            continue
        value = manifest[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise IndexCorruptError(f"{mf}: field {name!r} is {value!r}, not a {types[0].__name__}")
    for name in ("dimension", "chunk_tokens"):
        if manifest[name] < 1:
            raise IndexCorruptError(f"{mf}: field {name!r} is {manifest[name]}, not a positive number")
    if not 0 <= manifest["overlap"] < manifest["chunk_tokens"]:
        raise IndexCorruptError(f"{mf}: field 'overlap' is {manifest['overlap']}, not in [0, chunk_tokens)")
    if manifest.get("index_type", "flat") not in INDEX_TYPES:
        raise IndexCorruptError(f"{mf}: field 'index_type' is {manifest['index_type']!r}, "
                                f"not one of {', '.join(INDEX_TYPES)}")
    for key, value in manifest.get("search_params", {}).items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise IndexCorruptError(f"{mf}: search_params[{key!r}] is {value!r}, not a positive integer")
    return manifest
