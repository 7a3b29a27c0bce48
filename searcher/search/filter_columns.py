"""Filters evaluated in memory, over columns of the documents' fields: a new filter on a
million chunks in milliseconds, where SQLite takes 0.1 to 0.5 s (it parses every document's
metadata JSON for each filter: benchmarks/README.md, "Filtered search").

Per generation, `FilterColumns` holds the chunk ids (sorted) and the row of each one's
document; a field's column (its value in every document) is read from SQLite the first time
a filter names it, in the same read snapshot as the rest, and kept. A filter (already checked
by filters.compile_where) is then numpy over those columns, with SQLite's own rules, so the
answer is the one the SQL in searcher/search/filters.py gives:

- a value is NULL (the key is missing, or JSON null), a number (true and false are 1 and 0)
  or text (an array or object is its JSON text), as `json_extract` gives it;
- comparisons are SQL's: NULL against anything is NULL (so neither `$eq` nor `$ne` holds),
  numbers compare as numbers, text by code point, and every number sorts before every text;
- `$and`, `$or`, `$not` follow three-valued logic, and the chunks allowed are those whose
  document's filter is true.

`allowed()` answers None for what it cannot reproduce exactly (integers beyond 2**53, which a
float cannot hold, non-finite numbers); the caller asks SQLite then.
"""

from __future__ import annotations

import bisect
import json
import math
import threading

import numpy as np

from searcher.search.filters import COLUMNS, COMPARISONS, under_prefix

NULL, NUMBER, TEXT = 0, 1, 2
EXACT = 2 ** 53  # integers a float64 holds exactly
NUMERIC_TYPES = ("integer", "real", "true", "false")


TEXT_AFFINITY = ("id",)  # table columns (not expressions) of TEXT affinity, whose SQL comparisons convert numbers


def _has_number(operand) -> bool:
    values = operand if isinstance(operand, list) else [operand]
    return any(isinstance(v, (int, float)) for v in values)


class Unsupported(Exception):
    """A filter (or a field's values) this module cannot evaluate exactly as SQLite would."""


class Column:
    """One field's value in every document (in document row order): its kind, its number, and
    its text as a rank among the field's distinct texts (`texts`, sorted)."""

    def __init__(self, kinds: np.ndarray, numbers: np.ndarray, text_ranks: np.ndarray, texts: list[str],
                 arrays: frozenset[str] | None = frozenset()):
        self.kinds, self.numbers, self.text_ranks, self.texts = kinds, numbers, text_ranks, texts
        # the texts that are JSON arrays (what `$has` looks into); None: a text is both an
        # array's JSON and a plain string somewhere, which `$has` cannot tell apart here
        self.arrays = arrays

    @classmethod
    def from_rows(cls, rows: list[tuple], n: int, position: dict) -> "Column":
        """From (document rowid, value, json type) rows, in any order."""
        kinds = np.zeros(n, np.int8)
        numbers = np.zeros(n, np.float64)
        text_of: dict[int, str] = {}
        arrays: set[str] = set()
        plain: set[str] = set()
        for rowid, value, kind in rows:
            i = position.get(rowid)
            if i is None or value is None:
                continue
            if kind in NUMERIC_TYPES or (kind is None and isinstance(value, (int, float))):
                if isinstance(value, int) and abs(value) > EXACT or isinstance(value, float) and not math.isfinite(value):
                    raise Unsupported("a number a float cannot hold exactly")
                kinds[i], numbers[i] = NUMBER, value
            else:
                kinds[i] = TEXT
                text_of[i] = value if isinstance(value, str) else str(value)
                (arrays if kind == "array" else plain).add(text_of[i])
        texts = sorted(set(text_of.values()))
        rank = {t: r for r, t in enumerate(texts)}
        text_ranks = np.full(n, -1, np.int64)
        if text_of:
            index = np.fromiter(text_of.keys(), np.int64, len(text_of))
            text_ranks[index] = np.fromiter((rank[t] for t in text_of.values()), np.int64, len(text_of))
        return cls(kinds, numbers, text_ranks, texts, None if arrays & plain else frozenset(arrays))


def _truth(true: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return true, null & ~true


class FilterColumns:
    """The chunk ids and documents of one generation, and the columns filters have named."""

    def __init__(self, store, generation: int):
        self.generation = generation
        self._lock = threading.Lock()
        self._columns: dict[str, Column] = {}
        with snapshot(store, generation):
            self.doc_rowids = np.array([r[0] for r in store.db.execute("select rowid from documents order by rowid")],
                                       dtype=np.int64)
            rows = store.db.execute("select c.id, d.rowid from chunks c join documents d on d.id = c.doc_id "
                                    "order by c.id").fetchall()
        self.chunk_ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        self.chunk_doc = np.searchsorted(self.doc_rowids, np.fromiter((r[1] for r in rows), np.int64, len(rows)))
        self._position = None

    def allowed(self, store, where: dict) -> np.ndarray | None:
        """The sorted chunk ids whose documents `where` (a checked filter) keeps, or None when
        it cannot be evaluated exactly here (or the database has moved past this generation)."""
        try:
            true, _ = self._clause(store, where)
        except Unsupported:
            return None
        return self.chunk_ids[true[self.chunk_doc]]

    def count(self, store, where: dict) -> int | None:
        """How many documents `where` keeps (chunks or not), or None as `allowed` answers None."""
        try:
            true, _ = self._clause(store, where)
        except Unsupported:
            return None
        return int(true.sum())

    # -- columns -----------------------------------------------------------------------
    def column(self, store, name: str) -> Column:
        with self._lock:
            found = self._columns.get(name)
        if found is not None:
            return found
        if name in COLUMNS:
            expr, kind_sql, params = COLUMNS[name], "'text'", []
        else:
            key = name[len("metadata."):] if name.startswith("metadata.") else name
            path = "$." + json.dumps(key)
            expr, kind_sql, params = "json_extract(d.metadata, ?)", "json_type(d.metadata, ?)", [path, path]
        try:
            with snapshot(store, self.generation):
                rows = store.db.execute(f"select d.rowid, {expr}, {kind_sql} from documents d", params).fetchall()
        except MovedOn:
            raise Unsupported("the database is at a newer generation") from None
        if self._position is None:
            self._position = {int(r): i for i, r in enumerate(self.doc_rowids)}
        column = Column.from_rows(rows, len(self.doc_rowids), self._position)
        with self._lock:
            self._columns[name] = column
        return column

    # -- evaluation: each clause gives (true, null) masks over the documents -------------
    def _clause(self, store, where: dict) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.doc_rowids)
        true, null = np.ones(n, bool), np.zeros(n, bool)
        for key, value in where.items():
            if key in ("$and", "$or"):
                parts = [self._clause(store, v) for v in value]
                part_true, part_null = parts[0]
                for t, u in parts[1:]:
                    part_true, part_null = _and(part_true, part_null, t, u) if key == "$and" else \
                        _or(part_true, part_null, t, u)
            elif key == "$not":
                t, u = self._clause(store, value)
                part_true, part_null = ~t & ~u, u
            else:
                part_true, part_null = self._condition(store, key, value)
            true, null = _and(true, null, part_true, part_null)
        return true, null

    def _condition(self, store, name: str, value) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(value, dict):
            value = {"$eq": value}
        if name in TEXT_AFFINITY and any(_has_number(operand) for operand in value.values()):
            raise Unsupported(f"{name} is a TEXT column: SQLite turns a number compared with it into text")
        column = self.column(store, name)
        n = len(self.doc_rowids)
        true, null = np.ones(n, bool), np.zeros(n, bool)
        for op, operand in value.items():
            t, u = self._operator(column, op, operand)
            true, null = _and(true, null, t, u)
        return true, null

    def _operator(self, column: Column, op: str, operand) -> tuple[np.ndarray, np.ndarray]:
        is_null = column.kinds == NULL
        if op in ("$eq", "$ne") and operand is None:  # IS NULL, IS NOT NULL
            return (is_null if op == "$eq" else ~is_null), np.zeros_like(is_null)
        if op in COMPARISONS:
            return _truth(self._compare(column, op, operand), is_null)
        if op in ("$in", "$nin"):
            member = np.zeros(len(is_null), bool)
            for v in operand:
                if v is not None:
                    member |= self._compare(column, "$eq", v)
            has_null = any(v is None for v in operand)
            if op == "$in":
                return member & ~is_null, is_null | (~member & has_null)
            return ~member & ~is_null & (not has_null), is_null | (~member & has_null)
        if op == "$under":
            prefix = under_prefix(operand)
            keep = np.array([t == prefix or t.startswith(prefix.rstrip("/") + "/") for t in column.texts], bool)
            inside = np.zeros(len(is_null), bool)
            texts = column.kinds == TEXT
            inside[texts] = keep[column.text_ranks[texts]] if len(keep) else False
            return inside, np.zeros_like(is_null)  # text only: a number or NULL is never under a folder
        if op == "$has":
            return self._has(column, operand if isinstance(operand, list) else [operand]), np.zeros_like(is_null)
        raise Unsupported(op)

    def _has(self, column: Column, values: list) -> np.ndarray:
        """`$has`: a JSON array holding one of `values` (as json_each compares its items: no
        affinity, true and false as 1 and 0), or a value equal to one of them."""
        if column.arrays is None:
            raise Unsupported("a text that is both a list's JSON and a plain string")
        wanted = [int(v) if isinstance(v, bool) else v for v in values]
        if any(isinstance(v, (int, float)) and (isinstance(v, int) and abs(v) > EXACT or not math.isfinite(v))
               for v in wanted):
            raise Unsupported("a number a float cannot hold exactly")
        texts = {v for v in wanted if isinstance(v, str)}
        numbers = [float(v) for v in wanted if not isinstance(v, str)]

        def item_matches(item) -> bool:
            if isinstance(item, bool):
                item = int(item)
            if isinstance(item, str):
                return item in texts
            if isinstance(item, (int, float)):
                return float(item) in numbers
            return json.dumps(item, separators=(",", ":"), ensure_ascii=False) in texts  # a nested list or object

        keep = np.zeros(len(column.texts), bool)
        for rank, text in enumerate(column.texts):
            if text in column.arrays:
                keep[rank] = any(item_matches(item) for item in json.loads(text))
            else:
                keep[rank] = text in texts
        out = np.isin(column.numbers, numbers) & (column.kinds == NUMBER) if numbers else np.zeros(len(column.kinds), bool)
        is_text = column.kinds == TEXT
        if len(keep):
            out[is_text] |= keep[column.text_ranks[is_text]]
        return out

    def _compare(self, column: Column, op: str, operand) -> np.ndarray:
        """`value op operand` where it is not NULL (NULL rows come out False)."""
        numbers, texts = column.kinds == NUMBER, column.kinds == TEXT
        if isinstance(operand, (int, float)):
            if isinstance(operand, int) and abs(operand) > EXACT or isinstance(operand, float) and not math.isfinite(operand):
                raise Unsupported("a number a float cannot hold exactly")
            by_number = {"$eq": np.equal, "$ne": np.not_equal, "$gt": np.greater, "$gte": np.greater_equal,
                         "$lt": np.less, "$lte": np.less_equal}[op](column.numbers, float(operand)) & numbers
            text_side = op in ("$ne", "$gt", "$gte")  # every text sorts after every number
            return by_number | (texts & text_side)
        # a text operand: compare ranks among the column's sorted distinct texts
        ranks, sorted_texts = column.text_ranks, column.texts
        lo = bisect.bisect_left(sorted_texts, operand)  # ranks < lo are texts < operand
        hi = bisect.bisect_right(sorted_texts, operand)  # ranks >= hi are texts > operand
        by_text = {"$eq": (ranks >= lo) & (ranks < hi), "$ne": (ranks < lo) | (ranks >= hi),
                   "$gt": ranks >= hi, "$gte": ranks >= lo, "$lt": ranks < lo, "$lte": ranks < hi}[op] & texts
        number_side = op in ("$ne", "$lt", "$lte")  # every number sorts before every text
        return by_text | (numbers & number_side)


def _and(t1, n1, t2, n2):
    false = (~t1 & ~n1) | (~t2 & ~n2)
    true = t1 & t2
    return true, ~true & ~false


def _or(t1, n1, t2, n2):
    true = t1 | t2
    false = (~t1 & ~n1) & (~t2 & ~n2)
    return true, ~true & ~false


class MovedOn(Exception):
    pass


class snapshot:
    """One read transaction that sees generation `generation`, else MovedOn."""

    def __init__(self, store, generation: int):
        self.store, self.generation = store, generation

    def __enter__(self):
        conn = self.store.db.conn
        self.began = not conn.in_transaction
        if self.began:
            conn.execute("begin")
        try:
            generation = self.store.generation
        except BaseException:
            self.__exit__(None, None, None)  # never leave the connection in a read transaction
            raise
        if generation != self.generation:
            self.__exit__(None, None, None)
            raise MovedOn(f"the database is at generation {generation}, not {self.generation}")

    def __exit__(self, *exc):
        if self.began:
            self.store.db.conn.execute("commit")
            self.began = False
