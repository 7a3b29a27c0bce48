"""Split documents into overlapping chunks that fit the encoder.

Chunks are cut with the model's own tokenizer, at word boundaries, so that re-tokenizing a
chunk's text gives back the same tokens: a chunk never exceeds the model's limit and its
character offsets point at exactly the text that was encoded.

A text is tokenized in windows of about `window_chars` characters, never all at once, so the
memory it takes is bounded by the window, not by the text (a 50 MB single-line file used to
need gigabytes). Windows are cut just before a character that always starts a new pre-token
(whitespace; for BERT's pre-tokenizer also ASCII punctuation and CJK ideographs), and BERT's
WordPiece works word by word after that pre-tokenization, so a window's tokens are exactly the
whole text's tokens over that span and the chunks are the same as tokenizing the text in one go.
Only a run of over `window_chars` characters with no such place to cut (a "word" of megabytes)
is cut where it must be; those chunks still fit and map back to the text, but can differ from a
one-go tokenization (which makes such a word one [UNK] token anyway).
"""

from __future__ import annotations

import re
import string
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

WINDOW_CHARS = 1 << 15  # characters tokenized at a time (about 8k tokens of English)

_SPACE = "\t\n\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"  # whitespace BERT keeps as ' '
_CJK = (  # the ideographs BERT's normalizer pads with spaces (handle_chinese_chars)
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002b73f"
    "\U0002b740-\U0002b81f\U0002b820-\U0002ceaf\U0002f800-\U0002fa1f"
)


@dataclass
class Chunk:
    position: int  # 0-based order within the document
    start: int  # character offsets into the document text: text[start:end] == chunk text
    end: int
    text: str
    ids: list[int]  # token ids of the text, without special tokens


def _cut_pattern(tokenizer) -> re.Pattern:
    """Characters a window may start with (and the previous one end before) without changing
    the tokens on either side: each begins a new pre-token and is never merged into its
    neighbours by normalization."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.pre_tokenizer).__name__ != "BertPreTokenizer":
        return re.compile("[ \t\n\r]+")
    chars = _SPACE + re.escape(string.punctuation)  # BERT isolates every punctuation character
    if getattr(backend.normalizer, "handle_chinese_chars", False):
        chars += _CJK
    return re.compile(f"[{chars}]+")


class Chunker:
    """Token-window chunker: windows of `max_tokens` (specials included) with `overlap` tokens shared.

    `window_chars`: how many characters are tokenized at a time (a setting of memory and speed,
    not of the result, except inside a run of that many characters with nowhere to cut)."""

    def __init__(self, tokenizer, max_tokens: int, overlap: int, window_chars: int = WINDOW_CHARS):
        self.tokenizer = tokenizer
        self.specials = tokenizer.num_special_tokens_to_add(pair=False)
        if max_tokens <= self.specials + 1:
            raise ValueError(f"max_tokens must be more than {self.specials + 1}")
        if not 0 <= overlap < max_tokens - self.specials:
            raise ValueError("overlap must be at least 0 and smaller than the chunk's token budget")
        if window_chars < 1:
            raise ValueError("window_chars must be at least 1")
        self.max_tokens = max_tokens
        self.budget = max_tokens - self.specials
        self.overlap = overlap
        self.window_chars = window_chars
        self._cut = _cut_pattern(tokenizer)

    def split(self, text: str, reserved: int = 0) -> list[Chunk]:
        """Chunks of `text`; `reserved` tokens of each window are kept free (for a title prefix)."""
        return list(self.iter_split(text, reserved))

    def max_window_chars(self, reserved: int = 0) -> int:
        """The most characters tokenized at once (the window grows to this when `window_chars`
        hold too few tokens for a whole chunk), besides up to `window_chars` looked back."""
        return max(4 * self.window_chars, 128 * max(1, self.budget - reserved))

    def iter_split_sections(self, text: str, starts, reserved: int = 0) -> Iterator[Chunk]:
        """Chunks that never cross a section boundary (a PDF's pages: `starts` are the offsets
        where sections begin), numbered and placed in the whole text."""
        bounds = [s for s in starts if 0 < s < len(text)]
        position = 0
        for a, b in zip([0, *bounds], [*bounds, len(text)]):
            for chunk in self.iter_split(text[a:b], reserved):
                yield Chunk(position, chunk.start + a, chunk.end + a, chunk.text, chunk.ids)
                position += 1

    def iter_split(self, text: str, reserved: int = 0) -> Iterator[Chunk]:
        """The chunks of `split`, one at a time, tokenizing `text` a window at a time: what is held
        at once is bounded by `max_window_chars` characters and their tokens, whatever the length
        of `text` (the generator keeps a reference to `text` itself until it is exhausted)."""
        budget = max(1, self.budget - reserved)
        overlap = min(self.overlap, budget - 1)
        limit = len(text)
        width = self.window_chars
        cap = self.max_window_chars(reserved)
        span = width  # how far past `c` this window reaches; doubles while no chunk fits in it
        position = 0
        # The next chunk starts at the `skip`-th token (0-based) of those that start at character `c`
        # (one character can give several tokens, e.g. a Hangul syllable decomposed into jamo).
        c, skip = 0, 0
        here = True  # the window starts at c itself (the text's start, or just after a forced cut)
        lookback = max(width, 256)  # a BERT word longer than 100 characters is one [UNK] token
        while c < limit:
            # The window text[p:q]: p at a cut character shortly before c (its tokens are the whole
            # text's), q at the last cut character within `span` after c.
            p = c if here else self._last_cut(text, max(0, c - lookback), c + 1)
            if p < 0:  # the text's start, else inside a giant "word": cut where we must
                p = 0 if c <= lookback else c
            here = False
            q, forced = self._window_end(text, c, span, cap)
            last = q >= limit
            enc = self.tokenizer(
                text[p:q], add_special_tokens=False, return_offsets_mapping=True,
                return_attention_mask=False, return_token_type_ids=False, verbose=False,
            )
            offsets, ids = enc["offset_mapping"], enc["input_ids"]
            n = len(offsets)
            start, rel = 0, c - p
            while start < n and offsets[start][0] < rel:
                start += 1
            first = start
            while start < n and start - first < skip and offsets[start][0] == rel:
                start += 1
            if start >= n:  # nothing left to chunk in this window
                if last:
                    return
                c, skip, here = q, 0, True
                continue
            word_ids = enc.word_ids() if hasattr(enc, "word_ids") else None
            # Token indices where a new pre-tokenized word starts: the only safe places to cut.
            if word_ids is None or any(w is None for w in word_ids):
                bounds = list(range(n + 1))
            else:
                bounds = [0] + [i for i in range(1, n) if word_ids[i] != word_ids[i - 1]] + [n]
            # The last window, or a forced cut, is chunked to its end; any other window only up to
            # the chunk that would need tokens past its end.
            closing = last or forced
            emitted = False
            while True:
                if not closing and start + budget >= n:
                    if emitted or span < cap:
                        break
                    closing = True  # not one chunk fits in the widest window: chunk it to its end
                end = min(start + budget, n)
                if end < n:
                    j = bisect_right(bounds, end) - 1  # last boundary <= end
                    if bounds[j] > start:
                        end = bounds[j]
                s_char, e_char = p + offsets[start][0], p + offsets[end - 1][1]
                yield Chunk(position, s_char, e_char, text[s_char:e_char], ids[start:end])
                position += 1
                emitted = True
                if end >= n:
                    break
                j = bisect_left(bounds, max(end - overlap, start + 1))  # first boundary >= that
                start = min(bounds[j], end)
            if last:
                return
            if closing:  # chunked to the window's end: the next window starts after it, no overlap
                c, skip, here = q, 0, True
                continue
            rel = offsets[start][0]
            first = start
            while first > 0 and offsets[first - 1][0] == rel:
                first -= 1
            c, skip = p + rel, start - first
            if not emitted:
                span = min(2 * span, cap)  # not one whole chunk in the window: widen it

    def _last_cut(self, text: str, lo: int, hi: int) -> int:
        """The largest q in [lo, hi) where text[q] is a cut character, or -1."""
        end, block = hi, 256
        while end > lo:
            begin = max(lo, end - block)
            found = -1
            for m in self._cut.finditer(text, begin, end):
                found = m.end() - 1
            if found >= 0:
                return found
            end, block = begin, block * 4
        return -1

    def _window_end(self, text: str, c: int, span: int, cap: int) -> tuple[int, bool]:
        """Where a window holding text[c] ends: the last cut character within `span` after c, else
        the first within `cap`, else c + cap (`forced`: no place to cut), or the text's end."""
        limit = len(text)
        if c + span >= limit:
            return limit, False
        q = self._last_cut(text, c + 1, c + span + 1)
        if q > c:
            return q, False
        m = self._cut.search(text, c + span + 1, min(limit, c + cap + 1))
        if m:
            return m.start(), False
        if c + cap >= limit:
            return limit, False
        return c + cap, True
