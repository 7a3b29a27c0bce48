"""The fake encoder (tests/fake_encoder.py) that the tests needing no model run on."""

from __future__ import annotations

import numpy as np
import pytest

from searcher import Index
from searcher import ModelMismatchError
from searcher.index import facade as index_module
from searcher.index import opening as opening_module

from .conftest import ANIMALS
from .fake_encoder import FakeEncoder

TEXTS = ["A kitten naps in the sun.", "Petrol engines turn wheels.", "Bread rises in a warm oven.", "x"]


def test_vectors_are_the_same_in_every_instance_batch_and_order(fake_encoder):
    other = FakeEncoder()
    a = fake_encoder.encode(TEXTS)
    assert np.array_equal(a, other.encode(TEXTS))
    assert np.array_equal(a, other.encode(TEXTS, batch_size=1))
    assert np.array_equal(a[::-1], other.encode(TEXTS[::-1]))
    ids = [fake_encoder.with_special_tokens(fake_encoder.tokenizer(t, add_special_tokens=False)["input_ids"])
           for t in TEXTS]
    assert np.array_equal(a, other.encode_ids(ids))
    assert fake_encoder.fingerprint == other.fingerprint == "fake-64" and fake_encoder.name == "fake"


def test_unit_float32_vectors_of_the_dimension(fake_encoder):
    v = fake_encoder.encode(TEXTS + [""])
    assert v.dtype == np.float32 and v.shape == (len(TEXTS) + 1, fake_encoder.dimension)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    assert fake_encoder.encode([]).shape == (0, fake_encoder.dimension)
    small = FakeEncoder(dimension=32)
    assert small.encode(TEXTS).shape == (len(TEXTS), 32) and small.fingerprint == "fake-32"


def test_special_tokens_are_wrapped_as_the_tokenizer_does(fake_encoder):
    tok = fake_encoder.tokenizer
    for text in TEXTS:
        bare = tok(text, add_special_tokens=False)["input_ids"]
        assert fake_encoder.with_special_tokens(bare) == tok(text)["input_ids"]


def test_a_shared_word_raises_the_cosine(fake_encoder):
    docs = fake_encoder.encode(TEXTS[:3])
    for i, word in enumerate(["kitten", "engines", "bread"]):
        scores = docs @ fake_encoder.encode([word])[0]
        assert int(np.argmax(scores)) == i, (word, scores)
        assert scores[i] > max(np.delete(scores, i)) + 0.1
    a, b, c = fake_encoder.encode(["cats chase mice", "mice chase cats", "cats chase birds"])
    assert a @ b == pytest.approx(1.0, abs=1e-6)  # a bag of tokens: order does not count
    assert a @ c > 0.5


def test_truncation_and_progress_follow_the_encoder_interface(fake_encoder):
    long = " ".join(["lantern"] * 600)
    assert fake_encoder.max_tokens == 256 and fake_encoder.position_limit == 512
    # Truncated to max_tokens like Encoder.encode: only repeats of the same token are cut, so the vector is the same.
    assert np.array_equal(fake_encoder.encode([long]), fake_encoder.encode([long], max_tokens=16))
    seen = []
    fake_encoder.encode(TEXTS * 3, batch_size=5, progress=seen.append)
    assert seen == [5, 5, 2]


def test_an_index_on_the_fake_searches_reopens_and_never_loads_a_model(tmp_path, fake_encoder, monkeypatch):
    for module in (index_module, opening_module):  # creating, and opening
        monkeypatch.setattr(module, "get_encoder", lambda *a, **k: pytest.fail("a model was loaded"))
    path = tmp_path / "idx"
    with Index.create(path, encoder=fake_encoder) as idx:
        report = idx.add_documents(ANIMALS)
        assert report.added == len(ANIMALS) and report.chunks == len(ANIMALS)
        assert idx.manifest["model"] == "fake" and idx.manifest["model_fingerprint"] == "fake-64"
        assert idx.manifest["dimension"] == 64 and idx.manifest["chunk_tokens"] == 256
        for word, doc_id in [("kittens", "cat"), ("petrol", "car"), ("yeast", "bread"), ("compiler", "code")]:
            assert idx.search(word, k=1, mode="dense")[0].doc_id == doc_id
        assert idx.info()["backend"] == "fake"
    with Index.open(path, encoder=fake_encoder) as idx:
        assert len(idx) == len(ANIMALS) and idx.search("coral reefs", k=1)[0].doc_id == "sea"
    with pytest.raises(ModelMismatchError, match="fake-64"):
        Index.open(path, encoder=FakeEncoder(dimension=32))


def test_an_index_on_the_fake_cannot_be_opened_with_a_model_by_name(tmp_path, fake_encoder):
    Index.create(tmp_path / "idx", encoder=fake_encoder).close()
    with pytest.raises(ModelMismatchError, match="built with model fake"):
        Index.open(tmp_path / "idx")  # a plain open would load the manifest's model: there is none called "fake"
