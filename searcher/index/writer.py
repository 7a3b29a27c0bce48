"""Writing: documents in, chunked, encoded and committed in batches.

`Writer` stages added and deleted documents, chunks them, encodes the chunks in batches and
hands each batch of changes (`Changes`) to `apply`, which the Index provides: it changes the
vectors and commits the generation (searcher/storage/folder.py). Encoding runs outside the Index's
search lock, so searches in other threads go on while a write encodes.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np

from searcher.encoding.chunker import Chunker
from searcher.readers.documents import page_starts
from searcher.readers.loaders import FILE_KEYS, LOCATION_KEYS, SOURCE_KEYS, clean_document
from searcher.readers.documents import READERS, Document, Skipped, with_readers
from searcher.sanitize import clean_text, document_id, is_blank
from searcher.storage.store import ContentStore

ON_CONFLICT = ("skip", "replace")
COMMIT_CHUNKS = 4096  # chunks per commit: a kill loses at most this much encoding
# Staged chunks handed to the encoding thread at a time: reading, chunking and hashing the next
# documents go on while these are encoded (benchmarks/index_profile.py), instead of waiting
# for the commit's whole batch to be staged first.
ENCODE_AHEAD = 256


@dataclass
class Changes:
    """One commit's worth: document rows, chunk rows, deleted document ids, the new chunks'
    ids and vectors, and the next chunk id to hand out."""

    docs: list[dict]
    chunks: list[dict]
    delete_ids: list[str]
    ids: np.ndarray
    vectors: np.ndarray | None
    next_chunk_id: int


@dataclass
class IndexReport:
    """What one indexing run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    tokens: int = 0
    pages: int = 0  # of the paged documents (PDF pages, slides) indexed
    skipped: list[Skipped] = field(default_factory=list)
    replaced: list[Skipped] = field(default_factory=list)  # conflicts resolved by on_conflict="replace"
    seconds: float = 0.0
    generation: int | None = None  # the index's generation once the run was done (its last commit's)

    def merge(self, other: "IndexReport") -> "IndexReport":
        """This report plus another run's (for one summary of several runs)."""
        for name in ("added", "updated", "unchanged", "removed", "chunks", "tokens", "pages", "seconds"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.generation = other.generation if other.generation is not None else self.generation
        self.skipped += other.skipped
        self.replaced += other.replaced
        return self

    @property
    def indexed(self) -> int:
        return self.added + self.updated

    def summary(self) -> str:
        rate = self.indexed / self.seconds if self.seconds else 0.0
        lines = [
            f"{self.indexed} documents indexed ({self.added} added, {self.updated} updated, "
            f"{self.unchanged} unchanged, {self.removed} removed), {self.chunks} chunks, "
            f"{self.tokens} tokens in {self.seconds:.1f}s ({rate:.1f} documents/s)"
            + (f"; {self.pages} pages ({self.pages / self.seconds:.1f} pages/s)" if self.pages and self.seconds else ""),
        ]
        if self.skipped:
            lines.append(f"{len(self.skipped)} skipped:")
            lines.extend(f"  {s}" for s in self.skipped)
        if self.replaced:
            lines.append(f"{len(self.replaced)} replaced a document from another source:")
            lines.extend(f"  {s}" for s in self.replaced)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
            "removed": self.removed, "chunks": self.chunks, "tokens": self.tokens, "pages": self.pages,
            "seconds": round(self.seconds, 3), "generation": self.generation,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "replaced": [{"path": s.path, "reason": s.reason} for s in self.replaced],
        }


def content_hash(doc: Document) -> str:
    """What decides whether a document must be encoded again: title, text and metadata, less
    where its row sits in its file (a line added above it must not re-encode it) and the
    file's own facts (touching a file must not either), and its readers (who may read it is
    not what it says: a change of readers rewrites the stored row, not the vectors)."""
    metadata = {k: v for k, v in doc.metadata.items() if k not in LOCATION_KEYS and k not in FILE_KEYS
                and k not in SOURCE_KEYS and k != READERS}
    payload = json.dumps([doc.title, doc.text, metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()



def as_documents(items: Iterable, report: IndexReport) -> Iterator[Document]:
    """The documents among `items` (Documents, or dicts with id and text); a reader's Skipped
    and anything that cannot be a document go into `report` with the reason."""
    for item in items:
        if isinstance(item, Skipped):
            report.skipped.append(item)
            continue
        try:
            yield as_document(item)
        except (TypeError, ValueError) as e:
            report.skipped.append(Skipped(_describe(item), str(e)))


def check_additions(documents, on_conflict: str) -> None:
    """The checks of add_documents' arguments, for a single index and a sharded one alike."""
    if on_conflict not in ON_CONFLICT:
        raise ValueError(f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {on_conflict!r}")
    if isinstance(documents, (str, bytes, dict, Document)):
        raise TypeError("add_documents takes a list (or other iterable) of documents, not one document")


def as_document(item: Document | dict) -> Document:
    """Accept Document objects or plain dicts ({"id", "text", "title"?, "source"?, "metadata"?,
    other keys: metadata}); strings are cleaned and metadata made valid JSON (searcher/sanitize.py).
    ValueError/TypeError with the reason for anything that cannot be a document."""
    extra: dict = {}
    if isinstance(item, Document):
        doc_id, text, title, source, metadata = item.id, item.text, item.title, item.source, item.metadata
    elif isinstance(item, dict):
        extra = dict(item)
        doc_id = extra.pop("id", None)
        if doc_id is None:
            doc_id = extra.pop("_id", None)
        text = extra.pop("text", None)
        title = extra.pop("title", "") or ""
        source = extra.pop("source", "") or ""
        metadata = extra.pop("metadata", None)
        if metadata is None:
            metadata = {}
    else:
        raise TypeError(f"a document must be a dict or Document, not {type(item).__name__}")
    if doc_id is None or not str(doc_id).strip():
        raise ValueError(f"document has no id: {str(item)[:80]}")
    if not isinstance(text, str):
        raise ValueError(f"document {doc_id!r} has no text (a string)")
    if not isinstance(metadata, dict):
        raise ValueError(f"document {doc_id!r}: metadata must be a dict, not {type(metadata).__name__}")
    try:
        return clean_document(Document(id=document_id(doc_id), text=text, title=str(title), source=str(source),
                                       metadata=with_readers({**metadata, **extra})))
    except ValueError as e:  # metadata nested too deep, readers malformed
        raise ValueError(f"document {document_id(doc_id)[:200]!r}: {e}") from None



def keep_readers(doc: Document, old: dict | None) -> None:
    """A document's readers as stored (docs/access.md): its own, or, where it names none, those
    it had (a run without --readers, a watcher, a row without the field never opens a document
    to every key); [] (`"readers": []`, `--readers everyone`) drops them."""
    if READERS not in doc.metadata:
        if old is not None and (old.get("metadata") or {}).get(READERS):
            doc.metadata = {**doc.metadata, READERS: old["metadata"][READERS]}
    elif not doc.metadata[READERS]:
        doc.metadata = {k: v for k, v in doc.metadata.items() if k != READERS}


def bound_chunks(items: Iterable, chunker: Chunker, max_chunks: int | None, timeout: float | None,
                 prefix_ids: Sequence[int] = ()) -> Iterator:
    """`items` (a reader's Documents and Skipped), less the documents that would make more than
    `max_chunks` chunks or whose chunking takes over `timeout` seconds: each of those becomes a
    Skipped with the reason, before any of its chunks is encoded (so neither the encoder's time
    nor the index's size grows without bound with one file; `--max-file-chunks`, `--file-timeout`).
    A document is counted by chunking it as the writer will (the prefix and its title's tokens
    reserved), unless its length alone shows it cannot be over: a chunk moves on by at least
    one token, and a character makes at most 4 tokens."""
    for item in items:
        if (max_chunks is None or not isinstance(item, Document) or is_blank(item.text)
                or 4 * len(item.text) <= max_chunks):
            yield item
            continue
        reason = over_chunk_bound(item, chunker, max_chunks, timeout, prefix_ids)
        yield item if reason is None else Skipped(doc_location(item), reason)


def over_chunk_bound(doc: Document, chunker: Chunker, max_chunks: int, timeout: float | None,
                     prefix_ids: Sequence[int] = ()) -> str | None:
    """Why `doc` is over the bounds of `bound_chunks`, or None when it is within them."""
    reserved = len(prefix_ids) + len(title_token_ids(chunker.tokenizer, doc.title, chunker.budget))
    starts = page_starts(doc.metadata, len(doc.text))
    chunks = (chunker.iter_split_sections(doc.text, starts, reserved=reserved)
              if starts else chunker.iter_split(doc.text, reserved=reserved))
    started = time.monotonic()
    for count, _ in enumerate(chunks, 1):
        if count > max_chunks:
            return (f"more than {max_chunks} chunks (--max-file-chunks; {len(doc.text)} characters of text); "
                    f"skipped before encoding")
        if timeout is not None and count % 64 == 0 and time.monotonic() - started > timeout:
            return f"chunking took over {timeout:g} s (--file-timeout; {count} chunks so far); skipped before encoding"
    return None


def doc_location(doc: Document) -> str:
    """Where a document was read: its file and line/row for JSON Lines and CSV, else its source or id."""
    place = doc.metadata.get("line", doc.metadata.get("row"))
    if doc.source and place is not None:
        return f"{doc.source}:{place}"
    return doc.source or doc.id


def duplicate(doc: Document, first: str) -> Skipped:
    """The report of a document skipped because its id was read before in this run, at `first`."""
    return Skipped(doc_location(doc), (f"duplicate id {doc.id!r}: already read from {first} in this run; "
                                       f"skipped (on conflict: replace would keep this one)"))


def _describe(item) -> str:
    """A short name for an item that could not be made a document."""
    if isinstance(item, dict):
        return clean_text(str(item.get("id", item.get("_id", "?"))))[:80]
    return clean_text(str(item))[:60]



def title_token_ids(tokenizer, title: str, budget: int) -> list[int]:
    """Tokens of a title, prefixed to each of its document's chunks (at most a quarter of a chunk)."""
    if not title:
        return []
    return tokenizer(title, add_special_tokens=False, verbose=False)["input_ids"][: budget // 4]



def prefix_token_ids(tokenizer, prefix: str) -> list[int]:
    """Tokens of the index's document prefix ("passage: " for e5), before each chunk's title and text."""
    return tokenizer(prefix, add_special_tokens=False, verbose=False)["input_ids"] if prefix else []


def stored_chunk_input(encoder, title: str, text: str, budget: int, prefix: str = "") -> list[int]:
    """A stored chunk's model input as indexing made it: the index's document prefix tokens,
    its document's title tokens, then its text's, cut to `budget`, wrapped in special tokens
    (re-encoding for repair and `similar`)."""
    prefix_ids = prefix_token_ids(encoder.tokenizer, prefix)
    title_ids = title_token_ids(encoder.tokenizer, title or "", budget)
    ids = encoder.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    return encoder.with_special_tokens((prefix_ids + title_ids + ids)[:budget])


class CommitTarget(Protocol):
    """Where a Writer's batches go: the open index folder's live generation (searcher/index/live.py)."""

    def commit(self, changes: Changes) -> None: ...

    def vector_count(self) -> int: ...


class Writer:
    """Stages added/deleted documents and commits them in batches (vectors first, then SQLite).

    A document's chunks normally go into one commit with it. A document too large for one
    commit is committed in parts as it is chunked (memory stays bounded); until its last part,
    its stored content hash is marked unfinished, so a killed run re-indexes it next time.
    """

    def __init__(self, store: ContentStore, chunker: Chunker, encoder, folder: "CommitTarget",
                 batch_size: int = 32, commit_chunks: int = COMMIT_CHUNKS, prefix: str = ""):
        self.store = store  # the writable connection (reads see this writer's own commits)
        self.chunker = chunker
        self.encoder = encoder
        self.folder = folder  # commits each batch as the next generation (searcher/index/live.py)
        self.batch_size = batch_size
        self.commit_chunks = commit_chunks
        # the index's document prefix (a writer opened without a model only deletes)
        self.prefix_ids = prefix_token_ids(encoder.tokenizer, prefix) if encoder is not None else []
        self.next_chunk_id = self.store.state("next_chunk_id")
        self._reset()

    def _reset(self):
        self.docs: list[dict] = []
        self.chunks: list[dict] = []
        self.ids: list[np.ndarray] = []
        self.vecs: list = []  # the vectors of self.ids, in order: arrays, or futures of the encoding thread
        self.delete_ids: list[str] = []
        self.pending: list[list[int]] = []  # token ids of self.chunks[-len(pending):], not encoded yet

    def _encode_ahead(self, inputs: list, progress):
        """Encode `inputs` in the writer's encoding thread: a future of their vectors. The
        encoder runs there only, one piece after another (the progress callback too)."""
        if getattr(self, "_pool", None) is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="searcher-encode")
        return self._pool.submit(self.encoder.encode_ids, inputs, batch_size=self.batch_size, progress=progress)

    def close(self) -> None:
        """Stop the encoding thread (after a failed run, the pieces it has not begun are dropped)."""
        pool, self._pool = getattr(self, "_pool", None), None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def add(self, documents: Iterable, report: IndexReport, progress=None, on_conflict: str = "skip") -> None:
        """Stage and commit every document of `documents` (see Index.add_documents)."""
        seen: dict[str, str] = {}  # id -> where it was read in this run
        batch: list[Document] = []
        for doc in as_documents(documents, report):
            if is_blank(doc.text):
                report.skipped.append(Skipped(doc_location(doc), "no text (only whitespace or control characters)"))
                continue
            if doc.id in seen:
                if on_conflict == "skip":
                    report.skipped.append(duplicate(doc, seen[doc.id]))
                    continue
                self.stage(batch, report, progress, on_conflict)  # the first one goes in first,
                self.commit(report, progress)  # so this one replaces it as stored (reported
                batch = []  # by stage() when the two came from different files)
            seen[doc.id] = doc_location(doc)
            batch.append(doc)
            if sum(len(d.text) for d in batch) > 400_000 or len(batch) >= 512:
                self.stage(batch, report, progress, on_conflict)
                batch = []
        self.stage(batch, report, progress, on_conflict)
        self.commit(report, progress)

    def delete(self, doc_ids: list[str]) -> int:
        """Remove these documents in one commit; how many were stored."""
        present = list(self.store.content_hashes(doc_ids))
        self.delete_ids.extend(present)
        self.commit()
        return len(present)

    def commit_threshold(self) -> int:
        """Chunks per commit: `commit_chunks`, or 10% of the index once it is large, so that
        rewriting the vectors file stays a small share of the work."""
        return max(self.commit_chunks, self.folder.vector_count() // 10)

    def stage(self, batch: list[Document], report: IndexReport, progress=None, on_conflict: str = "skip") -> None:
        """Chunk the new and changed documents of a batch; encode and commit each threshold's worth
        (the last, smaller part waits for more documents or for the final `commit`)."""
        if not batch:
            return
        stored = self.store.documents([d.id for d in batch])
        for doc in batch:
            digest = content_hash(doc)
            old = stored.get(doc.id)
            keep_readers(doc, old)
            row = {"id": doc.id, "source": doc.source, "title": doc.title, "text": doc.text,
                   "content_hash": digest, "metadata": doc.metadata}
            if old is not None and (old["source"] or "") != doc.source:
                other = old["source"] or "(no source: added through the API)"
                if on_conflict == "skip":
                    report.skipped.append(Skipped(doc_location(doc), (
                        f"id {doc.id!r} already belongs to a document from {other}; skipped "
                        f"(on conflict: replace would replace it)")))
                    continue
                report.replaced.append(Skipped(doc_location(doc), f"id {doc.id!r}: replaced the document from {other}"))
            elif old is not None and old["content_hash"] == digest:
                report.unchanged += 1
                if old["metadata"] != doc.metadata:
                    # Only the file's facts moved (or a row's line, or its readers): the stored
                    # row follows, no encoding.
                    self.docs.append(row)
                continue
            if old is not None:
                report.updated += 1
                self.delete_ids.append(doc.id)
            else:
                report.added += 1
            pages = doc.metadata.get("pages")
            report.pages += pages if isinstance(pages, int) and not isinstance(pages, bool) else 0
            title_ids = self.prefix_ids + title_token_ids(self.encoder.tokenizer, doc.title, self.chunker.budget)
            own = 0  # this document's chunks staged since the last commit
            starts = page_starts(doc.metadata, len(doc.text))
            chunks = (self.chunker.iter_split_sections(doc.text, starts, reserved=len(title_ids))
                      if starts else self.chunker.iter_split(doc.text, reserved=len(title_ids)))
            for chunk in chunks:  # a paged document's chunks stay within their page
                self.chunks.append({"id": self.next_chunk_id, "doc_id": doc.id, "position": chunk.position,
                                    "start": chunk.start, "end": chunk.end, "text": chunk.text})
                self.pending.append(self.encoder.with_special_tokens(title_ids + chunk.ids))
                self.next_chunk_id += 1
                own += 1
                if len(self.pending) >= ENCODE_AHEAD:
                    self.encode_pending(report, progress, wait=False)
                if own >= self.commit_threshold():
                    # A document larger than a commit: commit its chunks so far, its row marked
                    # unfinished (memory stays at most two commits' worth of chunks).
                    self.commit(report, progress, unfinished={**row, "content_hash": UNFINISHED + digest})
                    own = 0
            self.docs.append(row)
            if len(self.chunks) >= self.commit_threshold():
                self.commit(report, progress)

    def encode_pending(self, report: IndexReport | None = None, progress=None, wait: bool = True) -> None:
        """Hand the staged chunks that have no vector yet to the encoding thread (longest first,
        in batches); with `wait`, then wait for every piece of this commit."""
        if self.pending:
            rows = self.chunks[-len(self.pending):]
            self.vecs.append(self._encode_ahead(self.pending, progress))
            self.ids.append(np.array([r["id"] for r in rows], dtype=np.int64))
            if report is not None:
                report.chunks += len(rows)
                report.tokens += sum(len(x) for x in self.pending)
            self.pending = []
        if wait:
            self.vecs = [v if isinstance(v, np.ndarray) else v.result() for v in self.vecs]

    def commit(self, report: IndexReport | None = None, progress=None, unfinished: dict | None = None) -> None:
        """Write the next vectors file, then the SQLite transaction that makes it live.
        `unfinished`: the row of a document whose chunks are only partly staged."""
        self.encode_pending(report, progress)
        docs = self.docs + ([unfinished] if unfinished else [])
        if not (docs or self.delete_ids):
            return
        empty = np.zeros(0, np.int64)
        self.folder.commit(Changes(docs, self.chunks, self.delete_ids, np.concatenate(self.ids) if self.ids else empty,
                           np.concatenate(self.vecs) if self.vecs else None, self.next_chunk_id))
        self._reset()


UNFINISHED = "unfinished:"  # content-hash prefix of a document committed in parts, not all yet
