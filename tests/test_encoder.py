import numpy as np
import pytest

from searcher.encoder import Encoder, ModelError, checkpoint_pooling, default_model_path

TEXTS = [
    "A man is eating food.",
    "The new movie is awesome, and the actors were brilliant in every scene.",
    "Vectors are L2-normalised so that inner product equals cosine similarity. " * 30,  # over the limit
    "x",
]


def test_matches_sentence_transformers_reference(encoder):
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(default_model_path()), device="cpu")
    reference.max_seq_length = encoder.max_tokens
    expected = reference.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    got = encoder.encode(TEXTS, batch_size=2)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    cosines = (got * expected).sum(axis=1)
    assert np.all(cosines > 1 - 1e-4), cosines
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_order_and_batching_do_not_change_vectors(encoder):
    one_by_one = np.stack([encoder.encode([t])[0] for t in TEXTS])
    batched = encoder.encode(TEXTS, batch_size=3)
    assert np.allclose(one_by_one, batched, atol=1e-5)


def test_default_checkpoint_declares_mean_pooling(encoder):
    assert checkpoint_pooling(default_model_path()) == "mean"
    assert encoder.pooling == "mean" and encoder.max_tokens == 256 and encoder.position_limit == 512


def test_other_checkpoint_folder_with_chosen_pooling(other_model):
    enc = Encoder(other_model, device="cpu", pooling="cls")
    vecs = enc.encode(["hello world", "another text"])
    assert vecs.shape == (2, 32) and enc.pooling == "cls" and enc.max_tokens == 128
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_bad_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        Encoder(tmp_path, device="cpu")
