"""The content store: documents, chunks and index state in SQLite (through sqlite-utils).

Every write goes through `commit()`, one transaction that also records the generation of
the vector file it matches; readers use that generation to load the right vector file.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import sqlite_utils


@dataclass
class StoredChunk:
    id: int
    doc_id: str
    position: int
    start: int
    end: int
    text: str


class ContentStore:
    """SQLite tables `documents`, `chunks` and `state` (key/value: generation, next chunk id)."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            conn = sqlite3.connect(str(self.path), check_same_thread=False)
        conn.execute("PRAGMA busy_timeout = 10000")
        self.db = sqlite_utils.Database(conn)
        if not readonly:
            if self.db.journal_mode != "wal":
                self.db.enable_wal()
            self.db.execute("PRAGMA synchronous = FULL")
            self._create_schema()

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

    def close(self) -> None:
        self.db.conn.close()

    # -- state ---------------------------------------------------------------------------
    def state(self, key: str) -> int:
        row = self.db.execute("select value from state where key = ?", [key]).fetchone()
        return int(row[0]) if row else 0

    @property
    def generation(self) -> int:
        return self.state("generation")

    def snapshot(self) -> tuple[int, int]:
        """(live generation, chunk count), read in one transaction so they belong together."""
        with self.db.atomic():
            return self.generation, self.count_chunks()

    # -- reads ---------------------------------------------------------------------------
    def count_documents(self) -> int:
        return self.db.execute("select count(*) from documents").fetchone()[0]

    def count_chunks(self) -> int:
        return self.db.execute("select count(*) from chunks").fetchone()[0]

    def content_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        out = {}
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            q = f"select id, content_hash from documents where id in ({','.join('?' * len(part))})"
            out.update(dict(self.db.execute(q, part).fetchall()))
        return out

    def chunk_ids_of(self, doc_ids: Sequence[str]) -> list[int]:
        out: list[int] = []
        for i in range(0, len(doc_ids), 500):
            part = list(doc_ids[i : i + 500])
            q = f"select id from chunks where doc_id in ({','.join('?' * len(part))})"
            out.extend(r[0] for r in self.db.execute(q, part).fetchall())
        return out

    def all_chunk_ids(self) -> list[int]:
        return [r[0] for r in self.db.execute("select id from chunks order by id").fetchall()]

    def chunks(self, ids: Sequence[int]) -> dict[int, StoredChunk]:
        out = {}
        for i in range(0, len(ids), 500):
            part = [int(x) for x in ids[i : i + 500]]
            q = f"select id, doc_id, position, start, [end], text from chunks where id in ({','.join('?' * len(part))})"
            for row in self.db.execute(q, part).fetchall():
                out[row[0]] = StoredChunk(*row)
        return out

    def chunk_doc_ids(self, ids: Sequence[int]) -> dict[int, str]:
        out = {}
        for i in range(0, len(ids), 500):
            part = [int(x) for x in ids[i : i + 500]]
            q = f"select id, doc_id from chunks where id in ({','.join('?' * len(part))})"
            out.update(dict(self.db.execute(q, part).fetchall()))
        return out

    def documents(self, ids: Sequence[str], with_text: bool = False) -> dict[str, dict]:
        cols = "id, source, title, content_hash, metadata, added_at" + (", text" if with_text else "")
        out = {}
        for i in range(0, len(ids), 500):
            part = list(ids[i : i + 500])
            q = f"select {cols} from documents where id in ({','.join('?' * len(part))})"
            cur = self.db.execute(q, part)
            names = [d[0] for d in cur.description]
            for row in cur.fetchall():
                doc = dict(zip(names, row))
                doc["metadata"] = json.loads(doc["metadata"] or "{}")
                out[doc["id"]] = doc
        return out

    def document_sources(self) -> list[tuple[str, str]]:
        return self.db.execute("select id, source from documents").fetchall()

    def document_ids(self) -> list[str]:
        return [r[0] for r in self.db.execute("select id from documents order by id").fetchall()]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())

    # -- writes --------------------------------------------------------------------------
    def commit(
        self,
        generation: int,
        documents: Iterable[dict],
        chunks: Iterable[dict],
        delete_doc_ids: Sequence[str],
        next_chunk_id: int,
    ) -> None:
        """One transaction: drop the replaced/deleted documents, write the new ones, record state."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        docs = [
            {**d, "metadata": json.dumps(d.get("metadata") or {}, ensure_ascii=False, default=str), "added_at": now}
            for d in documents
        ]
        with self.db.atomic():
            for i in range(0, len(delete_doc_ids), 500):
                part = list(delete_doc_ids[i : i + 500])
                marks = ",".join("?" * len(part))
                self.db.execute(f"delete from chunks where doc_id in ({marks})", part)
                self.db.execute(f"delete from documents where id in ({marks})", part)
            if docs:
                self.db["documents"].insert_all(docs, replace=True)
            self.db["chunks"].insert_all(chunks, batch_size=500)
            self.db["state"].upsert_all(
                [{"key": "generation", "value": generation}, {"key": "next_chunk_id", "value": next_chunk_id}],
                pk="key",
            )
