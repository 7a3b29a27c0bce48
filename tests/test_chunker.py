import pytest

from searcher.chunker import Chunker

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
