"""Typo tolerance: a query word the index does not hold is read as the nearest word it does.

The index's own vocabulary (searcher/search/suggest.py: the words of its chunks and titles,
folded, unstemmed, with how many chunks hold each) is the dictionary, so a correction is
always a word some document holds, in any language the documents are in. A word is
corrected only when the index holds no such word (a word it holds, even a rare one, is
never changed), is at least MIN_CHARS long and holds no digit (codes and numbers are typed
as they are meant). The correction is the candidate at the smallest edit distance (a
transposition counts as one edit: optimal string alignment), up to 1 edit for words of up
to 7 letters and 2 beyond (two edits make a short word into too many others: "colour" into
"flour"); among candidates equally near, the one most chunks hold.

rapidfuzz computes the distances (bit-parallel, in C++): a word is compared with the words
of the vocabulary that share its first letter and lie within two letters of its length
(below a millisecond on SciFact's 34,000 words), and with the others only when none of
those is one edit away.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from functools import lru_cache
from typing import Iterable, Mapping

from rapidfuzz import process
from rapidfuzz.distance import OSA

from searcher.storage.keywords.base import STOP_WORDS, fold

MIN_CHARS = 4  # shorter words are left as typed: too many words lie one edit away
ONE_EDIT_UP_TO = 7  # words this long get at most one edit; longer ones two
_WORD = re.compile(r"[^\W_]+")


def max_edits(word: str) -> int:
    return 1 if len(word) <= ONE_EDIT_UP_TO else 2


def correctable(word: str) -> bool:
    """Whether a (folded) word may be corrected at all: long enough, letters only, not a
    stop word (which the vocabulary leaves out)."""
    return len(word) >= MIN_CHARS and word.isalpha() and word not in STOP_WORDS


class Speller:
    """Corrections from one vocabulary: {folded word: chunks holding it}."""

    def __init__(self, counts: Mapping[str, int]):
        self.counts = counts
        # Words sorted by length, all of them and those of each first letter: the words within
        # two letters of a length are one slice, compared in one call. A typo seldom hits the
        # first letter, so the words that share it are compared first, the rest only when none
        # of them is one edit away.
        words = sorted((w for w in counts if w.isalpha()), key=lambda w: (len(w), w))
        self._all = _ByLength(words)
        initials: dict[str, list[str]] = {}
        for word in words:
            initials.setdefault(word[0], []).append(word)
        self._initial = {initial: _ByLength(group) for initial, group in initials.items()}
        self.nearest = lru_cache(maxsize=4096)(self._nearest_word)

    def correct(self, word: str) -> str | None:
        """The word the index holds that `word` was most likely meant to be (folded), or None:
        the index holds `word`, it may not be corrected, or no word lies near enough."""
        found = self.nearest(word)
        return found[2] if found is not None and found[0] > 0 else None

    def _nearest_word(self, word: str) -> Reading | None:
        """(edits, chunks holding it, the word) of the nearest word the index holds: 0 edits
        when it holds `word` itself; None when `word` may not be corrected or none is near
        (`nearest`, which remembers the last answers)."""
        word = fold(word)
        if word in self.counts:
            return (0, self.counts[word], word)
        if not correctable(word):
            return None
        edits = max_edits(word)
        same = self._initial.get(word[0])
        best = self._best(word, edits, same) if same is not None else None
        if best is None or best[0] > 1:  # a word one edit away with another first letter is nearer
            others = self._best(word, edits, self._all)
            if others is not None and (best is None or others < best):
                best = others
        return (best[0], -best[1], best[2]) if best else None

    def _best(self, word: str, edits: int, words: "_ByLength") -> tuple[int, int, str] | None:
        """(edits, -chunks, word) of the nearest of `words` within `edits`."""
        best = None
        choices = words.within(len(word) - edits, len(word) + edits)
        for candidate, distance, _ in process.extract(word, choices, scorer=OSA.distance,
                                                      score_cutoff=edits, limit=None):
            key = (int(distance), -self.counts[candidate], candidate)
            if best is None or key < best:
                best = key
        return best

    def readings(self, words) -> dict[str, Reading]:
        """{word as given: its `nearest` reading} for those of `words` that have one."""
        return {word: found for word in words if (found := self.nearest(word)) is not None}


Reading = tuple[int, int, str]  # (edits, chunks holding the word, the word): how an index reads a typed word


def corrections(words, readings: Iterable[Mapping[str, Reading]]) -> dict[str, str]:
    """{word: correction} from the readings of one or more indexes (the shards of a sharded
    index): a word any of them holds is kept; else the nearest of their candidates, then the
    one most chunks hold."""
    out = {}
    for word in words:
        found = [tuple(r[word]) for r in readings if word in r]
        if found and not any(edits == 0 for edits, _, _ in found):
            edits, chunks, meant = min(found, key=lambda f: (f[0], -f[1], f[2]))
            out[word] = meant
    return out


def spelled(query, readings: Iterable[Mapping[str, Reading]]):
    """(the query to rank by, "Did you mean" text or None) from the indexes' readings of its
    loose words (searcher/search/query.py: ParsedQuery.loose_words)."""
    fixed = corrections(loose_words(query), list(readings))
    if not fixed:
        return query, None
    text = corrected_text(query.text, fixed)
    return query.corrected(fixed, text), text


def loose_words(query) -> list[str]:
    """The query's words that typo tolerance may correct."""
    return [w for w in query.loose_words() if correctable(fold(w))]


def corrected_text(text: str, corrections: Mapping[str, str]) -> str:
    """`text` with each corrected word replaced (whole words, as typed: a capital first
    letter is kept), everything else (quotes, minus signs, fields) left as it is."""
    if not corrections:
        return text
    folded = {fold(k): v for k, v in corrections.items()}

    def replace(match: re.Match) -> str:
        word = match.group()
        fixed = folded.get(fold(word))
        if fixed is None:
            return word
        return fixed[:1].upper() + fixed[1:] if word[:1].isupper() else fixed

    return _WORD.sub(replace, text)


class _ByLength:
    """Words sorted by length, sliced by a range of lengths."""

    def __init__(self, words: list[str]):
        self.words = words
        self._lengths = [len(w) for w in words]

    def within(self, shortest: int, longest: int) -> list[str]:
        return self.words[bisect_left(self._lengths, shortest):bisect_right(self._lengths, longest)]
