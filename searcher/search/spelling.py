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
from typing import Mapping

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
        # by (first letter, length): a typo seldom hits the first letter, so the words that
        # share it are compared first, and the rest only when none of them is near enough
        self._buckets: dict[tuple[str, int], list[str]] = {}
        for word in counts:
            if word.isalpha():
                self._buckets.setdefault((word[0], len(word)), []).append(word)
        self._initials = sorted({initial for initial, _ in self._buckets})

    def known(self, word: str) -> bool:
        return fold(word) in self.counts

    def correct(self, word: str) -> str | None:
        """The word the index holds that `word` was most likely meant to be (folded), or None:
        the index holds `word`, it may not be corrected, or no word lies near enough."""
        word = fold(word)
        if not correctable(word) or word in self.counts:
            return None
        edits = max_edits(word)
        best = self._nearest(word, edits, [word[0]])
        if best is None or best[0] > 1:  # a word one edit away with another first letter is nearer
            others = self._nearest(word, edits, [i for i in self._initials if i != word[0]])
            if others is not None and (best is None or others < best):
                best = others
        return best[2] if best else None

    def _nearest(self, word: str, edits: int, initials: list[str]) -> tuple[int, int, str] | None:
        """(edits, -chunks, word) of the nearest word starting with one of `initials`."""
        best = None
        for initial in initials:
            for length in range(len(word) - edits, len(word) + edits + 1):
                choices = self._buckets.get((initial, length))
                if not choices:
                    continue
                for candidate, distance, _ in process.extract(word, choices, scorer=OSA.distance,
                                                              score_cutoff=edits, limit=None):
                    key = (int(distance), -self.counts[candidate], candidate)
                    if best is None or key < best:
                        best = key
        return best

    def corrections(self, words) -> dict[str, str]:
        """{word as given: its correction} for those of `words` that are corrected."""
        out = {}
        for word in words:
            fixed = self.correct(word)
            if fixed is not None:
                out[word] = fixed
        return out


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
