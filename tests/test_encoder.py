import numpy as np
import pytest

from searcher import Index
from searcher.encoding.encoder import Encoder, ModelError, checkpoint_pooling, default_model_path

TEXTS = [
    "A man is eating food.",
    "The new movie is awesome, and the actors were brilliant in every scene.",
    "Vectors are L2-normalised so that inner product equals cosine similarity. " * 30,  # over the limit
    "x",
]


def test_matches_sentence_transformers_reference(exact_encoder):
    encoder = exact_encoder
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(default_model_path()), device="cpu")
    reference.max_seq_length = encoder.max_tokens
    expected = reference.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    got = encoder.encode(TEXTS, batch_size=2)
    assert got.shape == (len(TEXTS), 384) and got.dtype == np.float32
    cosines = (got * expected).sum(axis=1)
    assert np.all(cosines > 1 - 1e-4), cosines
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_order_and_batching_do_not_change_vectors(exact_encoder):
    encoder = exact_encoder
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


def test_pooling_and_length_in_the_sentence_transformers_6_layout(tmp_path):
    """Version 6 writes "pooling_mode": "mean" and keeps the length in the tokenizer's config
    (what `searcher train` saves); reading neither fell back to CLS pooling and 512 tokens."""
    import json
    import shutil

    from searcher.encoding.encoder import checkpoint_max_tokens

    folder = tmp_path / "st6"
    shutil.copytree(default_model_path(), folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"embedding_dimension": 384, "pooling_mode": "mean"}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"transformer_task": "feature-extraction"}))
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 200}))
    assert checkpoint_pooling(folder) == "mean" and checkpoint_max_tokens(folder, 512) == 200
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "cls_token"}))
    assert checkpoint_pooling(folder) == "cls"
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "weightedmean"}))
    with pytest.raises(ModelError, match="'weightedmean' pooling"):
        checkpoint_pooling(folder)


def test_bad_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a model folder"):
        Encoder(tmp_path, device="cpu")


# Abstract-like passages and short queries: int8 moves short texts the most.
MORE_TEXTS = TEXTS + [
    "Aspirin inhibits platelet aggregation by irreversibly acetylating cyclooxygenase.",
    "how do I read a file line by line",
    "Vitamin D deficiency is associated with an increased risk of respiratory infections in children.",
    "hello there",
]


def test_fast_path_agrees_with_exact_path(encoder, exact_encoder):
    assert encoder.backend == "onnx-int8" and exact_encoder.backend == "torch-fp32"
    fast = encoder.encode(MORE_TEXTS, batch_size=4)
    exact = exact_encoder.encode(MORE_TEXTS)
    assert fast.shape == exact.shape and fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    # One sequence per run: a text's vector does not depend on what it is batched with.
    assert np.array_equal(np.stack([encoder.encode([t])[0] for t in MORE_TEXTS]), fast)
    cosines = (fast * exact).sum(axis=1)
    # Measured: mean ~0.99, min ~0.98 (on "hello there"); broken quantisation gives <0.95.
    assert cosines.min() >= FAST_MIN_COSINE and cosines.mean() >= FAST_MEAN_COSINE, cosines


FAST_MIN_COSINE, FAST_MEAN_COSINE = 0.97, 0.985


def test_precision_option_selects_the_backend(tmp_path, encoder, exact_encoder):
    from searcher.encoding.encoder import pick_precision

    assert pick_precision("auto", "cpu") == "fast" and pick_precision("auto", "cuda") == "fast"
    assert pick_precision("exact", "cpu") == "exact"
    with pytest.raises(ModelError, match="unknown precision"):
        Encoder(device="cpu", precision="int4")
    with Index.create(tmp_path / "exact", device="cpu", precision="exact") as idx:
        assert idx.encoder is exact_encoder and idx.info()["backend"] == "torch-fp32"
    with Index.create(tmp_path / "fast", device="cpu") as idx:
        assert idx.encoder is encoder and idx.info()["backend"] == "onnx-int8"
    # Vectors from either path share an index: an index built fast opens exact, and finds.
    with Index.open(tmp_path / "fast", device="cpu", precision="exact") as idx:
        assert idx.encoder.backend == "torch-fp32" and idx.search("kittens", k=1) == []


def test_onnx_export_is_cached(encoder, onnx_cache):
    from searcher.encoding import onnx_backend

    path = onnx_backend.cached_model_path(encoder.fingerprint)
    assert path.is_file() and onnx_cache in path.parents
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".export-")]  # no leftovers


def test_onnx_graph_is_fused_but_keeps_plain_layer_norms(encoder):
    """Attention and bias + GELU fused, int8 GEMMs; skip + layer norm left unfused (ONNX
    Runtime's CPU SkipLayerNormalization kernel is slow: benchmarks/onnx_ops.py)."""
    import onnx

    ops = {node.op_type for node in onnx.load(str(encoder.onnx.path)).graph.node}
    assert {"QAttention", "BiasGelu", "MatMulInteger", "LayerNormalization"} <= ops, ops
    assert "SkipLayerNormalization" not in ops


def test_older_onnx_exports_of_the_model_are_removed(tmp_path):
    from searcher.encoding import onnx_backend

    target = tmp_path / f"abc-int8-v{onnx_backend.EXPORT_VERSION}-ort1.32.onnx"
    older = tmp_path / f"abc-int8-v{onnx_backend.EXPORT_VERSION - 1}-ort1.32.onnx"
    kept = [tmp_path / "abc-int8-v1-ort1.31.onnx", tmp_path / "xyz-int8-v1-ort1.32.onnx"]
    for path in (target, older, *kept):
        path.write_bytes(b"model")
    onnx_backend._remove_older_versions(target)
    assert target.is_file() and not older.exists() and all(p.is_file() for p in kept)
