"""The tantivy keyword engine: a Lucene-like index in the folder `keywords.tantivy/`, one
document a chunk (its id, and its document's title with its text as one field).

tantivy prunes with block-max WAND, so a query's time follows the k best chunks, not every
chunk that shares a word with it (FTS5's bm25() scores them all).

SQLite stays the source of truth. A commit records the chunk ids it added or removed in the
table `keyword_journal`, in the same SQLite transaction; `catch_up` then re-indexes each
recorded id from SQLite (delete the id's document, add it back if the chunk is live), commits
tantivy, and only then clears those journal rows. Each step can be repeated, so a kill at any
point is mended by the next open or write, which replays the journal. Until then the caller
checks keyword hits against the live chunk ids, so a lagging engine never returns a deleted
chunk.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

import tantivy

from searcher.errors import IndexCorruptError, SearcherError
from searcher.storage.store import batches
from searcher.storage.keywords.base import Analyzer, KeywordEngine, KeywordStats, bm25_idf, fold

FOLDER = "keywords.tantivy"
JOURNAL = "keyword_journal"
TOKENIZER = "searcher_en"
WRITER_HEAP = 64 << 20
ADD_BATCH = 2000
PROBE_CHUNKS = 32  # chunks `problems` looks up by one of their words
_ROWS = ("select c.id, coalesce(d.title, ''), c.text from chunks c join documents d on d.id = c.doc_id "
         "where c.id in ({marks})")


def tantivy_failed(e: BaseException) -> bool:
    """Whether `e` is tantivy failing on its files: an error it reports (ValueError, OSError),
    or a panic of its Rust code on data it did not expect (pyo3's PanicException, a
    BaseException, seen on a bit-flipped term dictionary)."""
    return isinstance(e, (ValueError, OSError)) or type(e).__name__ == "PanicException"


def text_analyzer(stem: bool = True) -> tantivy.TextAnalyzer:
    """Words (letters and digits), at most 40 bytes, lower-cased, folded to ASCII, English
    Snowball stems (without `stem`: the words as written, for suggestions and labels)."""
    builder = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
               .filter(tantivy.Filter.remove_long(40))
               .filter(tantivy.Filter.lowercase())
               .filter(tantivy.Filter.ascii_fold()))
    if stem:
        builder = builder.filter(tantivy.Filter.stemmer("english"))
    return builder.build()


class TantivyAnalyzer(Analyzer):
    """The index's own analysis, so query terms are exactly the indexed ones."""

    def __init__(self):
        super().__init__()
        self._analyzer = text_analyzer()
        self._surface = text_analyzer(stem=False)

    def _term(self, word: str) -> str:
        tokens = self._analyzer.analyze(word)
        return tokens[0] if tokens else fold(word)

    def surface_words(self, text: str) -> list[str]:
        return self._surface.analyze(text)  # in Rust: a whole corpus is read this way


def _schema() -> tantivy.Schema:
    """A chunk is one field, its document's title and its text: BM25 over both as one text, as
    FTS5's bm25() scores its two columns (separate fields would each get their own IDF, and a
    word rare in titles would outweigh the text: 0.03 nDCG@10 less on SciFact)."""
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("id", stored=False, indexed=True, fast=True)  # i64: what a Python int maps to
    builder.add_text_field("text", tokenizer_name=TOKENIZER, index_option="freq")
    return builder.build()


class TantivyEngine(KeywordEngine):
    name = "tantivy"

    def __init__(self, folder: Path):
        self.path = Path(folder) / FOLDER
        self.analyzer = TantivyAnalyzer()
        self.schema = _schema()
        self._index: tantivy.Index | None = None

    # -- the tantivy index ---------------------------------------------------------------
    def _damaged(self, e: BaseException) -> IndexCorruptError:
        lines = str(e).strip().splitlines() or [type(e).__name__]
        detail = lines[0][:300] + (" ..." if len(lines) > 1 or len(lines[0]) > 300 else "")  # tantivy may quote a whole file
        return IndexCorruptError(
            f"the tantivy keyword index in {self.path} cannot be read ({detail}); run "
            f"`searcher check --repair --index {self.path.parent}` to rebuild it from content.db")

    def _open(self, create: bool = False) -> tantivy.Index | None:
        if self._index is None:
            if not (self.path / "meta.json").exists():
                if not create:
                    return None
                self.path.mkdir(parents=True, exist_ok=True)
            try:
                index = tantivy.Index(self.schema, path=str(self.path), reuse=True)
            except BaseException as e:  # damaged, or made with another schema
                if not tantivy_failed(e):
                    raise
                raise self._damaged(e) from e
            index.register_tokenizer(TOKENIZER, text_analyzer())
            self._index = index
        return self._index

    def _write(self, store, chunk_ids: Sequence[int], add: bool = True, clear: bool = False) -> None:
        """In one tantivy commit: delete these chunks' entries (or every entry with `clear`),
        then, with `add`, index those the store still has, from their stored text."""
        index = self._open(create=True)
        try:
            writer = index.writer(WRITER_HEAP, 1)
        except BaseException as e:
            if not tantivy_failed(e):
                raise
            raise SearcherError(f"cannot write the tantivy keyword index in {self.path}: {e}") from e
        try:
            if clear:
                writer.delete_all_documents()
            for part, marks in batches([int(c) for c in chunk_ids], ADD_BATCH):
                if not clear:
                    for cid in part:
                        writer.delete_documents_by_term("id", cid)
                if add:
                    for cid, title, text in store.db.execute(_ROWS.format(marks=marks), part).fetchall():
                        writer.add_document(tantivy.Document(id=int(cid), text=f"{title}\n{text}"))
        except BaseException as e:
            try:
                writer.rollback()
            except BaseException as again:
                if not tantivy_failed(again):
                    raise
            if tantivy_failed(e):  # tantivy flushes a full heap to disk as it adds
                raise SearcherError(f"cannot write the tantivy keyword index in {self.path}: {e}") from e
            raise
        try:
            writer.commit()
            writer.wait_merging_threads()  # also releases the writer's lock on the folder
        except BaseException as e:
            if not tantivy_failed(e):
                raise
            raise SearcherError(f"cannot write the tantivy keyword index in {self.path}: {e}") from e
        finally:
            del writer
        index.reload()

    # -- the engine interface --------------------------------------------------------------
    def ready(self, store) -> bool:
        return self._open() is not None

    def missing(self) -> str:
        return f"{self.path} is missing: run `searcher check --repair --index {self.path.parent}` to rebuild it"

    def _journal(self, store) -> None:
        if not store.has_table(JOURNAL):
            with store.db.atomic():
                store.db.execute(f"create table if not exists [{JOURNAL}] (chunk_id integer primary key)")

    def prepare(self, store) -> None:
        """Make the journal table; a missing tantivy index is built from the chunks."""
        self._journal(store)
        if self._open() is None:
            self.rebuild(store)

    def add(self, store, chunk_ids: Sequence[int]) -> None:
        self._write(store, chunk_ids)

    def remove(self, store, chunk_ids: Sequence[int]) -> None:
        self._write(store, chunk_ids, add=False)

    def record(self, store, added: Sequence[int], removed: Sequence[int]) -> None:
        ids = [(int(c),) for c in (*removed, *added)]
        store.db.conn.executemany(f"insert or ignore into [{JOURNAL}](chunk_id) values (?)", ids)

    def pending(self, store) -> int:
        if not store.has_table(JOURNAL):
            return 0
        return store.db.execute(f"select count(*) from [{JOURNAL}]").fetchone()[0]

    def catch_up(self, store, clear: bool = False) -> int:
        """Re-index every journalled chunk id in one tantivy commit (`clear`: drop every entry
        first), then clear those journal rows; repeating it after a kill does no harm."""
        if not store.has_table(JOURNAL):
            return 0
        ids = [r[0] for r in store.db.execute(f"select chunk_id from [{JOURNAL}] order by chunk_id").fetchall()]
        if not ids and not clear:
            return 0
        self._write(store, ids, clear=clear)
        with store.db.atomic():
            for part, marks in batches(ids):
                store.db.execute(f"delete from [{JOURNAL}] where chunk_id in ({marks})", part)
        return len(ids)

    def statistics(self, store, query: str) -> KeywordStats:
        """How many chunks this index holds, and how many hold each of the query's terms."""
        index = self._open()
        terms = self.analyzer.query_terms(query)
        if index is None:
            return KeywordStats(0, {term: 0 for term in terms})
        try:
            searcher = index.searcher()
            return KeywordStats(searcher.num_docs, {term: searcher.doc_freq("text", term) for term in terms})
        except BaseException as e:
            if not tantivy_failed(e):
                raise
            raise self._damaged(e) from e

    def search(self, store, query: str, limit: int, stats: KeywordStats | None = None) -> list[tuple[int, float]]:
        """BM25 over the query's terms (OR). With `stats`, each term's clause is boosted by
        idf(stats) / idf(this index), so its weight is the one the whole collection gives it
        (tantivy takes no outside statistics, so this is as close as its Python API allows: the
        length normalisation stays this index's own average chunk length, which hash sharding
        keeps close to the collection's, and tantivy's own idf also counts deleted chunks that
        no merge has dropped yet, where the boost counts live ones)."""
        index = self._open()
        terms = self.analyzer.query_terms(query)
        if index is None or not terms or limit < 1:
            return []
        try:
            searcher = index.searcher()
            clauses = []
            for term in terms:
                clause = tantivy.Query.term_query(self.schema, "text", term)
                if stats is not None and stats.frequencies.get(term):
                    local = searcher.doc_freq("text", term)
                    if local:
                        boost = bm25_idf(stats.chunks, stats.frequencies[term]) / bm25_idf(searcher.num_docs, local)
                        clause = tantivy.Query.boost_query(clause, boost)
                clauses.append((tantivy.Occur.Should, clause))
            limit = min(int(limit), max(1, searcher.num_docs))  # tantivy allocates for the whole limit
            found = searcher.search(tantivy.Query.boolean_query(clauses), limit, count=False)
            if not found.hits:
                return []
            ids = searcher.fast_field_values("id", [address for _, address in found.hits])
        except BaseException as e:
            if not tantivy_failed(e):
                raise
            raise self._damaged(e) from e
        return [(int(cid), float(score)) for (score, _), cid in zip(found.hits, ids)]

    def ids(self, store) -> list[int]:
        index = self._open()
        if index is None:
            return []
        try:
            searcher = index.searcher()
            n = searcher.num_docs
            if not n:
                return []
            found = searcher.search(tantivy.Query.all_query(), n, count=False)
            return sorted(int(c) for c in searcher.fast_field_values("id", [a for _, a in found.hits]))
        except BaseException as e:
            if not tantivy_failed(e):
                raise
            raise self._damaged(e) from e

    def problems(self, store, writable: bool) -> list[str]:
        """Read what `ids` does not: for up to PROBE_CHUNKS chunks spread over the ids, each
        term of the start of the chunk's text must find that chunk (term dictionary, postings,
        field norms), so a damaged segment file is found by `check`, not by the first search
        that needs it (on a large index this is a sample: a damaged term elsewhere is found
        by the search that reads it, which names `check --repair`, and repair rebuilds)."""
        index = self._open()
        if index is None:
            return []
        rows = store.db.execute("select id, substr(text, 1, 400) from chunks where id % 97 = 0 or id < "
                                "(select min(id) from chunks) + ? order by id limit ?",
                                [PROBE_CHUNKS // 2, PROBE_CHUNKS]).fetchall()
        analyze = self.analyzer._analyzer.analyze  # the indexing analysis: these are indexed terms
        try:
            searcher = index.searcher()
            for cid, text in rows:
                terms = analyze(text or "")[:-1]  # the last may be a word cut short by substr
                for term in dict.fromkeys(terms):
                    query = tantivy.Query.boolean_query([
                        (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "text", term)),
                        (tantivy.Occur.Must, tantivy.Query.term_query(self.schema, "id", int(cid)))])
                    if not searcher.search(query, 1, count=False).hits:
                        return [f"the tantivy keyword index in {self.path} does not find chunk {cid} by its word "
                                f"{term!r} (its files are damaged); run `searcher check --repair --index "
                                f"{self.path.parent}` to rebuild it from content.db"]
        except BaseException as e:
            if not tantivy_failed(e):
                raise
            return [str(self._damaged(e))]
        return []

    def rebuild(self, store) -> None:
        """Journal every chunk id first (in SQLite), then rebuild from the journal: a kill in
        between leaves the journal, which the next open or write applies."""
        self._journal(store)
        if self._index is None and self.path.exists():
            try:
                self._open()
            except IndexCorruptError:
                shutil.rmtree(self.path)  # unreadable: all it held comes from content.db
        with store.db.atomic():
            store.db.execute(f"insert or ignore into [{JOURNAL}](chunk_id) select id from chunks")
        self.catch_up(store, clear=True)

    def refresh(self) -> None:
        if self._index is not None:
            self._index.reload()

    def close(self) -> None:
        self._index = None
