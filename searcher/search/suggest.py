"""Suggestions as you type: the titles and the words of one generation that start with what
was typed, most frequent first (GET /api/suggest, the page's search box).

The words are the index's own words as written, folded but not stemmed (the keyword
engine's `Analyzer.surface_words`): the keyword engine's terms are Snowball stems
("studi", "comput"), which read badly and miss a typed prefix longer than the stem
("compute" is not a prefix of "comput"). A `Vocabulary` is built from the store's chunks
once per generation (about 0.5 s per 10,000 chunks on one core) and kept in a
`SuggestCache`: after a commit, the last generation's vocabulary answers while the new one
is built in the background, so no keystroke waits for a rebuild.

A lookup is two binary searches in sorted arrays and a top-k over the range between them;
the ranges of one- and two-letter prefixes, the only long ones, are remembered.

Access (searcher/search/access.py): the titles of documents that have readers are kept apart,
with their readers, and offered only to a viewer who may read them (and to None, no
restriction). The words are the collection's, counted over every chunk, as BM25's statistics
are: a word of a hidden document can be suggested (it says a word exists, not where).
"""

from __future__ import annotations

import heapq
import json
import re
import threading
import time
import unicodedata
from bisect import bisect_left
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable, Iterable

import numpy as np

from searcher.search.spelling import Speller
from searcher.storage.keywords.base import STOP_WORDS, fold

MAX_SUGGESTIONS = 10
MAX_PREFIX_CHARS = 100
MIN_WORD_CHARS = 2
SHORT_PREFIX = 2  # prefixes this short have long ranges: their answers are remembered
LONG_RANGE = 2000  # ranges longer than this are ranked in numpy
_END = "\U0010ffff"  # sorts after every character: [prefix, prefix + _END) is the prefix's range
_LAST_WORD = re.compile(r"[^\W_]+$")
_SPACES = re.compile(r"\s+")
ALL = object()  # titles of every document (no viewer): what `titles` and `suggest` give by default


@dataclass(frozen=True)
class Suggestion:
    text: str  # what the box would hold: a title, or the typed text with its last word completed
    kind: str  # "title" or "term"
    count: int  # documents with this title; chunks holding this word

    def to_dict(self) -> dict:
        return {"text": self.text, "kind": self.kind, "count": self.count}


def check_prefix(prefix) -> str:
    """The prefix as typed, or ValueError saying why it cannot be completed."""
    if not isinstance(prefix, str) or not prefix.strip():
        raise ValueError("give the text typed so far: /api/suggest?q=PREFIX")
    if len(prefix) > MAX_PREFIX_CHARS:
        raise ValueError(f"the prefix is longer than {MAX_PREFIX_CHARS} characters")
    if any(unicodedata.category(c) in ("Cc", "Cs", "Co", "Cn") for c in prefix):
        raise ValueError("the prefix holds control or unassigned characters")
    return prefix


def normal(text: str) -> str:
    """Text as titles are compared: folded, runs of spaces made one, no leading space."""
    return _SPACES.sub(" ", fold(text)).lstrip()


class _Titles:
    """Titles sorted for prefix lookups: normalised title -> (title as written, documents)."""

    def __init__(self, titles: dict[str, tuple[str, int]]):
        self.keys = sorted(titles)
        self.rows = [titles[t] for t in self.keys]
        # the same order as arrays: a long range (a one- or two-letter prefix of a large
        # vocabulary) is ranked in numpy, not key by key in Python
        self.counts = np.array([n for _, n in self.rows], dtype=np.int64)
        self.lengths = np.array([len(t) for t in self.keys], dtype=np.int64)

    def top(self, prefix: str, limit: int) -> list[tuple[str, str, int]]:
        """(normalised, as written, documents) of the `limit` titles starting with `prefix`
        (normalised), most frequent, then shortest, first."""
        lo, hi = bisect_left(self.keys, prefix), bisect_left(self.keys, prefix + _END)
        if hi - lo > LONG_RANGE:
            best = lo + _first(limit, -self.counts[lo:hi], self.lengths[lo:hi])
        else:
            best = heapq.nsmallest(limit, range(lo, hi), key=lambda i: (-self.rows[i][1], len(self.keys[i]), self.keys[i]))
        return [(self.keys[i], *self.rows[i]) for i in best]

    def count(self, key: str) -> int:
        at = bisect_left(self.keys, key)
        return self.rows[at][1] if at < len(self.keys) and self.keys[at] == key else 0


class Vocabulary:
    """One generation's words and titles, sorted for prefix lookups. The titles of documents
    that name readers are kept apart, one set a list of readers (searcher/search/access.py)."""

    def __init__(self, words: dict[str, int], titles: dict[str, tuple[str, int]], generation: int | None = None,
                 restricted: dict[tuple[str, tuple[str, ...]], tuple[str, int]] | None = None):
        self.generation = generation
        self._words = sorted(words)
        self._word_counts = [words[w] for w in self._words]
        self._public = _Titles(titles)
        # titles of documents with readers: (normalised title, readers) -> (title as written, documents)
        groups: dict[tuple[str, ...], dict[str, tuple[str, int]]] = {}
        every = dict(titles)
        for (key, readers), (shown, n) in (restricted or {}).items():
            groups.setdefault(readers, {})[key] = (shown, n)
            every[key] = (every.get(key, (shown, 0))[0], every.get(key, (shown, 0))[1] + n)
        self._groups = {readers: _Titles(group) for readers, group in groups.items()}
        self._every = _Titles(every) if groups else self._public  # for no viewer: every title
        self._word_count_array = np.array(self._word_counts, dtype=np.int64)
        self._short = lru_cache(maxsize=4096)(self._top_words)

    def __len__(self) -> int:
        return len(self._words)

    @cached_property
    def speller(self) -> Speller:
        """Typo corrections from these words (searcher/search/spelling.py)."""
        return Speller(dict(zip(self._words, self._word_counts)))

    @classmethod
    def build(cls, texts: Iterable[list[str]], title_counts: Iterable[tuple],
              words: Callable[[str], list[str]], generation: int | None = None) -> "Vocabulary":
        """From batches of chunk texts and (title, documents) pairs, or (title, readers as
        JSON text or None, documents) triples; `words`: the keyword engine's analysis, folded,
        unstemmed. A word counts once per chunk."""
        counts: dict[str, int] = {}
        for batch in texts:
            for text in batch:
                for word in set(words(text)):
                    counts[word] = counts.get(word, 0) + 1
        titles: dict[str, tuple[str, int]] = {}
        restricted: dict[tuple[str, tuple[str, ...]], tuple[str, int]] = {}
        for row in title_counts:
            title, readers, n = row if len(row) == 3 else (row[0], None, row[1])
            title = (title or "").strip()
            for word in set(words(title)):  # the keyword engine indexes titles too
                counts[word] = counts.get(word, 0) + int(n)
            if title:
                key = normal(title)
                entries = _readers(readers)
                into, where = (titles, key) if entries is None else (restricted, (key, entries))
                shown, before = into.get(where, (title, 0))
                into[where] = (shown, before + int(n))
        counts = {w: c for w, c in counts.items()
                  if len(w) >= MIN_WORD_CHARS and w not in STOP_WORDS and not w.isdigit()}
        return cls(counts, titles, generation, restricted)

    def _range(self, keys: list[str], prefix: str) -> tuple[int, int]:
        return bisect_left(keys, prefix), bisect_left(keys, prefix + _END)

    def _top_words(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        lo, hi = self._range(self._words, prefix)
        if hi - lo > LONG_RANGE:  # most frequent, then alphabetical (the order of the array)
            best = lo + _first(limit, -self._word_count_array[lo:hi])
        else:
            best = heapq.nsmallest(limit, range(lo, hi), key=lambda i: (-self._word_counts[i], self._words[i]))
        return [(self._words[i], self._word_counts[i]) for i in best]

    def words(self, prefix: str, limit: int = MAX_SUGGESTIONS) -> list[tuple[str, int]]:
        """(word, chunks holding it) of the words starting with `prefix` (folded), most frequent first."""
        prefix = fold(prefix)
        if not prefix:
            return []
        if len(prefix) <= SHORT_PREFIX:
            return self._short(prefix, limit)
        return self._top_words(prefix, limit)

    def titles(self, prefix: str, limit: int = MAX_SUGGESTIONS, access=ALL) -> list[tuple[str, int]]:
        """(title, documents with it) of the titles starting with `prefix`, most frequent, then
        shortest, first: of the documents `access` may read (a Viewer; None or ALL: every one)."""
        prefix = normal(prefix)
        if not prefix:
            return []
        if access is ALL or access is None:
            return [(shown, n) for _, shown, n in self._every.top(prefix, limit)]
        groups = [self._public] + [titles for readers, titles in self._groups.items()
                                   if access.can_read({"readers": list(readers)})]
        if len(groups) == 1:
            return [(shown, n) for _, shown, n in self._public.top(prefix, limit)]
        # Each set's best `limit` are the candidates (a title counted in several sets is
        # counted whole); exact unless a title outside every set's best would win on its sum.
        found: dict[str, str] = {}
        for titles in groups:
            for key, shown, _ in titles.top(prefix, limit):
                found.setdefault(key, shown)
        totals = {key: sum(titles.count(key) for titles in groups) for key in found}
        order = sorted(found, key=lambda key: (-totals[key], len(key), key))[:limit]
        return [(found[key], totals[key]) for key in order]

    def suggest(self, prefix: str, limit: int = MAX_SUGGESTIONS, access=ALL) -> list[Suggestion]:
        """Titles that start with the whole prefix, then the typed text with its last word
        completed by the index's words: at most `limit`, titles taking at most half when
        there are words to show. Words the prefix already is are left out."""
        prefix = check_prefix(prefix)
        limit = max(1, min(int(limit), MAX_SUGGESTIONS))
        titles = [Suggestion(t, "title", n) for t, n in self.titles(prefix, limit, access)]
        last = _LAST_WORD.search(prefix)
        terms = []
        if last is not None:
            head, typed = prefix[: last.start()], fold(last.group())
            seen = {s.text.casefold() for s in titles}
            for word, n in self.words(typed, limit + 1):
                text = head + word
                if word != typed and text.casefold() not in seen:
                    terms.append(Suggestion(text, "term", n))
        keep_titles = max(limit - len(terms), (limit + 1) // 2)
        out = titles[:keep_titles]
        return out + terms[: limit - len(out)]


def _readers(raw) -> tuple[str, ...] | None:
    """A document's readers as `title_counts(with_readers=True)` gives them (JSON text of a
    list, or None): a tuple, or None for none (a title every viewer may see)."""
    if raw is None:
        return None
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        value = raw
    entries = value if isinstance(value, list) else [value]
    return tuple(str(e) for e in entries)


def _first(limit: int, *keys: np.ndarray) -> np.ndarray:
    """The positions of the `limit` smallest by `keys` (the first key first), ties in position
    order: the candidates that can make the first `limit` by the first key, then sorted."""
    first = keys[0]
    if len(first) > limit:
        cut = np.partition(first, limit - 1)[limit - 1]
        candidates = np.flatnonzero(first <= cut)
    else:
        candidates = np.arange(len(first))
    order = np.lexsort((candidates,) + tuple(k[candidates] for k in reversed(keys)))
    return candidates[order[:limit]]


class SuggestCache:
    """The vocabulary of the latest generation asked for. A newer generation is built in a
    background thread while the older vocabulary answers; with none at all, or `fresh`, the
    caller waits for it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._vocabulary: Vocabulary | None = None
        self._building: int | None = None  # the generation a background thread is building
        self._done = threading.Condition(self._lock)
        self.last_build_seconds: float | None = None
        self._clock = clock

    def get(self, generation: int, build: Callable[[], Vocabulary], fresh: bool = False) -> Vocabulary:
        with self._lock:
            current = self._vocabulary
            if current is not None and current.generation == generation:
                return current
            if current is not None and not fresh:
                if self._building != generation:
                    self._building = generation
                    threading.Thread(target=self._build, args=(generation, build), daemon=True,
                                     name="searcher-suggest-vocabulary").start()
                return current
            while self._building == generation:  # someone builds it now: wait for theirs
                self._done.wait()
                if self._vocabulary is not None and self._vocabulary.generation == generation:
                    return self._vocabulary
            self._building = generation
        return self._build(generation, build)

    def ready(self, generation: int, build: Callable[[], Vocabulary]) -> Vocabulary | None:
        """The latest vocabulary built, without waiting: one of an older generation while
        `generation`'s is built in the background, None (and the build started) when there
        is none yet."""
        with self._lock:
            current = self._vocabulary
            if current is not None and current.generation == generation:
                return current
            if self._building != generation:
                self._building = generation
                threading.Thread(target=self._build, args=(generation, build), daemon=True,
                                 name="searcher-suggest-vocabulary").start()
            return current

    def _build(self, generation: int, build: Callable[[], Vocabulary]) -> Vocabulary | None:
        started = self._clock()
        try:
            vocabulary = build()
        except BaseException:
            with self._lock:
                if self._building == generation:
                    self._building = None
                self._done.notify_all()
            if threading.current_thread().name == "searcher-suggest-vocabulary":
                return None  # the next request tries again
            raise
        with self._lock:
            if self._vocabulary is None or (vocabulary.generation or 0) >= (self._vocabulary.generation or 0):
                self._vocabulary = vocabulary
            if self._building == generation:
                self._building = None
            self.last_build_seconds = self._clock() - started
            self._done.notify_all()
        return vocabulary
