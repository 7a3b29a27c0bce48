"""Verify an index folder's invariants, and bring a damaged one back to a consistent state.

Invariants: the manifest reads and has its fields; SQLite opens, has its tables and passes
its integrity check (the FTS5 keyword table its own); the live generation's vectors file
exists, matches the SHA-256 recorded when it was written, and loads with the manifest's
dimension; every vector id has its chunk row and every chunk row its vector; every chunk
belongs to a document and has its keyword row; chunk ids are below the next id to hand out.

What repair guarantees: it never drops a committed document, and it leaves the index at
least as good as it found it. Vectors it cannot trust (checksum mismatch, unreadable) are
rebuilt by re-encoding every chunk's stored text; missing vectors are re-encoded; only
orphans (vectors without chunks, chunks without documents) are removed. The result is a new
generation under a number no file in the folder has, and it is checked again from scratch:
what repair could not fix is reported, never hidden. A damaged content.db is recovered with
SQLite's own `.recover` when the sqlite3 program is installed; otherwise, or for what it
loses, the only source of the documents is the user's files (rebuild with `searcher index`).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from searcher.errors import IndexCorruptError, SearcherError
from searcher.storage.folder import (DATABASE, commit_generation, exclusive_lock, finish_commit, file_sha256, leftover_files, next_generation,
                     read_manifest, remove_leftovers, vectors_path)
from searcher.encoding.encoder import get_encoder
from searcher.storage.keywords import open_keywords
from searcher.storage.store import ContentStore, readable
from searcher.storage.vectors import VectorBackend, empty_vectors, open_vectors
from searcher.index.writer import stored_chunk_input


@dataclass
class CheckReport:
    path: str
    problems: list[str] = field(default_factory=list)  # broken invariants
    notes: list[str] = field(default_factory=list)  # harmless findings
    repaired: list[str] = field(default_factory=list)
    documents: int = 0
    chunks: int = 0
    vectors: int = 0
    beyond_repair: list[str] = field(default_factory=list)  # the problems repair cannot fix (each says what can)
    salvage: bool = False  # content.db is damaged: repair salvages what SQLite's .recover reads, no more

    @property
    def ok(self) -> bool:
        return not self.problems

    def beyond(self, problem: str) -> None:
        """Report a problem `--repair` cannot fix; its text says what can."""
        self.problems.append(problem)
        self.beyond_repair.append(problem)

    def repair_hint(self) -> str | None:
        return repair_hint(len(self.problems), len(self.beyond_repair), self.salvage)

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "problems": self.problems, "notes": self.notes,
                "repaired": self.repaired, "documents": self.documents, "chunks": self.chunks,
                "vectors": self.vectors}

    def summary(self) -> str:
        head = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        lines = [f"{self.path}: {head} ({self.documents} documents, {self.chunks} chunks, {self.vectors} vectors)"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  repaired: {r}" for r in self.repaired]
        return "\n".join(lines)


def repair_hint(problems: int, beyond_repair: int, salvage: bool) -> str | None:
    """What a failed check tells the user about `--repair`: only what it can do."""
    if not problems:
        return None
    if beyond_repair == problems:
        return "`searcher check --repair` cannot fix this: the problems above say what can"
    if beyond_repair or salvage:
        return "run `searcher check --repair` to fix what it can; the problems above say what it cannot"
    return "run `searcher check --repair` to fix it"


@dataclass
class _Findings:
    """What a check found, for repair to act on."""

    store_ok: bool = False
    vectors: VectorBackend | None = None  # None: missing, unreadable or untrusted
    chunk_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    orphan_chunks: list[int] = field(default_factory=list)
    keyword_broken: bool = False
    next_id: int = 1


def check_index(path: str | Path, repair: bool = False, device: str = "auto") -> CheckReport:
    """Check the index in `path`; with `repair`, fix what is broken (takes the write lock)."""
    path = Path(path)
    report = CheckReport(str(path))
    try:
        manifest = read_manifest(path)
    except SearcherError as e:
        report.beyond(str(e))
        if repair:
            report.problems.append("repair cannot rebuild the manifest (it names the model and chunk settings); "
                                   "restore it from a backup, or build a new index from the source files")
        return report
    if not repair:
        _check(path, manifest, report, readonly=True)
        return report
    with exclusive_lock(path):
        found = _check(path, manifest, report, readonly=False)
        if not found.store_ok:
            if not _recover_database(path, report):
                return report
            report = CheckReport(str(path), repaired=report.repaired)
            found = _check(path, manifest, report, readonly=False)
            if not found.store_ok:
                return report
        stray = leftover_files(path, _live_generation(path))
        if report.problems:
            _repair(path, manifest, found, device, report)
        elif found.keyword_broken:  # only the keyword index is missing or behind
            store = ContentStore(path / DATABASE)
            try:
                _rebuild_keywords(path, manifest, store, report)
            finally:
                store.close()
        elif stray:
            remove_leftovers(path, _live_generation(path))
            report.repaired.append(f"removed {len(stray)} leftover files: {', '.join(p.name for p in stray)}")
            return report
        else:
            return report
        final = CheckReport(str(path), repaired=report.repaired)  # verify the result from scratch
        _check(path, manifest, final, readonly=True)
        if not final.ok:
            final.problems.insert(0, "repair could not fix everything; what is still wrong:")
        return final


def _live_generation(path: Path) -> int:
    store = ContentStore(path / DATABASE, readonly=True)
    try:
        return store.generation
    finally:
        store.close()


REBUILD = "its documents can only come back from their source files (`searcher index` in a new folder)"
SALVAGE = ("`--repair` salvages what SQLite's .recover can read from it (with the sqlite3 program); "
           "documents it cannot read must be indexed again from their files")


def _database_damaged(report: CheckReport, reason: str, readonly: bool) -> None:
    """content.db cannot be read: repair can salvage from it, not rebuild it (a check says so;
    a repair goes on to try)."""
    report.problems.append(f"{DATABASE} is damaged: {reason}" + (f"; {SALVAGE}" if readonly else ""))
    report.salvage = True


def _reason(e: IndexCorruptError) -> str:
    """The store's message without its advice to run `searcher check` (this is check)."""
    return str(e).split("; run `searcher check", 1)[0]


def _open_store(path: Path, report: CheckReport, readonly: bool) -> ContentStore | None:
    db = path / DATABASE
    if not db.is_file() or db.stat().st_size == 0:
        state = "empty" if db.is_file() else "missing"
        report.beyond(f"{DATABASE} is {state}: {REBUILD}" if readonly else f"{DATABASE} is {state}")
        return None
    try:
        store = ContentStore(db, readonly=readonly)
    except IndexCorruptError as e:
        _database_damaged(report, _reason(e), readonly)
        return None
    try:
        with readable(store.path):
            integrity = store.db.execute("pragma integrity_check").fetchone()[0]
    except IndexCorruptError as e:
        integrity = _reason(e)
    if integrity != "ok":
        _database_damaged(report, f"SQLite integrity check failed: {integrity}", readonly)
        store.close()
        return None
    return store


def _check(path: Path, manifest: dict, report: CheckReport, readonly: bool) -> _Findings:
    found = _Findings()
    store = _open_store(path, report, readonly)
    if store is None:
        return found
    try:
        with readable(store.path):
            _check_contents(path, manifest, store, report, found, writable=not readonly)
        found.store_ok = True
    except IndexCorruptError as e:
        _database_damaged(report, _reason(e), readonly)
    finally:
        store.close()
    return found


def _check_contents(path: Path, manifest: dict, store: ContentStore, report: CheckReport, found: _Findings,
                    writable: bool) -> None:
    generation = store.generation
    vfile = vectors_path(path, generation)
    vectors = None
    recorded = store.checksum(vfile.name)
    if not vfile.is_file():
        report.problems.append(f"{vfile.name} (live generation {generation}) is missing")
    elif recorded is not None and file_sha256(vfile) != recorded:
        report.problems.append(f"{vfile.name} (live generation {generation}) does not match its recorded "
                               f"checksum: the file is damaged, its vectors cannot be trusted")
    else:
        if recorded is None:
            report.notes.append(f"no checksum recorded for {vfile.name} (an index made before checksums); "
                                f"the next commit records one")
        try:
            vectors = open_vectors(vfile, manifest)
        except (RuntimeError, ValueError) as e:
            report.problems.append(f"{vfile.name} (live generation {generation}) is unreadable: {e}")
    if vectors is not None and vectors.dimension != manifest["dimension"]:
        report.problems.append(f"vectors have dimension {vectors.dimension}, manifest says {manifest['dimension']}")
        vectors = None

    chunk_ids = np.array(store.all_chunk_ids(), dtype=np.int64)
    vector_ids = vectors.ids() if vectors is not None else np.zeros(0, np.int64)
    report.documents, report.chunks = store.count_documents(), len(chunk_ids)
    report.vectors = len(vectors) if vectors is not None else 0
    if vectors is not None:
        if len(vector_ids) != len(vectors):
            report.problems.append(f"{len(vectors) - len(vector_ids)} vectors have an invalid id")
        if len(np.unique(vector_ids)) != len(vector_ids):
            report.problems.append("some vector ids appear more than once")
        orphan_vectors = np.setdiff1d(vector_ids, chunk_ids)
        missing_vectors = np.setdiff1d(chunk_ids, vector_ids)
        if len(orphan_vectors):
            report.problems.append(f"{len(orphan_vectors)} vectors have no chunk row")
        if len(missing_vectors):
            report.problems.append(f"{len(missing_vectors)} chunks have no vector")
    _check_rows(store, report)
    orphan_chunks = [r[0] for r in store.db.execute(
        "select id from chunks where doc_id not in (select id from documents)").fetchall()]
    if orphan_chunks:
        report.problems.append(f"{len(orphan_chunks)} chunks belong to no document")
    keywords = open_keywords(path, manifest)
    try:
        _check_keywords(keywords, store, chunk_ids, report, found, writable)
    finally:
        keywords.close()
    empty_docs = store.db.execute(
        "select count(*) from documents where id not in (select doc_id from chunks)").fetchone()[0]
    if empty_docs:
        report.notes.append(f"{empty_docs} documents have no chunks (no tokens in their text)")
    unfinished = store.db.execute(
        "select count(*) from documents where content_hash like 'unfinished:%'").fetchone()[0]
    if unfinished:
        report.notes.append(f"{unfinished} large documents were committed in part by a run that did not finish; "
                            f"indexing their files again completes them")
    next_id = store.state("next_chunk_id")
    if len(chunk_ids) and next_id <= int(chunk_ids.max()):
        report.problems.append(f"next chunk id {next_id} is not above the largest chunk id {int(chunk_ids.max())}")
    stray = leftover_files(path, generation)
    if stray:
        report.notes.append(f"leftover files from an interrupted write: {', '.join(p.name for p in stray)}")
    found.vectors, found.chunk_ids, found.orphan_chunks = vectors, chunk_ids, orphan_chunks
    found.next_id = max(next_id, int(chunk_ids.max()) + 1 if len(chunk_ids) else 1)


def _check_rows(store: ContentStore, report: CheckReport) -> None:
    """Every stored text reads as UTF-8 and every metadata as JSON (SQLite's integrity check
    sees the file's structure, not a flipped bit inside a row)."""
    bad_metadata = []
    try:
        for doc_id, metadata in store.db.execute("select id, metadata from documents"):
            try:
                json.loads(metadata or "{}")
            except ValueError:
                bad_metadata.append(doc_id)
        for _ in store.db.execute("select source, title, content_hash, text from documents"):
            pass
        for _ in store.db.execute("select doc_id, text from chunks"):
            pass
    except sqlite3.OperationalError as e:
        if "decode" not in str(e):
            raise
        report.beyond(f"{DATABASE} is damaged: a stored text is not valid UTF-8 ({e}); repair cannot "
                      f"restore it: index the document's file again")
    if bad_metadata:
        report.beyond(f"{DATABASE} is damaged: the metadata of {len(bad_metadata)} documents is not JSON "
                      f"({', '.join(map(repr, bad_metadata[:5]))}); index their files again")


def _check_keywords(keywords, store: ContentStore, chunk_ids: np.ndarray, report: CheckReport,
                    found: _Findings, writable: bool) -> None:
    """The keyword engine holds exactly the chunk ids (once its recorded changes are applied)."""
    try:
        ready = keywords.ready(store)
    except IndexCorruptError as e:
        report.problems.append(str(e))
        found.keyword_broken = True
        return
    if not ready:
        (report.notes if keywords.may_be_missing else report.problems).append(keywords.missing())
        found.keyword_broken = True
        return
    try:
        _compare_keywords(keywords, store, chunk_ids, report, found, writable)
    except IndexCorruptError as e:  # the engine's own files (tantivy's), not content.db
        report.problems.append(str(e))
        found.keyword_broken = True


def _compare_keywords(keywords, store: ContentStore, chunk_ids: np.ndarray, report: CheckReport,
                      found: _Findings, writable: bool) -> None:
    waiting = keywords.pending(store)
    if waiting:  # a writer was stopped between its SQLite commit and tantivy's: replayed on open
        report.notes.append(f"{waiting} keyword changes are committed but not yet applied to {keywords.name} "
                            "(the next open or write applies them; --repair does now)")
        found.keyword_broken = True
        return
    keyword_ids = np.array(keywords.ids(store), dtype=np.int64)
    if len(keyword_ids) != len(chunk_ids) or not np.array_equal(keyword_ids, chunk_ids):
        found.keyword_broken = True
        report.problems.append(
            f"the keyword index ({keywords.name}) disagrees with the chunks "
            f"({len(np.setdiff1d(chunk_ids, keyword_ids))} chunks missing, "
            f"{len(np.setdiff1d(keyword_ids, chunk_ids))} entries without a chunk)")
        return
    problems = keywords.problems(store, writable)
    if problems:
        found.keyword_broken = True
        report.problems.extend(problems)


def _repair(path: Path, manifest: dict, found: _Findings, device: str, report: CheckReport) -> None:
    """Write a consistent new generation: trusted vectors kept, the rest re-encoded."""
    store = ContentStore(path / DATABASE)  # writable: also adds a missing checksums table
    try:
        orphan_chunks = set(found.orphan_chunks)
        wanted = np.array([c for c in found.chunk_ids if int(c) not in orphan_chunks], dtype=np.int64)
        vectors = found.vectors
        try:
            ids, vecs = vectors.export() if vectors is not None else (np.zeros(0, np.int64), None)
        except ValueError:
            # Codes only (FAISS ivfpq): no exact vectors to rebuild from, so fix this index in place.
            have = vectors.ids()
            removed = vectors.remove(np.setdiff1d(have, wanted))
            missing = np.setdiff1d(wanted, have)
            vectors.add(missing, _encode_chunks(store, manifest, missing, device))
            kept = len(wanted) - len(missing)
        else:
            ids, first = np.unique(ids, return_index=True)
            keep = np.isin(ids, wanted)
            removed = (len(vectors) if vectors is not None else 0) - int(keep.sum())
            ids = ids[keep]
            vecs = vecs[first][keep] if vecs is not None else np.zeros((0, manifest["dimension"]), np.float32)
            missing = np.setdiff1d(wanted, ids)
            vectors = empty_vectors(manifest)
            vectors.add(np.concatenate([ids, missing]),
                        np.concatenate([vecs, _encode_chunks(store, manifest, missing, device)]))
            kept = len(ids)
        vectors = vectors.prepare_commit(manifest)  # planned for its size, with the manifest's search parameters
        if len(missing):
            report.repaired.append(f"re-encoded {len(missing)} chunks from their stored text (kept {kept} vectors)")
        if removed:
            report.repaired.append(f"removed {removed} vectors that had no chunk or an invalid id")
        keywords = open_keywords(path, manifest)
        try:
            try:
                keywords.prepare(store)  # an older index gets its keyword table here
            except IndexCorruptError:
                found.keyword_broken = True  # rebuilt below, once the chunks are right
            stray = leftover_files(path, next_generation(path, store.generation))
            generation = commit_generation(path, store, store.generation, vectors, keywords,
                                           next_chunk_id=found.next_id, delete_chunk_ids=found.orphan_chunks)
            finish_commit(path, store, generation, keywords)
        finally:
            keywords.close()
        if found.orphan_chunks:
            report.repaired.append(f"removed {len(found.orphan_chunks)} chunks that belonged to no document")
        if found.keyword_broken:
            _rebuild_keywords(path, manifest, store, report)
        report.repaired.append(f"wrote a consistent generation {generation}"
                               + (f" and removed {len(stray)} older or leftover files" if stray else ""))
    finally:
        store.close()


def _rebuild_keywords(path: Path, manifest: dict, store: ContentStore, report: CheckReport) -> None:
    keywords = open_keywords(path, manifest)
    try:
        keywords.rebuild(store)
    finally:
        keywords.close()
    report.repaired.append(f"rebuilt the keyword index ({keywords.name}) from the chunks")


def _encode_chunks(store: ContentStore, manifest: dict, chunk_ids: np.ndarray, device: str) -> np.ndarray:
    """Vectors for stored chunks, from their text and their document's title, as indexing made them."""
    if not len(chunk_ids):
        return np.zeros((0, manifest["dimension"]), np.float32)
    encoder = get_encoder(manifest["model"], device, manifest["pooling"])
    if encoder.fingerprint != manifest["model_fingerprint"]:
        raise SearcherError("cannot re-encode: the model differs from the one the index was built with")
    chunks = store.chunks([int(c) for c in chunk_ids])
    titles = {d: doc["title"] for d, doc in store.documents(list({c.doc_id for c in chunks.values()})).items()}
    budget = manifest["chunk_tokens"] - encoder.tokenizer.num_special_tokens_to_add(pair=False)
    return encoder.encode_ids([stored_chunk_input(encoder, titles.get(chunks[int(c)].doc_id), chunks[int(c)].text, budget,
                                                  manifest.get("document_prefix", ""))
                               for c in chunk_ids])


def _recover_database(path: Path, report: CheckReport) -> bool:
    """Replace a damaged content.db by what SQLite's `.recover` salvages from it (the damaged
    file is kept beside it); False, with the reason in the report, when that cannot be done."""
    db = path / DATABASE
    rebuild = ("the documents it held can only come back from their source files: move this folder "
               "aside and run `searcher index` on them again")
    sqlite = shutil.which("sqlite3")
    if not db.is_file() or db.stat().st_size == 0:
        report.problems.append(f"{DATABASE} is missing or empty, so nothing can be recovered from it; {rebuild}")
        return False
    if sqlite is None:
        report.problems.append(f"cannot recover {DATABASE} here: SQLite's `.recover` needs the sqlite3 program "
                               f"(apt-get install sqlite3); otherwise {rebuild}")
        return False
    recovered = path / f".{DATABASE}.recovered"
    recovered.unlink(missing_ok=True)
    try:
        dump = subprocess.run([sqlite, str(db), ".recover"], capture_output=True, check=True, timeout=3600).stdout
        subprocess.run([sqlite, str(recovered)], input=dump, capture_output=True, check=True, timeout=3600)
        probe = ContentStore(recovered, readonly=True)
        probe.close()
    except (subprocess.SubprocessError, OSError, IndexCorruptError) as e:
        recovered.unlink(missing_ok=True)
        report.problems.append(f"SQLite's .recover could not salvage {DATABASE} ({e}); {rebuild}")
        return False
    kept = path / f"{DATABASE}.damaged-{datetime.now().strftime('%Y%m%dT%H%M%S')}"
    db.rename(kept)
    for suffix in ("-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    recovered.rename(db)
    report.repaired.append(f"recovered {DATABASE} with SQLite's .recover (the damaged file is kept as {kept.name}); "
                           f"documents whose rows were lost must be indexed again from their files")
    return True
