"""The content store: documents, chunks and index state in SQLite (through sqlite-utils).

Every write goes through `commit()`, one transaction that also records the generation of
the vector file it matches; readers use that generation to load the right vector file.

Keyword engines (searcher/storage/keywords/) record their changes inside that same transaction.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, Sequence

import sqlite_utils

from searcher.errors import DatabaseCorruptError, IndexIOError

BATCH = 500  # ids per `IN (...)`: well under SQLite's limit on bound parameters


def batches(ids: Sequence, size: int = BATCH) -> Iterator[tuple[list, str]]:
    """(part, "?,?,...") for each slice of `ids`, for queries with `IN (...)`."""
    ids = list(ids)
    for i in range(0, len(ids), size):
        part = ids[i : i + size]
        yield part, ",".join("?" * len(part))


_SQLITE_IOERR, _SQLITE_FULL = 10, 13  # primary result codes (the low byte of an extended one)


def is_disk_error(e: BaseException) -> bool:
    """Whether an SQLite error is the disk's (full, I/O error), not the database's contents."""
    code = getattr(e, "sqlite_errorcode", None)
    return isinstance(e, sqlite3.Error) and code is not None and code & 0xFF in (_SQLITE_IOERR, _SQLITE_FULL)


def disk_errno(e: BaseException) -> int:
    """ENOSPC for SQLite's "database or disk is full", else EIO."""
    return errno.ENOSPC if (getattr(e, "sqlite_errorcode", 0) or 0) & 0xFF == _SQLITE_FULL else errno.EIO


@contextmanager
def readable(path: Path) -> Iterator[None]:
    """Turn SQLite's errors about a damaged file into IndexCorruptError saying what to do, and
    its disk errors (full, I/O error) into IndexIOError naming the file."""
    try:
        yield
    except sqlite3.DatabaseError as e:
        if is_disk_error(e):
            raise IndexIOError(disk_errno(e), (
                f"cannot read or write {path}: SQLite: {e} (the disk is full or failing; even a "
                f"reader needs room for SQLite's {Path(path).name}-shm beside it)")) from e
        # OperationalError is about the operation (a lock), not the file's contents, except
        # when the file lacks a table it must have or holds text that is not UTF-8.
        if isinstance(e, sqlite3.OperationalError) and not any(
                m in str(e) for m in ("no such table", "Could not decode to UTF-8")):
            raise
        folder = Path(path).parent
        raise DatabaseCorruptError(
            f"{path} cannot be read ({e}); run `searcher check --index {folder}` to see what is "
            f"damaged and what `--repair` can recover"
        ) from e


@dataclass
class StoredChunk:
    id: int
    doc_id: str
    position: int
    start: int
    end: int
    text: str


CHECKSUMS = "checksums"  # file name -> SHA-256, written in the commit that makes the file live
COMMITTED_AT = "committed_at_ms"  # state key: when the live generation was committed (Unix time, ms)
EVALUATIONS = "evaluations"  # the last `searcher eval` result per (dataset, split, mode), made at the first
TABLES = ("documents", "chunks", "state")
STORED_COLUMNS = {  # the columns `stored_rows` reads and `insert_stored_rows` writes, as stored
    "documents": ("id", "source", "title", "content_hash", "metadata", "added_at", "text"),
    "chunks": ("id", "doc_id", "position", "start", "end", "text"),
}


class ContentStore:
    """SQLite tables `documents`, `chunks`, `state` (key/value: generation, next chunk id, time
    of the last commit), `checksums` (the live vectors file's SHA-256) and, once `searcher eval
    --index` has run, `evaluations` (its last figures per dataset, split and mode).

    `readonly` connections never create or change anything (SQLite may add its -wal/-shm
    coordination files beside a WAL database); `create` makes the schema in a new file. A
    writable open of an existing file that lacks the tables is refused: it is damaged, and
    filling it with an empty schema would hide that.
    """

    def __init__(self, path: Path, readonly: bool = False, create: bool = False):
        self.path = Path(path)
        if not self.path.is_file() and not create:
            raise DatabaseCorruptError(f"{self.path} is missing; run `searcher check --index {self.path.parent}`")
        with readable(self.path):
            if readonly:
                conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            else:
                conn = sqlite3.connect(str(self.path), check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 10000")
                self.db = sqlite_utils.Database(conn)
                names = set(self.db.table_names())
                if not create and not names.issuperset(TABLES):
                    raise DatabaseCorruptError(
                        f"{self.path} holds no index tables (it is empty or damaged); run "
                        f"`searcher check --index {self.path.parent}`")
                if not readonly:
                    if self.db.journal_mode != "wal":
                        self.db.enable_wal()
                    self.db.execute("PRAGMA synchronous = FULL")
                    self._create_schema()
            except BaseException:
                conn.close()
                raise

    def _create_schema(self) -> None:
        db = self.db
        with db.atomic():
            if "documents" not in db.table_names():
                db["documents"].create(
                    {
                        "id": str, "source": str, "title": str, "content_hash": str,
                        "metadata": str, "added_at": str, "text": str,
                    },
                    pk="id",
                )
            if "chunks" not in db.table_names():
                db["chunks"].create(
                    {"id": int, "doc_id": str, "position": int, "start": int, "end": int, "text": str},
                    pk="id",
                    foreign_keys=[("doc_id", "documents", "id")],
                )
                db["chunks"].create_index(["doc_id"])
            if "state" not in db.table_names():
                db["state"].create({"key": str, "value": int}, pk="key")
                db["state"].insert_all(
                    [{"key": "generation", "value": 0}, {"key": "next_chunk_id", "value": 1}]
                )
            if CHECKSUMS not in db.table_names():
                db[CHECKSUMS].create({"name": str, "sha256": str}, pk="name")

    def close(self) -> None:
        self.db.conn.close()

    # -- state ---------------------------------------------------------------------------
    def state(self, key: str) -> int:
        row = self.db.execute("select value from state where key = ?", [key]).fetchone()
        return int(row[0]) if row else 0

    @property
    def generation(self) -> int:
        return self.state("generation")

    def snapshot(self) -> tuple[int, int, str | None]:
        """(live generation, chunk count, SHA-256 of its vectors file or None when none was
        recorded), read in one transaction so they belong together."""
        with self.db.atomic():
            generation = self.generation
            return generation, self.count_chunks(), self.checksum(f"vectors.{generation}.faiss")

    def checksum(self, name: str) -> str | None:
        """The SHA-256 recorded for file `name`, or None (not recorded: an index made before checksums)."""
        if not self.has_table(CHECKSUMS):
            return None
        row = self.db.execute(f"select sha256 from [{CHECKSUMS}] where name = ?", [name]).fetchone()
        return row[0] if row else None

    def committed_at(self) -> float | None:
        """When the live generation was committed (Unix time, seconds), or None: an index
        last committed before this was recorded."""
        ms = self.state(COMMITTED_AT)
        return ms / 1000 if ms else None

    def evaluations(self) -> list[dict]:
        """The stored `searcher eval` results (see `record_evaluation`), newest first."""
        if not self.has_table(EVALUATIONS):
            return []
        rows = self.db.execute(f"select result from [{EVALUATIONS}] order by recorded_at desc, dataset, split, mode")
        out = []
        for (raw,) in rows.fetchall():
            try:
                result = json.loads(raw)
            except (TypeError, ValueError):
                continue  # one unreadable row hides only itself
            if isinstance(result, dict):
                out.append(result)
        return out

    def has_table(self, name: str) -> bool:
        return bool(self.db.execute("select 1 from sqlite_master where name = ?", [name]).fetchone())

    # -- reads ---------------------------------------------------------------------------
    def count_documents(self) -> int:
        return self.db.execute("select count(*) from documents").fetchone()[0]

    def count_chunks(self) -> int:
        return self.db.execute("select count(*) from chunks").fetchone()[0]

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        out = {}
        for part, marks in batches(ids):
            q = f"select id, content_hash from documents where id in ({marks})"
            out.update(dict(self.db.execute(q, part).fetchall()))
        return out

    def sources(self, ids: Sequence[str]) -> dict[str, str]:
        """{doc id: source} of the stored documents among `ids`."""
        out = {}
        for part, marks in batches(ids):
            out.update(dict(self.db.execute(f"select id, source from documents where id in ({marks})", part).fetchall()))
        return out

    def chunk_ids_of(self, doc_ids: Sequence[str]) -> list[int]:
        out: list[int] = []
        for part, marks in batches(doc_ids):
            q = f"select id from chunks where doc_id in ({marks})"
            out.extend(r[0] for r in self.db.execute(q, part).fetchall())
        return out

    def all_chunk_ids(self) -> list[int]:
        return [r[0] for r in self.db.execute("select id from chunks order by id").fetchall()]

    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        out = {}
        for part, marks in batches([int(x) for x in ids]):
            q = f"select id, doc_id, position, start, [end], text from chunks where id in ({marks})"
            for row in self.db.execute(q, part).fetchall():
                out[row[0]] = StoredChunk(*row)
        return out

    def chunk_doc_ids(self, ids: Sequence[int]) -> dict[int, str]:
        out = {}
        for part, marks in batches([int(x) for x in ids]):
            q = f"select id, doc_id from chunks where id in ({marks})"
            out.update(dict(self.db.execute(q, part).fetchall()))
        return out

    def documents(self, ids: Sequence[str], with_text: bool = False) -> dict[str, dict]:
        cols = "id, source, title, content_hash, metadata, added_at" + (", text" if with_text else "")
        out = {}
        for part, marks in batches(ids):
            q = f"select {cols} from documents where id in ({marks})"
            cur = self.db.execute(q, part)
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                doc = dict(zip(names, row))
                doc["metadata"] = self._metadata(doc["id"], doc["metadata"])
                out[doc["id"]] = doc
        return out

    def document_texts(self, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """{doc_id: (title, text)} of the stored documents among `ids` (what a query's phrases
        and exclusions are checked on)."""
        out = {}
        for part, marks in batches(ids):
            q = f"select id, coalesce(title, ''), coalesce(text, '') from documents where id in ({marks})"
            out.update((doc_id, (title, text)) for doc_id, title, text in self.db.execute(q, part).fetchall())
        return out

    def has_metadata_key(self, key: str) -> bool:
        """Whether any document's metadata has `key` (with a value other than null)."""
        q = "select exists(select 1 from documents where json_type(metadata, ?) not in ('null'))"
        return bool(self.db.execute(q, ["$." + json.dumps(key)]).fetchone()[0])

    def chunk_ids_where(self, sql: str, params: list) -> list[int]:
        """The ids of the chunks whose documents match a compiled filter (searcher/search/filters.py),
        in order. The filter runs once a document, in a subquery, and its chunks come from the
        doc_id index: as a join, SQLite scanned the chunks and evaluated the filter (its
        json_extract) once a chunk, 3-4x slower (0.79 s against 0.23 s for 100k of a million
        chunks: benchmarks/README.md, "Filtered search")."""
        q = f"select c.id from chunks c where c.doc_id in (select d.id from documents d where {sql}) order by c.id"
        return [r[0] for r in self.db.execute(q, params).fetchall()]

    def chunk_owners(self) -> list[tuple[int, str]]:
        """(chunk id, doc id) of every chunk."""
        return self.db.execute("select id, doc_id from chunks").fetchall()

    def document_summaries(self) -> list[tuple[str, str, dict]]:
        """(id, title, metadata) of every document, by id."""
        rows = self.db.execute("select id, title, metadata from documents order by id").fetchall()
        return [(doc_id, title, self._metadata(doc_id, metadata)) for doc_id, title, metadata in rows]

    def _metadata(self, doc_id: str, raw: str | None) -> dict:
        """A document's stored metadata; IndexCorruptError when the stored JSON is damaged."""
        try:
            return json.loads(raw or "{}")
        except ValueError as e:
            raise DatabaseCorruptError(
                f"{self.path}: the metadata of document {doc_id!r} is damaged ({e}); run `searcher check "
                f"--index {self.path.parent}`, and index that document's file again") from e

    def title_counts(self, with_readers: bool = False) -> list[tuple]:
        """(title, how many documents have it) of every non-empty title; `with_readers`:
        (title, readers as JSON text or None, how many documents have both) instead."""
        if with_readers:
            return self.db.execute("select title, json_extract(metadata, '$.readers') r, count(*) from documents "
                                   "where coalesce(title, '') != '' group by title, r").fetchall()
        return self.db.execute("select title, count(*) from documents where coalesce(title, '') != '' "
                               "group by title").fetchall()

    def chunk_texts(self, batch: int = 2000) -> Iterator[list[str]]:
        """Every chunk's text, `batch` chunks at a time (whole-corpus word counts)."""
        cursor = self.db.execute("select text from chunks")
        while rows := cursor.fetchmany(batch):
            yield [text or "" for (text,) in rows]

    def document_sources(self) -> list[tuple[str, str]]:
        return self.db.execute("select id, source from documents").fetchall()

    def source_documents(self, source_url: str, unfinished: str | None = None) -> list[tuple[str, str, str | None]]:
        """(id, source, version) of the documents read from the source `source_url` (their
        metadata's source_url and source_version: searcher/index/sources.py); the version is
        None for a document whose content hash starts with `unfinished` (committed in parts by
        a run that did not finish it: it must be read again)."""
        q = ("select id, source, json_extract(metadata, '$.source_version'), content_hash from documents "
             "where json_valid(metadata) and json_extract(metadata, '$.source_url') = ?")
        return [(i, s or "", v if isinstance(v, str) and not (unfinished and (h or "").startswith(unfinished)) else None)
                for i, s, v, h in self.db.execute(q, [source_url])]

    def document_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("select id from documents order by id").fetchall()]

    def stored_rows(self, table: str, batch: int = 1000) -> Iterator[list[tuple]]:
        """Every row of `documents` or `chunks` as stored (metadata as its JSON text, added_at
        as recorded), in id order, `batch` rows at a time: what another store's
        `insert_stored_rows` takes (splitting an index into shards, searcher/cluster/shards.py)."""
        columns = ", ".join(f"[{c}]" for c in STORED_COLUMNS[table])
        cursor = self.db.execute(f"select {columns} from [{table}] order by id")
        while rows := cursor.fetchmany(batch):
            yield rows

    # -- writes --------------------------------------------------------------------------
    def insert_stored_rows(self, table: str, rows: Sequence[tuple]) -> None:
        """Insert rows as `stored_rows` gives them, unchanged, in one transaction. Only for
        filling a new store: the keyword engine and the state are the caller's to set."""
        columns = STORED_COLUMNS[table]
        names, marks = ", ".join(f"[{c}]" for c in columns), ", ".join("?" * len(columns))
        with self.db.atomic():
            self.db.conn.executemany(f"insert into [{table}] ({names}) values ({marks})", rows)

    def commit(
        self,
        generation: int,
        documents: Iterable[dict],
        chunks: Iterable[dict],
        delete_doc_ids: Sequence[str],
        next_chunk_id: int,
        checksums: dict[str, str] | None,
        record_keywords: Callable[["ContentStore", list[int], list[int]], None],
        delete_chunk_ids: Sequence[int] = (),
    ) -> None:
        """One transaction: drop the replaced/deleted documents (and `delete_chunk_ids`, chunks a
        repair found without a document), write the new ones, record state and the checksums of
        the files this generation uses (replacing the previous ones), and let the keyword engine
        `record_keywords(store, added chunk ids, removed chunk ids)`."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        docs = [
            {**d, "metadata": json.dumps(d.get("metadata") or {}, ensure_ascii=False, allow_nan=False),
             "added_at": now}
            for d in documents
        ]
        chunks = list(chunks)
        with self.db.atomic():
            removed = self.chunk_ids_of(delete_doc_ids) + [int(c) for c in delete_chunk_ids]
            for part, marks in batches(delete_doc_ids):
                self.db.execute(f"delete from chunks where doc_id in ({marks})", part)
                self.db.execute(f"delete from documents where id in ({marks})", part)
            for part, marks in batches([int(c) for c in delete_chunk_ids]):
                self.db.execute(f"delete from chunks where id in ({marks})", part)
            if docs:
                self.db["documents"].insert_all(docs, replace=True)
            self.db["chunks"].insert_all(chunks, batch_size=500)
            record_keywords(self, [int(c["id"]) for c in chunks], removed)
            self.set_state(generation, next_chunk_id, checksums)

    def record_evaluation(self, result: dict) -> None:
        """Keep `result` (an evaluation's figures: `dataset`, `split`, `mode`, metrics, ...) as the
        last one of its (dataset, split, mode), replacing the one before, in its own
        transaction. It is not part of any generation: commits leave it alone."""
        row = {"dataset": str(result["dataset"]), "split": str(result["split"]), "mode": str(result["mode"]),
               "recorded_at": str(result.get("recorded_at") or ""),
               "result": json.dumps(result, ensure_ascii=False, allow_nan=False)}
        with self.db.atomic():
            self.db.execute(f"create table if not exists [{EVALUATIONS}] (dataset text not null, split text not null, "
                            f"mode text not null, recorded_at text, result text not null, "
                            f"primary key (dataset, split, mode))")
            self.db[EVALUATIONS].upsert(row, pk=("dataset", "split", "mode"))

    def set_state(self, generation: int, next_chunk_id: int, checksums: dict[str, str] | None) -> None:
        """Record the live generation, the next chunk id, the time of this commit and the live
        files' checksums (inside the caller's transaction)."""
        self.db["state"].upsert_all(
            [{"key": "generation", "value": generation}, {"key": "next_chunk_id", "value": next_chunk_id},
             {"key": COMMITTED_AT, "value": int(time.time() * 1000)}],
            pk="key",
        )
        if checksums is not None:
            self.db.execute(f"delete from [{CHECKSUMS}]")
            self.db[CHECKSUMS].insert_all([{"name": n, "sha256": h} for n, h in checksums.items()])
