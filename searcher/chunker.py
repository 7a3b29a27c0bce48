"""Split documents into overlapping chunks that fit the encoder.

Chunks are cut with the model's own tokenizer, at word boundaries, so that re-tokenizing a
chunk's text gives back the same tokens: a chunk never exceeds the model's limit and its
character offsets point at exactly the text that was encoded.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass


@dataclass
class Chunk:
    position: int  # 0-based order within the document
    start: int  # character offsets into the document text: text[start:end] == chunk text
    end: int
    text: str
    ids: list[int]  # token ids of the text, without special tokens


class Chunker:
    """Token-window chunker: windows of `max_tokens` (specials included) with `overlap` tokens shared."""

    def __init__(self, tokenizer, max_tokens: int, overlap: int):
        self.tokenizer = tokenizer
        self.specials = tokenizer.num_special_tokens_to_add(pair=False)
        if max_tokens <= self.specials + 1:
            raise ValueError(f"max_tokens must be more than {self.specials + 1}")
        if not 0 <= overlap < max_tokens - self.specials:
            raise ValueError("overlap must be at least 0 and smaller than the chunk's token budget")
        self.max_tokens = max_tokens
        self.budget = max_tokens - self.specials
        self.overlap = overlap

    def split(self, text: str, reserved: int = 0) -> list[Chunk]:
        """Chunks of `text`; `reserved` tokens of each window are kept free (for a title prefix)."""
        budget = max(1, self.budget - reserved)
        overlap = min(self.overlap, budget - 1)
        enc = self.tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )
        offsets, ids = enc["offset_mapping"], enc["input_ids"]
        n = len(offsets)
        if n == 0:
            return []
        word_ids = enc.word_ids() if hasattr(enc, "word_ids") else None
        # Token indices where a new pre-tokenized word starts: the only safe places to cut.
        if word_ids is None or any(w is None for w in word_ids):
            bounds = list(range(n + 1))
        else:
            bounds = [0] + [i for i in range(1, n) if word_ids[i] != word_ids[i - 1]] + [n]

        chunks: list[Chunk] = []
        start = 0
        while True:
            end = min(start + budget, n)
            if end < n:
                j = bisect_right(bounds, end) - 1  # last boundary <= end
                if bounds[j] > start:
                    end = bounds[j]
            s_char, e_char = offsets[start][0], offsets[end - 1][1]
            chunks.append(Chunk(len(chunks), s_char, e_char, text[s_char:e_char], ids[start:end]))
            if end >= n:
                return chunks
            j = bisect_left(bounds, max(end - overlap, start + 1))  # first boundary >= that
            start = min(bounds[j], end)
