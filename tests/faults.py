"""Disk-fault injection for tests: make one step of a commit fail as a full or failing disk does.

`inject(monkeypatch, step, code, index)` wraps the exact call a step makes and makes it fail
with `OSError(code)` (or SQLite's own error) while the fault is armed; `fault.clear()` takes it
away, as freeing space does. Steps (what fails, and how):

    vectors.write     faiss.write_index of the temporary vectors file: half the file written, then OSError
    vectors.faiss     the same, as FAISS itself reports it: a RuntimeError that has lost the errno
    vectors.fsync     os.fsync of the temporary vectors file
    vectors.rename    os.replace of the temporary vectors file onto vectors.<g>.faiss
    vectors.dirsync   os.fsync of the index folder after that rename
    sqlite.full       SQLite's real SQLITE_FULL: PRAGMA max_page_count caps content.db at its size
    sqlite.error      SQLITE_FULL / SQLITE_IOERR raised inside the commit's transaction (after its rows)
    manifest.write    Path.write_text of the temporary manifest (half written, then OSError)
    manifest.fsync    os.fsync of the temporary manifest
    manifest.rename   os.replace of the temporary manifest onto manifest.json
    tantivy.commit    tantivy's IndexWriter.commit, with tantivy's own message for the errno

Calls that do not belong to the step pass through untouched, so everything else the test does
(reading, SQLite, other files) works as usual.
"""

from __future__ import annotations

import errno
import os
import pathlib
import sqlite3
from pathlib import Path

import faiss

from searcher.storage.keywords.tantivy_engine import TantivyEngine

STEPS = ("vectors.write", "vectors.faiss", "vectors.fsync", "vectors.rename", "vectors.dirsync",
         "sqlite.full", "sqlite.error", "manifest.write", "manifest.fsync", "manifest.rename", "tantivy.commit")
ERRNOS = {errno.ENOSPC: "ENOSPC", errno.EIO: "EIO"}
_TANTIVY_OS_ERROR = {errno.ENOSPC: "No space left on device (os error 28)", errno.EIO: "Input/output error (os error 5)"}


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class Fault:
    """One armed fault; `fired` counts the calls it failed."""

    def __init__(self, step: str, code: int, folder: Path):
        self.step, self.code, self.folder = step, code, Path(folder).resolve()
        self.armed, self.fired = True, 0
        self._clear_hooks: list = []

    def error(self, filename=None) -> OSError:
        self.fired += 1
        return OSError(self.code, os.strerror(self.code), None if filename is None else str(filename))

    def hits(self, path, prefix: str) -> bool:
        path = Path(path)
        return self.armed and path.name.startswith(prefix) and path.parent.resolve() == self.folder

    def clear(self) -> None:
        """The disk is fine again."""
        self.armed = False
        for hook in self._clear_hooks:
            hook()


def inject(monkeypatch, step: str, code: int, index) -> Fault:
    """Arm `step` to fail with `code` for the index (a searcher.Index) in its folder."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}")
    fault = Fault(step, code, index.path)
    prefix = ".manifest.json.tmp-" if step.startswith("manifest.") else ".vectors."

    if step in ("vectors.write", "vectors.faiss"):
        real = faiss.write_index

        def write_index(idx, path, *rest):
            if not fault.hits(path, prefix):
                return real(idx, path, *rest)
            real(idx, path, *rest)
            with open(path, "r+b") as fh:  # a write that stopped half-way
                fh.truncate(os.path.getsize(path) // 2)
            if step == "vectors.faiss":
                fault.fired += 1
                raise RuntimeError(f"Error in void faiss::write_index(const Index*, IOWriter*, int) at "
                                   f"/project/faiss/impl/index_write.cpp:499: Error: 'ret == (size * 4)' "
                                   f"failed: write error in {path}")
            raise fault.error(path)

        monkeypatch.setattr(faiss, "write_index", write_index)
    elif step in ("vectors.fsync", "manifest.fsync", "vectors.dirsync"):
        real_fsync = os.fsync

        def fsync(fd):
            target = _fd_path(fd)
            if step == "vectors.dirsync":
                hit = fault.armed and target and Path(target).resolve() == fault.folder and os.path.isdir(target)
            else:
                hit = target and fault.hits(target, prefix)
            if hit:
                raise fault.error(target)
            return real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)
    elif step in ("vectors.rename", "manifest.rename"):
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            if fault.hits(src, prefix):
                raise fault.error(dst)
            return real_replace(src, dst, *a, **k)

        monkeypatch.setattr(os, "replace", replace)
    elif step == "manifest.write":
        real_write_text = pathlib.Path.write_text

        def write_text(self, data, *a, **k):
            if fault.hits(self, prefix):
                real_write_text(self, data[: len(data) // 2], *a, **k)
                raise fault.error(self)
            return real_write_text(self, data, *a, **k)

        monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    elif step == "sqlite.full":
        if code != errno.ENOSPC:
            raise ValueError("sqlite.full is SQLITE_FULL: ENOSPC only")
        conn = index.live.writable_store().db.conn
        pages = conn.execute("pragma page_count").fetchone()[0]
        conn.execute(f"pragma max_page_count = {pages}")
        fault._clear_hooks.append(lambda: conn.execute("pragma max_page_count = 4294967294"))
    elif step == "sqlite.error":
        engine = index.keywords
        real_record = engine.record

        def record(store, added, removed):
            real_record(store, added, removed)  # the rows are in: the rollback has work to do
            if fault.armed:
                fault.fired += 1
                full = code == errno.ENOSPC
                e = sqlite3.OperationalError("database or disk is full" if full else "disk I/O error")
                e.sqlite_errorcode, e.sqlite_errorname = (13, "SQLITE_FULL") if full else (10, "SQLITE_IOERR")
                raise e

        monkeypatch.setattr(engine, "record", record)
    elif step == "tantivy.commit":
        engine = index.keywords
        if not isinstance(engine, TantivyEngine):
            raise ValueError("tantivy.commit needs a tantivy index")
        real_open = engine._open

        class Writer:
            def __init__(self, writer):
                self._writer = writer

            def __getattr__(self, name):
                return getattr(self._writer, name)

            def commit(self):
                if fault.armed:
                    fault.fired += 1
                    writer, self._writer = self._writer, None  # as tantivy's writer is dropped: its lock goes
                    writer.rollback()
                    del writer
                    raise ValueError(f"An IO error occurred: '{_TANTIVY_OS_ERROR[code]}'")
                return self._writer.commit()

        class TantivyIndex:
            def __init__(self, index):
                self._index = index

            def __getattr__(self, name):
                return getattr(self._index, name)

            def writer(self, *a, **k):
                return Writer(self._index.writer(*a, **k))

        def open_(create: bool = False):
            found = real_open(create)
            return None if found is None else TantivyIndex(found)

        monkeypatch.setattr(engine, "_open", open_)
    return fault
