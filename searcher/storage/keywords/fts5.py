"""The FTS5 keyword engine: a table inside content.db, changed in the commit's own transaction.

`chunks_fts` has one row per chunk (rowid = chunk id; columns: the document's title and the
chunk's text), tokenised by unicode61 (case and diacritics folded) with Porter stemming
("cells"/"cell", "running"/"run"); BM25 comes from FTS5's bm25(), which scores every chunk
that shares a term with the query (no top-k pruning), so its time grows with the corpus.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Sequence

import snowballstemmer

from searcher.storage.store import batches
from searcher.storage.keywords.base import Analyzer, KeywordEngine, fold

FTS_TABLE = "chunks_fts"
FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"
_FILL = ("insert into [{t}](rowid, title, text) select c.id, coalesce(d.title, ''), c.text "
         "from chunks c join documents d on d.id = c.doc_id").format(t=FTS_TABLE)


class PorterAnalyzer(Analyzer):
    """FTS5's analysis: unicode61 folding, then the original Porter stemmer on ASCII words
    (FTS5's porter leaves other tokens as they are)."""

    def __init__(self):
        super().__init__()
        self._stemmer = snowballstemmer.stemmer("porter")

    def _term(self, word: str) -> str:
        folded = fold(word)
        if folded.isascii() and folded.isalpha():
            return self._stemmer.stemWord(folded)
        return folded


def match_expression(words: Sequence[str]) -> str | None:
    """An FTS5 MATCH expression: each word quoted, OR-ed; None without words.

    The user's text never reaches FTS5's query syntax: only letters and digits survive the
    analyzer's split, and each word is a quoted string, so `"foo AND (` is just the word foo.
    """
    if not words:
        return None
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


class Fts5Engine(KeywordEngine):
    name = "fts5"
    may_be_missing = True  # indexes from before keyword search: any write adds the table

    def missing(self) -> str:
        return ("no keyword table yet (it was built by an older searcher); any write adds it "
                "(`searcher check --repair`), or search with mode='dense'")

    def __init__(self, folder=None):
        self.analyzer = PorterAnalyzer()

    def ready(self, store) -> bool:
        return store.has_table(FTS_TABLE)

    def prepare(self, store) -> None:
        """Create the table and fill it from the chunks (also the migration for older indexes).

        BEGIN IMMEDIATE takes the write lock before looking, so two processes opening the same
        old index cannot both fill it. A read-only file keeps dense search working.
        """
        if self.ready(store):
            return
        conn = store.db.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if not store.has_table(FTS_TABLE):
                    conn.execute(f"create virtual table [{FTS_TABLE}] using fts5(title, text, tokenize='{FTS_TOKENIZE}')")
                    conn.execute(_FILL)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as e:
            logging.getLogger(__name__).warning("cannot add the keyword table to %s: %s", store.path, e)

    def add(self, store, chunk_ids: Sequence[int]) -> None:
        for part, marks in batches([int(c) for c in chunk_ids]):
            store.db.execute(f"{_FILL} where c.id in ({marks})", part)

    def remove(self, store, chunk_ids: Sequence[int]) -> None:
        for part, marks in batches([int(c) for c in chunk_ids]):
            store.db.execute(f"delete from [{FTS_TABLE}] where rowid in ({marks})", part)

    def search(self, store, query: str, limit: int, stats=None) -> list[tuple[int, float]]:
        """Scores are positive (FTS5's bm25() is negated); the title column counts like the text.
        FTS5's bm25() takes no outside statistics (`statistics` is None): `stats` is refused."""
        if stats is not None:
            raise ValueError("the fts5 keyword engine scores with its own statistics only")
        expr = match_expression(self.analyzer.query_words(query))
        if expr is None or limit < 1:
            return []
        rows = store.db.execute(
            f"select rowid, -bm25([{FTS_TABLE}]) as score from [{FTS_TABLE}] where [{FTS_TABLE}] match ? "
            "order by score desc, rowid limit ?",
            [expr, int(limit)],
        ).fetchall()
        return [(int(r[0]), float(r[1])) for r in rows]

    def ids(self, store) -> list[int]:
        return [r[0] for r in store.db.execute(f"select rowid from [{FTS_TABLE}] order by rowid").fetchall()]

    def rebuild(self, store) -> None:
        if not self.ready(store):
            self.prepare(store)
            return
        with store.db.atomic():
            store.db.execute(f"delete from [{FTS_TABLE}]")
            store.db.execute(_FILL)

    def problems(self, store, writable: bool) -> list[str]:
        if not writable:  # FTS5's integrity-check is a write statement: only with --repair
            return []
        try:
            store.db.execute(f"insert into [{FTS_TABLE}]([{FTS_TABLE}], rank) values ('integrity-check', 1)")
        except sqlite3.DatabaseError as e:
            return [f"the keyword table fails its integrity check: {e}"]
        return []
