import random
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searcher.encoding.chunker import Chunker

TEXT = (
    "Semantic search engines encode passages into vectors. Über-long words like "
    "antidisestablishmentarianism, numbers like 3.14159 and code like foo_bar(x) all appear. "
) * 40


@pytest.mark.parametrize("max_tokens,overlap", [(32, 4), (64, 0), (128, 12), (512, 51)])
def test_chunks_fit_limit_and_offsets_map_back(tokenizer, max_tokens, overlap):
    chunks = Chunker(tokenizer, max_tokens, overlap).split(TEXT)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.text == TEXT[chunk.start:chunk.end]
        retokenized = tokenizer(chunk.text, add_special_tokens=True)["input_ids"]
        assert len(retokenized) <= max_tokens
        assert retokenized[1:-1] == chunk.ids  # the text gives back exactly the encoded tokens
    assert chunks[0].start == 0 and chunks[-1].end == len(TEXT.rstrip())
    assert [c.position for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize("overlap", [0, 6, 20])
def test_overlap_is_respected(tokenizer, overlap):
    chunks = Chunker(tokenizer, 48, overlap).split(TEXT)
    for a, b in zip(chunks, chunks[1:]):
        shared = a.end - b.start  # characters both chunks cover
        if overlap == 0:
            assert b.start >= a.end
        else:
            assert shared > 0
            shared_tokens = len(tokenizer(TEXT[b.start:a.end], add_special_tokens=False)["input_ids"])
            # cuts move to word boundaries, so the shared span is close to the asked overlap
            assert overlap - 8 <= shared_tokens <= overlap


def test_short_and_empty_text(tokenizer):
    chunker = Chunker(tokenizer, 64, 6)
    assert chunker.split("") == []
    [only] = chunker.split("  one short sentence ")
    assert only.text == "one short sentence" and (only.start, only.end) == (2, 20)


def test_reserved_tokens_shrink_the_window(tokenizer):
    chunker = Chunker(tokenizer, 64, 0)
    assert all(len(c.ids) <= 64 - 2 - 10 for c in chunker.split(TEXT, reserved=10))


def test_unbreakable_word_is_cut(tokenizer):
    text = "x" * 90 + " " + "verylongword" * 30
    chunks = Chunker(tokenizer, 16, 2).split(text)
    assert all(len(c.ids) <= 14 for c in chunks)
    assert "".join(text[c.start:c.end] for c in chunks[:1]) == chunks[0].text


def test_bad_settings_are_refused(tokenizer):
    with pytest.raises(ValueError):
        Chunker(tokenizer, 2, 0)
    with pytest.raises(ValueError):
        Chunker(tokenizer, 32, 30)


# -- streaming: iter_split tokenizes a window at a time -------------------------------------------

WHOLE = 10**12  # a window wider than any text: the text is tokenized in one go

# Pieces that stress the claim that a window cut before whitespace, ASCII punctuation or a CJK
# ideograph tokenizes like the whole text: accents (precomposed and combining), CJK and Hangul
# (several tokens per character), punctuation runs, emoji, control and zero-width characters that
# the normalizer drops, non-ASCII spaces, and words over WordPiece's 100 characters ([UNK]).
PIECES = [
    "the", "Search", "Über", "naïve", "cafe\u0301", "\u0301", "antidisestablishmentarianism", "3.14159",
    "foo_bar(x)", "...", "!!!", "?!", "—", "«»", "中文", "日本語です。", "大韓民國", "한국어", "😀", "x" * 150,
    "İstanbul", "ﬁ", "Σίσυφος", "Ａｂｃ", "\u00a0", "\u3000", "\x0b", "\x85", "\x1c", "\u200b", "\x00", "\ufffd",
    " ", " ", " ", "  ", "\n", "\t", "\r\n", ", ", ". ",
]
TEXTS = st.one_of(
    st.lists(st.sampled_from(PIECES), min_size=20, max_size=600).map("".join),
    st.text(min_size=100, max_size=1500),  # any Unicode at all
    st.text(alphabet=st.sampled_from(list("ab é\u0301.中한\n\x0b\u3000")), min_size=100, max_size=1500),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    text=TEXTS,
    settings_=st.sampled_from([(16, 3), (32, 0), (64, 12), (128, 30)]),
    window=st.sampled_from([1, 7, 50, 200]),
    reserved=st.integers(0, 6),
)
def test_windows_give_the_chunks_of_one_go(tokenizer, text, settings_, window, reserved):
    one_go = Chunker(tokenizer, *settings_, window_chars=WHOLE).split(text, reserved)
    streamed = Chunker(tokenizer, *settings_, window_chars=window).iter_split(text, reserved)
    assert list(streamed) == one_go


@pytest.mark.parametrize("max_tokens,overlap", [(32, 4), (128, 12), (512, 51)])
@pytest.mark.parametrize("window", [50, 200, 1000])
def test_windows_on_the_sample_text(tokenizer, max_tokens, overlap, window):
    """Small windows against chunks of up to 510 tokens: the window widens until a chunk fits."""
    chunker = Chunker(tokenizer, max_tokens, overlap, window_chars=window)
    assert chunker.split(TEXT) == Chunker(tokenizer, max_tokens, overlap, window_chars=WHOLE).split(TEXT)
    assert chunker.split(TEXT, reserved=10) == Chunker(
        tokenizer, max_tokens, overlap, window_chars=WHOLE).split(TEXT, reserved=10)


def test_long_words_within_reach_are_exact(tokenizer):
    """Words longer than the window (each one [UNK]): the window reaches past them, exactly as
    long as a chunk's worth of tokens fits in max_window_chars."""
    text = " ".join(["ab" * 150, "a few short words in between", "cd" * 400, "and more words"] * 20)
    chunker = Chunker(tokenizer, 32, 4, window_chars=200)
    assert len(text) > 100 * chunker.window_chars and 2 * 800 < chunker.max_window_chars()
    assert chunker.split(text) == Chunker(tokenizer, 32, 4, window_chars=WHOLE).split(text)


def assert_sound(text, chunks, budget):
    assert chunks
    for chunk in chunks:
        assert text[chunk.start:chunk.end] == chunk.text
        assert 0 < len(chunk.ids) <= budget
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for a, b in zip(chunks, chunks[1:]):
        assert a.start < b.start and a.end <= b.end


@pytest.mark.parametrize("window", [200, 4096])
def test_text_without_whitespace(tokenizer, window):
    """Megabytes of one "word": cut where it must be, in bounded windows, and it terminates."""
    chunker = Chunker(tokenizer, 64, 6, window_chars=window)
    text = "x" * 1_000_000
    chunks = chunker.split(text)
    assert_sound(text, chunks, chunker.budget)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert max(c.end - c.start for c in chunks) <= chunker.max_window_chars()
    # a giant word between ordinary words: the words around it are chunked as usual
    text = "some words before " * 50 + "y" * 300_000 + " and some words after" * 50
    chunks = chunker.split(text)
    assert_sound(text, chunks, chunker.budget)
    assert chunks[0].text.startswith("some words before") and chunks[-1].text.endswith("words after")


def test_punctuation_without_whitespace_is_exact(tokenizer):
    """Minified data has no spaces but cuts before punctuation keep it exact."""
    text = "".join(f'{{"key{i}":[{i},"value_{i}"]}},' for i in range(3000))
    chunker = Chunker(tokenizer, 64, 6, window_chars=500)
    assert chunker.split(text) == Chunker(tokenizer, 64, 6, window_chars=WHOLE).split(text)


def test_iter_split_empty_and_short(tokenizer):
    chunker = Chunker(tokenizer, 64, 6, window_chars=5)
    assert list(chunker.iter_split("")) == [] and list(chunker.iter_split(" \n\t ")) == []
    [only] = chunker.iter_split("  one short sentence ")
    assert only.text == "one short sentence" and (only.start, only.end) == (2, 20)


class CountingTokenizer:
    """The tokenizer, counting the characters it is given."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.chars = 0

    def __call__(self, text, **kwargs):
        self.chars += len(text)
        return self._tokenizer(text, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def large_text(megabytes: float, seed: int = 0) -> str:
    words = TEXT.split()
    rng = random.Random(seed)
    return " ".join(rng.choices(words, k=int(megabytes * 1_000_000 / 7)))


def test_iter_split_is_lazy(tokenizer):
    counting = CountingTokenizer(tokenizer)
    chunker = Chunker(counting, 128, 12)
    text = large_text(4)
    chunks = chunker.iter_split(text)
    first = next(chunks)
    assert first.start == 0 and first.text == text[: first.end]
    assert counting.chars <= chunker.window_chars + 1000  # one window, not 4 MB
    for _ in range(200):
        next(chunks)
    assert counting.chars < 20 * chunker.window_chars


def traced_peak(chunker, text) -> tuple[int, int]:
    """Peak Python-side memory (bytes) while iterating the chunks of `text`, dropping each; and
    how many there were."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        count = sum(1 for _ in chunker.iter_split(text))
        return tracemalloc.get_traced_memory()[1] - base, count
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_window(tokenizer):
    """Streaming 1.5 MB holds a few MB (one window's tokens, offsets and word ids), less than
    tokenizing a sixth of it in one go, which grows with the text (~70 MB per MB)."""
    text = large_text(1.5)
    streamed, count = traced_peak(Chunker(tokenizer, 256, 25), text)
    assert count > 1000
    assert streamed < 10_000_000, f"peak {streamed / 1e6:.1f} MB"
    one_go, _ = traced_peak(Chunker(tokenizer, 256, 25, window_chars=WHOLE), text[:250_000])
    assert one_go > streamed
