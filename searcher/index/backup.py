"""Online backup and restore of an index folder: a copy of one committed generation, taken while
the index keeps serving and taking writes, and put back as a new index that `searcher check`
passes. A sharded index (every shard with the layout): searcher/cluster/backup.py, which the
commands call for either kind.

A backup is a folder:

    backup.json        what it holds: kind ("index"), the generation, its documents and chunks,
                       the keyword engine, the source and the time, the SHA-256 of each file
                       below, and a checksum of its own fields; written last
    manifest.json      the index's manifest
    content.db         SQLite's online backup of the generation (one file, no -wal)
    vectors.<g>.faiss  that generation's vectors, checked against the SHA-256 content.db records

The generation is held still by a read transaction and the open vectors file
(searcher/storage/snapshot.py), so no lock is taken and no writer waits. The keyword engine's
own files (tantivy's) are not copied: a restore rebuilds them from content.db, which is always
that generation's (FTS5's table lives inside content.db and comes with it).

Both directions write into a temporary folder beside the destination (`.NAME.backup-tmp-PID-*`,
`.NAME.restore-tmp-PID-*`), fsync it and rename it last: a killed run leaves nothing under the
final name, and the next run removes the temporary folders of processes that are gone. A
restore checks every file against backup.json, checks the result with `check_index`, and only
then renames it into place; over an existing index only with `force`, swapped in one step
(searcher/storage/files.py `replace_folder`), under that index's write lock.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from searcher.errors import BackupError, IndexExistsError, SearcherError
from searcher.index.check import check_index
from searcher.storage.files import fsync_dir, replace_folder, write_atomic
from searcher.storage.folder import (DATABASE, MANIFEST, SHARDS_MANIFEST, SOURCES, exclusive_lock, file_sha256,
                                     manifest_checksum, read_manifest, vectors_path)
from searcher.storage.keywords import open_keywords
from searcher.storage.snapshot import Pinned, copy_database, copy_hashed, copy_vectors, fsync_tree, pin_generation
from searcher.storage.store import ContentStore

BACKUP_FILE = "backup.json"
BACKUP_FORMAT = 1
BACKUP_TMP = ".backup-tmp-"
RESTORE_TMP = ".restore-tmp-"
_TEMP = re.compile(r"\..+(\.backup-tmp-|\.restore-tmp-)(\d+)-[0-9a-f]{12}")
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

Progress = Callable[[str], None]


@dataclass
class BackupReport:
    """What a backup (or a restore, `restored`) holds: one generation of a single index, or one
    generation of each shard (`shards`: name, generation, documents, chunks)."""

    path: str
    source: str
    sharded: bool = False
    generation: int | None = None  # a single index's
    documents: int = 0
    chunks: int = 0
    shards: list[dict] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    restored: bool = False
    replaced: bool = False  # a restore that replaced an existing index (force)

    def to_dict(self) -> dict:
        out = {"path": self.path, "source": self.source, "sharded": self.sharded, "documents": self.documents,
               "chunks": self.chunks, "bytes": self.bytes, "seconds": round(self.seconds, 2)}
        if self.sharded:
            out["shards"] = self.shards
        else:
            out["generation"] = self.generation
        if self.restored:
            out["replaced"] = self.replaced
        return out

    def summary(self) -> str:
        what = (f"{len(self.shards)} shards at generations {', '.join(str(s['generation']) for s in self.shards)}"
                if self.sharded else f"generation {self.generation}")
        verb = ("restored" + (" (replacing the index there)" if self.replaced else "")) if self.restored else "backed up"
        return (f"{self.path}: {verb} {what} of {self.source}: {self.documents} documents, {self.chunks} chunks, "
                f"{self.bytes / 1e6:.1f} MB ({self.seconds:.1f}s)")


# -- backing up -----------------------------------------------------------------------------------
def backup_index(index_dir, to, progress: Progress | None = None) -> BackupReport:
    """Back up the live generation of the index in folder `index_dir` into the new folder `to`
    (see the module doc), while the index serves and takes writes. `progress(message)` hears
    each step. A sharded index: searcher.cluster.backup.backup."""
    started = time.perf_counter()
    index_dir, to = Path(index_dir), Path(to)
    if (index_dir / SHARDS_MANIFEST).is_file():
        raise SearcherError(f"{index_dir} is a sharded index: back it up with searcher.cluster.backup.backup "
                            f"(`searcher backup` does)")
    read_manifest(index_dir)  # IndexNotFoundError, IndexCorruptError: before anything is written
    check_destination(index_dir, to)
    say = progress or (lambda message: None)
    with temp_beside(to, BACKUP_TMP) as tmp:
        with pin_generation(index_dir) as pinned:
            info = backup_folder(index_dir, pinned, tmp, say)
        write_backup_file(tmp, info)
        publish(tmp, to)
    say(f"backed up generation {info['generation']} to {to}")
    return report_of(info, to, index_dir, started)


def check_destination(source: Path, to: Path) -> None:
    """`to` is a new name outside the index (a backup is never written over anything)."""
    if to.exists() or to.is_symlink():
        raise IndexExistsError(f"{to} already exists: back up to a new name (a backup never writes over anything)")
    src, dst = source.resolve(), to.resolve()
    if src == dst or src in dst.parents:
        raise ValueError(f"the backup {to} must lie outside the index it copies ({source})")
    to.parent.mkdir(parents=True, exist_ok=True)


def backup_folder(index_dir: Path, pinned: Pinned, dest: Path, say: Progress) -> dict:
    """Copy the pinned generation of the index in `index_dir` into the folder `dest`; returns
    what backup.json records of it."""
    say(f"{index_dir}: generation {pinned.generation}, {pinned.documents} documents, {pinned.chunks} chunks")
    files = {}
    say(f"copying {pinned.vectors_name}")
    files[pinned.vectors_name] = copy_vectors(pinned, dest / pinned.vectors_name)
    say(f"copying {DATABASE}")
    copy_database(pinned, dest / DATABASE)
    files[DATABASE] = file_sha256(dest / DATABASE)
    say(f"copying {MANIFEST}")
    with open(index_dir / MANIFEST, "rb") as fh:  # replaced whole (write_atomic), never changed in place
        files[MANIFEST] = copy_hashed(fh, dest / MANIFEST)
    manifest = read_manifest(dest)  # the copy, checked field by field and against its checksum
    if (index_dir / SOURCES).is_file():  # what the index was built from (searcher/index/sources.py)
        say(f"copying {SOURCES}")
        with open(index_dir / SOURCES, "rb") as fh:  # replaced whole (write_atomic) too
            files[SOURCES] = copy_hashed(fh, dest / SOURCES)
    return {
        "format_version": BACKUP_FORMAT, "kind": "index", "generation": pinned.generation,
        "documents": pinned.documents, "chunks": pinned.chunks, "model": manifest["model"],
        "keyword_engine": manifest.get("keyword_engine", "fts5"), "source": str(index_dir.resolve()),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "files": files,
    }


def write_backup_file(folder: Path, info: dict) -> None:
    """backup.json, with a checksum of its fields (as the manifest has); the last file a backup writes."""
    info = {**{k: v for k, v in info.items() if k != "checksum"}, "checksum": manifest_checksum(info)}
    write_atomic(Path(folder) / BACKUP_FILE, lambda tmp: tmp.write_text(json.dumps(info, indent=2)))


def report_of(info: dict, path: Path, source, started: float, restored: bool = False,
              replaced: bool = False) -> BackupReport:
    parts = [info] if info["kind"] == "index" else info["shard_info"]
    report = BackupReport(str(path), str(source), sharded=info["kind"] == "sharded", restored=restored,
                          replaced=replaced)
    report.documents, report.chunks = sum(p["documents"] for p in parts), sum(p["chunks"] for p in parts)
    if report.sharded:
        report.shards = [{"name": name, "generation": p["generation"], "documents": p["documents"],
                          "chunks": p["chunks"]} for name, p in zip(info["shards"], parts)]
    else:
        report.generation = info["generation"]
    report.bytes = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    report.seconds = time.perf_counter() - started
    return report


# -- temporary folders ----------------------------------------------------------------------------
def new_temp(final: Path, mark: str) -> Path:
    """A new temporary folder beside `final`, named for it, this process and `mark`; first the
    temporary folders that processes no longer running left there are removed."""
    clean_leftovers(final.parent)
    tmp = final.parent / f".{final.name}{mark}{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    return tmp


@contextmanager
def temp_beside(final: Path, mark: str) -> Iterator[Path]:
    """A new temporary folder beside `final` (`new_temp`), removed when what is built in it
    fails, so that a failed backup or restore leaves nothing."""
    tmp = new_temp(final, mark)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_leftovers(parent: Path) -> list[Path]:
    """Remove the temporary folders of backups and restores that were killed (their process is
    gone); returns them. One of a running process, this one's included, is left alone."""
    removed = []
    for p in Path(parent).glob(".*-tmp-*"):
        m = _TEMP.fullmatch(p.name)
        if m and p.is_dir() and not _running(int(m.group(2))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True


def publish(tmp: Path, final: Path) -> None:
    """Make the whole of `tmp` durable, then rename it to `final` (absent or an empty folder)."""
    fsync_tree(tmp)
    os.rename(tmp, final)
    fsync_dir(final.parent)


# -- reading a backup ------------------------------------------------------------------------------
def read_backup(path) -> dict:
    """The backup.json of the backup folder `path`, checked, with every file it lists present;
    BackupError saying why not (an unfinished backup, a missing or damaged file). A sharded
    backup's shards are read too (`shard_info`, in order). The files' checksums are checked
    as a restore copies them."""
    path = Path(path)
    if not path.is_dir():
        raise BackupError(f"{path} is not a backup: there is no such folder")
    bf = path / BACKUP_FILE
    if not bf.is_file():
        if BACKUP_TMP in path.name:
            raise BackupError(f"{path} is an unfinished backup (its backup was stopped before the end); it cannot "
                              f"be restored: delete it")
        raise BackupError(f"{path} is not a complete backup: it has no {BACKUP_FILE} (a backup writes it last), "
                          f"so it cannot be restored")
    try:
        info = json.loads(bf.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise BackupError(f"{bf} cannot be read ({e}): the backup is damaged") from e
    if not isinstance(info, dict):
        raise BackupError(f"{bf} is not a JSON object: the backup is damaged")
    if info.get("format_version") != BACKUP_FORMAT:
        raise BackupError(f"{bf} has backup format {info.get('format_version')!r}, this searcher reads {BACKUP_FORMAT}")
    if info.get("checksum") != manifest_checksum(info):
        raise BackupError(f"{bf} does not match its checksum: the backup is damaged")
    files = info.get("files")
    if not isinstance(files, dict) or not all(isinstance(n, str) and _PLAIN.fullmatch(n) and isinstance(h, str)
                                              for n, h in files.items()):
        raise BackupError(f"{bf}: 'files' is not a list of file names and checksums: the backup is damaged")
    kind = info.get("kind")
    if kind == "index":
        generation = info.get("generation")
        if not isinstance(generation, int) or isinstance(generation, bool):
            raise BackupError(f"{bf}: 'generation' is {generation!r}: the backup is damaged")
        wanted = (MANIFEST, DATABASE, vectors_path(path, generation).name)
    elif kind == "sharded":
        shards = info.get("shards")
        if not isinstance(shards, list) or not shards or not all(isinstance(s, str) and _PLAIN.fullmatch(s)
                                                                 for s in shards):
            raise BackupError(f"{bf}: 'shards' is {shards!r}, not a list of shard folders: the backup is damaged")
        wanted = (SHARDS_MANIFEST,)
    else:
        raise BackupError(f"{bf}: unknown kind {kind!r}: the backup is damaged")
    for name in wanted:
        if name not in files:
            raise BackupError(f"{bf} lists no {name}: the backup is damaged")
    for name in files:
        if not (path / name).is_file():
            raise BackupError(f"{path} is damaged or incomplete: its {name} is missing")
    if kind == "sharded":
        info["shard_info"] = []
        for name in info["shards"]:
            shard = read_backup(path / name)
            if shard["kind"] != "index":
                raise BackupError(f"{path / name} is not a backup of one index: the backup is damaged")
            info["shard_info"].append(shard)
    return info


# -- restoring ---------------------------------------------------------------------------------
def restore_index(backup, index_dir, force: bool = False, progress: Progress | None = None,
                  lock_folders: Iterable[Path] | None = None) -> BackupReport:
    """Restore the backup in folder `backup` as the index in folder `index_dir` (see the module
    doc): refused where an index exists unless `force`, which replaces it in one step under
    its write lock (`lock_folders`: the folders whose write locks to hold, the index's own by
    default). The result passes `check_index` before it is put in place. A sharded backup:
    searcher.cluster.backup.restore."""
    started = time.perf_counter()
    backup, index_dir = Path(backup), Path(index_dir)
    info = read_backup(backup)
    if info["kind"] != "index":
        raise BackupError(f"{backup} holds a sharded index: restore it with searcher.cluster.backup.restore "
                          f"(`searcher restore` does)")
    replace = check_target(backup, index_dir, force)
    say = progress or (lambda message: None)
    with temp_beside(index_dir, RESTORE_TMP) as tmp:
        restore_folder(backup, info, tmp, say)
        say("checking the restored index")
        report = check_index(tmp)
        if not report.ok:
            raise BackupError(f"the index restored from {backup} fails `searcher check`: " + "; ".join(report.problems))
        place(tmp, index_dir, replace, [index_dir] if lock_folders is None else lock_folders)
    say(f"restored generation {info['generation']} into {index_dir}")
    return report_of(info, index_dir, backup, started, restored=True, replaced=replace)


def check_target(backup: Path, target: Path, force: bool) -> bool:
    """Whether restoring into `target` replaces an index there (only with `force`); refuses a
    file, a folder of other files, and a target inside the backup or around it."""
    src, dst = backup.resolve(), target.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise ValueError(f"restore into a folder outside the backup {backup}, and not around it (not {target})")
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        return False
    if not target.is_dir():
        raise IndexExistsError(f"{target} exists and is not a folder; restore into a new folder")
    if not any(target.iterdir()):
        return False
    if not ((target / MANIFEST).exists() or (target / SHARDS_MANIFEST).exists()):
        raise IndexExistsError(f"{target} holds other files, not an index; restore into a new folder")
    if not force:
        raise IndexExistsError(f"an index already exists in {target}; restore into a new folder, or force it "
                               f"(`--force`) to replace that index")
    return True


def restore_folder(backup: Path, info: dict, dest: Path, say: Progress) -> None:
    """Copy one index's files from `backup` into the folder `dest`, each checked against the
    SHA-256 backup.json records; turn SQLite's WAL back on; rebuild the keyword engine's own
    files (tantivy's) from content.db."""
    for name, expected in info["files"].items():
        say(f"copying {name}")
        with open(backup / name, "rb") as fh:
            if copy_hashed(fh, dest / name) != expected:
                raise BackupError(f"{backup / name} does not match the checksum its backup recorded: the backup "
                                  f"is damaged")
    manifest = read_manifest(dest)
    store = ContentStore(dest / DATABASE)  # writable: WAL again, as an index's database is
    try:
        if store.generation != info["generation"]:
            raise BackupError(f"{backup / DATABASE} holds generation {store.generation}, its backup.json says "
                              f"{info['generation']}: the backup is damaged")
        keywords = open_keywords(dest, manifest)
        try:
            if keywords.path is not None:
                say(f"rebuilding the {keywords.name} keyword index from {DATABASE}")
                keywords.rebuild(store)
        finally:
            keywords.close()
    finally:
        store.close()


def place(tmp: Path, target: Path, replace: bool, lock_folders: Iterable[Path]) -> None:
    """Put the whole restored folder `tmp` at `target`: a rename onto nothing (or an empty
    folder), or, with `replace`, a swap with the index there under its write locks (a writer at
    work there: IndexLockedError), the old one then deleted."""
    fsync_tree(tmp)
    if not replace:
        os.rename(tmp, target)
        fsync_dir(target.parent)
        return
    aside = target.parent / f".{target.name}.replaced-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    with ExitStack() as locks:
        for folder in lock_folders:
            if Path(folder).is_dir():
                locks.enter_context(exclusive_lock(folder))
        old = replace_folder(tmp, target, aside)
    shutil.rmtree(old, ignore_errors=True)
