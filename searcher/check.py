"""Verify an index folder's invariants, and bring a damaged one back to a consistent state.

Invariants: the manifest reads; SQLite passes its integrity check; the vectors file of the
live generation exists and loads with the manifest's dimension; every vector id has its
chunk row and every chunk row its vector; every chunk belongs to a document and has its keyword row; chunk ids are
below the next id to hand out. Repair never drops a committed document: missing vectors
are re-encoded from the stored chunk text, and only orphans (vectors without chunks,
chunks without documents) are removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .index import (DATABASE, SearcherError, _exclusive_lock, get_encoder, read_manifest,
                    title_token_ids, vectors_path)
from .store import ContentStore
from .vectors import FaissVectorIndex, plan


@dataclass
class CheckReport:
    path: str
    problems: list[str] = field(default_factory=list)  # broken invariants
    notes: list[str] = field(default_factory=list)  # harmless findings
    repaired: list[str] = field(default_factory=list)
    documents: int = 0
    chunks: int = 0
    vectors: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

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


def check_index(path: str | Path, repair: bool = False, device: str = "auto") -> CheckReport:
    """Check the index in `path`; with `repair`, fix what is broken (takes the write lock)."""
    path = Path(path)
    report = CheckReport(str(path))
    try:
        manifest = read_manifest(path)
    except SearcherError as e:
        report.problems.append(str(e))
        return report
    if not (path / DATABASE).is_file():
        report.problems.append(f"{DATABASE} is missing")
        return report
    if repair:
        with _exclusive_lock(path):
            _check(path, manifest, report, device, repair=True)
            if report.repaired:  # verify the result from scratch
                final = CheckReport(str(path), repaired=report.repaired)
                _check(path, manifest, final, device, repair=False)
                return final
            return report
    _check(path, manifest, report, device, repair=False)
    return report


def _check(path: Path, manifest: dict, report: CheckReport, device: str, repair: bool) -> None:
    store = ContentStore(path / DATABASE, readonly=not repair)
    try:
        integrity = store.db.execute("pragma integrity_check").fetchone()[0]
        if integrity != "ok":
            report.problems.append(f"SQLite integrity check failed: {integrity}")
            return
        generation = store.generation
        vfile = vectors_path(path, generation)
        vectors = None
        try:
            vectors = FaissVectorIndex.load(vfile, manifest["index_factory"])
        except RuntimeError as e:
            report.problems.append(f"{vfile.name} (live generation {generation}) is missing or unreadable: {e}")
        if vectors is not None and vectors.dimension != manifest["dimension"]:
            report.problems.append(f"vectors have dimension {vectors.dimension}, manifest says {manifest['dimension']}")
            vectors = None

        chunk_ids = np.array(store.all_chunk_ids(), dtype=np.int64)
        vector_ids = vectors.ids() if vectors is not None else np.zeros(0, np.int64)
        report.documents, report.chunks, report.vectors = store.count_documents(), len(chunk_ids), len(vector_ids)
        if len(np.unique(vector_ids)) != len(vector_ids):
            report.problems.append("some vector ids appear more than once")
        orphan_vectors = np.setdiff1d(vector_ids, chunk_ids)
        missing_vectors = np.setdiff1d(chunk_ids, vector_ids) if vectors is not None else chunk_ids
        if len(orphan_vectors):
            report.problems.append(f"{len(orphan_vectors)} vectors have no chunk row")
        if vectors is not None and len(missing_vectors):
            report.problems.append(f"{len(missing_vectors)} chunks have no vector")
        orphan_chunks = [r[0] for r in store.db.execute(
            "select id from chunks where doc_id not in (select id from documents)").fetchall()]
        if orphan_chunks:
            report.problems.append(f"{len(orphan_chunks)} chunks belong to no document")
        keyword_broken = False
        if store.has_keyword_table:
            keyword_ids = np.array(store.keyword_chunk_ids(), dtype=np.int64)
            if len(keyword_ids) != len(chunk_ids) or not np.array_equal(keyword_ids, chunk_ids):
                keyword_broken = True
                report.problems.append(
                    f"the keyword table disagrees with the chunks ({len(np.setdiff1d(chunk_ids, keyword_ids))} "
                    f"chunks missing, {len(np.setdiff1d(keyword_ids, chunk_ids))} rows without a chunk)")
        else:
            report.notes.append("no keyword table (an older index): keyword and hybrid search need it; "
                                "opening the index for writing adds it")
        empty_docs = store.db.execute(
            "select count(*) from documents where id not in (select doc_id from chunks)").fetchone()[0]
        if empty_docs:
            report.notes.append(f"{empty_docs} documents have no chunks (no tokens in their text)")
        next_id = store.state("next_chunk_id")
        if len(chunk_ids) and next_id <= int(chunk_ids.max()):
            report.problems.append(f"next chunk id {next_id} is not above the largest chunk id {int(chunk_ids.max())}")
        stray = [p.name for p in path.glob("vectors.*.faiss") if p != vfile] + [p.name for p in path.glob(".*.tmp-*")]
        if stray:
            report.notes.append(f"leftover files from an interrupted write: {', '.join(sorted(stray))}")

        if not repair or not (report.problems or stray):
            return
        if vectors is None:
            index_type = manifest.get("index_type", "flat")
            vectors = FaissVectorIndex.create(manifest["dimension"], plan(index_type, 0, manifest["dimension"]))
            missing_vectors = chunk_ids
        _repair(path, manifest, store, vectors, orphan_vectors, missing_vectors, orphan_chunks,
                max(next_id, int(chunk_ids.max()) + 1 if len(chunk_ids) else 1), device, report)
        if keyword_broken or orphan_chunks:
            store.rebuild_keyword_table()
            report.repaired.append("rebuilt the keyword table from the chunks")
        for name in stray:
            (path / name).unlink(missing_ok=True)
        if stray:
            report.repaired.append(f"removed {len(stray)} leftover files")
    finally:
        store.close()


def _repair(path, manifest, store, vectors, orphan_vectors, missing_vectors, orphan_chunks, next_id, device, report):
    orphan_chunks_set = set(orphan_chunks)
    vectors.remove(np.concatenate([orphan_vectors, np.array(orphan_chunks, dtype=np.int64)]))
    to_encode = [int(c) for c in missing_vectors if int(c) not in orphan_chunks_set]
    if to_encode:
        encoder = get_encoder(manifest["model"], device, manifest["pooling"])
        if encoder.fingerprint != manifest["model_fingerprint"]:
            raise SearcherError("cannot re-encode: the model differs from the one the index was built with")
        chunks = store.chunks(to_encode)
        titles = {d: doc["title"] for d, doc in store.documents(list({c.doc_id for c in chunks.values()})).items()}
        budget = manifest["chunk_tokens"] - encoder.tokenizer.num_special_tokens_to_add(pair=False)
        tok = encoder.tokenizer
        inputs = []
        for cid in to_encode:
            chunk = chunks[cid]
            title_ids = title_token_ids(tok, titles.get(chunk.doc_id) or "", budget)
            ids = tok(chunk.text, add_special_tokens=False)["input_ids"]
            inputs.append(encoder.with_special_tokens((title_ids + ids)[: budget]))
        vectors.add(np.array(to_encode, dtype=np.int64), encoder.encode_ids(inputs))
        report.repaired.append(f"re-encoded {len(to_encode)} chunks that had no vector")
    if len(orphan_vectors):
        report.repaired.append(f"removed {len(orphan_vectors)} vectors that had no chunk")
    # e.g. train an ivf index rebuilt from scratch
    vectors = vectors.replan(manifest.get("index_type", "flat"), manifest.get("search_params"))
    generation = store.generation + 1
    vectors.save(vectors_path(path, generation))
    with store.db.atomic():
        for i in range(0, len(orphan_chunks), 500):
            part = orphan_chunks[i : i + 500]
            store.db.execute(f"delete from chunks where id in ({','.join('?' * len(part))})", part)
        store.db["state"].upsert_all(
            [{"key": "generation", "value": generation}, {"key": "next_chunk_id", "value": next_id}], pk="key")
    if orphan_chunks:
        report.repaired.append(f"removed {len(orphan_chunks)} chunks that belonged to no document")
    for old in path.glob("vectors.*.faiss"):
        if old.name != vectors_path(path, generation).name:
            old.unlink(missing_ok=True)
    report.repaired.append(f"wrote a consistent generation {generation}")
