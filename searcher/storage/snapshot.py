"""One committed generation of an index folder held still while writers go on: what a backup
copies (searcher/index/backup.py).

`pin_generation` opens a read transaction on content.db (in WAL mode it sees one commit, whatever
commits after it) and, inside it, opens that generation's vectors file. A commit that lands
meanwhile removes the old vectors file from the folder (folder.remove_leftovers), but a file
that is open stays readable until it is closed, so the pair cannot be taken away. No lock is
taken: a writer holds the folder's write lock for a whole run of writes, and a backup must not
wait for it, nor stop it.

The vectors file is copied with its SHA-256 computed as it is read and compared with the one the
pinned transaction records; content.db through SQLite's online backup API on the pinned
connection, so the copy is that same generation (SQLite copies the pages the transaction sees).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from searcher.errors import IndexCorruptError
from searcher.storage.files import fsync_dir
from searcher.storage.folder import DATABASE, vectors_path
from searcher.storage.store import CHECKSUMS, readable

BLOCK = 1 << 20
PIN_ATTEMPTS = 50  # each lost only to a commit between reading the generation and opening its file


@dataclass
class Pinned:
    """A generation held still: `conn` is in a read transaction that sees it, `vectors` its open file."""

    folder: Path
    generation: int
    checksum: str | None  # the SHA-256 recorded for its vectors file (None: an index from before checksums)
    documents: int
    chunks: int
    conn: sqlite3.Connection
    vectors: BinaryIO

    @property
    def vectors_name(self) -> str:
        return vectors_path(self.folder, self.generation).name

    def close(self) -> None:
        try:
            self.vectors.close()
        finally:
            try:
                self.conn.rollback()
            finally:
                self.conn.close()

    def __enter__(self) -> "Pinned":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pin_generation(folder: Path) -> Pinned:
    """Hold the live generation of the index in `folder` (see the module doc). IndexCorruptError
    when its vectors file is missing while no commit moves the generation on."""
    folder = Path(folder)
    db = folder / DATABASE
    if not db.is_file():
        raise IndexCorruptError(f"{db} is missing; run `searcher check --index {folder}`")
    for _ in range(PIN_ATTEMPTS):
        with readable(db):
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 10000")
                conn.execute("BEGIN")  # the first read below fixes what the transaction sees
                generation = int(conn.execute("select value from state where key = 'generation'").fetchone()[0])
                _, documents, chunks, checksum = _state(conn, vectors_path(folder, generation).name)
            except BaseException:
                conn.close()
                raise
        try:
            fh = open(vectors_path(folder, generation), "rb")
        except FileNotFoundError:
            conn.close()
            time.sleep(0.02)  # a commit moved the generation on and removed this file: read again
            continue
        except BaseException:
            conn.close()
            raise
        return Pinned(folder, generation, checksum, documents, chunks, conn, fh)
    raise IndexCorruptError(
        f"{vectors_path(folder, generation)} (live generation {generation}) is missing; "
        f"run `searcher check --index {folder}`")


def copy_vectors(pinned: Pinned, dest: Path) -> str:
    """Copy the pinned vectors file to `dest` (fsynced), checking it against the recorded
    SHA-256 as it is read; returns the SHA-256. IndexCorruptError when it does not match."""
    digest = copy_hashed(pinned.vectors, dest)
    if pinned.checksum is not None and digest != pinned.checksum:
        raise IndexCorruptError(
            f"{pinned.folder / pinned.vectors_name} does not match the checksum recorded when it was written "
            f"(the file is damaged); run `searcher check --repair --index {pinned.folder}` before backing it up")
    return digest


def copy_database(pinned: Pinned, dest: Path) -> None:
    """Copy content.db as the pinned transaction sees it to the new file `dest`, through SQLite's
    online backup API (one step, on the pinned connection), as one self-contained file (rollback
    journal: no -wal beside it; a restore turns WAL back on), fsynced. The copy is read back:
    IndexCorruptError unless it holds the pinned generation, its counts and its checksum."""
    if dest.exists():
        raise FileExistsError(dest)
    target = sqlite3.connect(str(dest), isolation_level=None)
    try:
        with readable(pinned.folder / DATABASE):
            pinned.conn.backup(target)
        target.execute("PRAGMA journal_mode = DELETE")
        copied = _state(target, pinned.vectors_name)
    finally:
        target.close()
    fsync_file(dest)
    expected = (pinned.generation, pinned.documents, pinned.chunks, pinned.checksum)
    if copied != expected:
        raise IndexCorruptError(f"the copy of {pinned.folder / DATABASE} holds (generation, documents, chunks, "
                                f"checksum) {copied}, not the pinned {expected}")


def _state(conn: sqlite3.Connection, vectors_name: str) -> tuple[int, int, int, str | None]:
    """(generation, documents, chunks, SHA-256 recorded for `vectors_name`) as `conn` sees them."""
    generation = int(conn.execute("select value from state where key = 'generation'").fetchone()[0])
    documents = conn.execute("select count(*) from documents").fetchone()[0]
    chunks = conn.execute("select count(*) from chunks").fetchone()[0]
    row = None
    if conn.execute("select 1 from sqlite_master where name = ?", [CHECKSUMS]).fetchone():
        row = conn.execute(f"select sha256 from [{CHECKSUMS}] where name = ?", [vectors_name]).fetchone()
    return generation, documents, chunks, row[0] if row else None


def copy_hashed(source: BinaryIO, dest: Path) -> str:
    """Copy an open file to the new file `dest` in blocks, fsynced; returns its SHA-256."""
    digest = hashlib.sha256()
    with open(dest, "xb") as out:
        for block in iter(lambda: source.read(BLOCK), b""):
            digest.update(block)
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def fsync_tree(root: Path) -> None:
    """fsync every file and folder under `root` (before a rename makes it whole)."""
    root = Path(root)
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fsync_file(Path(folder) / name)
        fsync_dir(Path(folder))
