"""Shared fixtures: the real default model (loaded once per session), a fake encoder for the
tests that need no model (tests/fake_encoder.py: the real tokenizer, no weights), and small corpora."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from searcher import Index
from searcher.encoding.encoder import default_model_path
from searcher.index.facade import get_encoder

from .fake_encoder import FakeEncoder

ANIMALS = [
    {"id": "cat", "title": "Cats", "text": "Small felines such as kittens chase mice and nap in sunny windows."},
    {"id": "car", "title": "Engines", "text": "An automobile engine burns petrol so that the wheels turn."},
    {"id": "bread", "title": "Baking", "text": "Dough of flour, water and yeast rises before it is baked in an oven."},
    {"id": "sea", "title": "Oceans", "text": "Salt water covers most of the planet, with deep trenches and coral reefs."},
    {"id": "code", "title": "Compilers", "text": "A compiler translates source code into machine instructions."},
]


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory):
    """Exported ONNX models go to a per-session folder: the export path runs in every session,
    and the randomly initialised test checkpoints leave nothing in the user's cache."""
    import os

    folder = tmp_path_factory.mktemp("searcher-cache")
    old = os.environ.get("SEARCHER_CACHE_DIR")
    os.environ["SEARCHER_CACHE_DIR"] = str(folder)
    yield folder
    if old is None:
        os.environ.pop("SEARCHER_CACHE_DIR", None)
    else:
        os.environ["SEARCHER_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def encoder():
    """The default model as indexes get it on CPU (precision auto: the int8 ONNX fast path)."""
    return get_encoder(None, "cpu")


@pytest.fixture(scope="session")
def exact_encoder():
    """The default model in float32 torch (the path that matches sentence-transformers)."""
    return get_encoder(None, "cpu", precision="exact")


@pytest.fixture(scope="session")
def fake_encoder() -> FakeEncoder:
    """Deterministic vectors from token ids, with the default model's tokenizer (no model loaded)."""
    return FakeEncoder()


@pytest.fixture(scope="session")
def tokenizer(fake_encoder):
    """The default model's tokenizer (the same files Encoder loads; no weights needed)."""
    return fake_encoder.tokenizer


@pytest.fixture
def index(tmp_path, encoder) -> Index:
    idx = Index.create(tmp_path / "idx", device="cpu")
    yield idx
    idx.close()


@pytest.fixture
def animals_index(index) -> Index:
    index.add_documents(ANIMALS)
    return index


@pytest.fixture
def fake_index(tmp_path, fake_encoder) -> Index:
    """An empty index on the fake encoder; reopen it with Index.open(path, encoder=fake_encoder)."""
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    yield idx
    idx.close()


@pytest.fixture
def fake_animals_index(fake_index) -> Index:
    fake_index.add_documents(ANIMALS)
    return fake_index


@pytest.fixture(scope="session")
def other_model(tmp_path_factory) -> Path:
    """A different (tiny, randomly initialised) BERT checkpoint with the default tokenizer."""
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(default_model_path() / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def ray_cluster(encoder):
    """A local two-node Ray cluster on loopback (ray.cluster_utils.Cluster), one for the whole run:
    one CPU a node, small object stores, no dashboard. The test process is not left connected:
    each test connects (searcher.cluster.ray_cluster.ray_session) and disconnects. Started after the
    default model's ONNX export (the `encoder` fixture), so the nodes' actors find it cached."""
    import os

    from searcher.cluster.ray_cluster import LOOPBACK_ENV

    os.environ[LOOPBACK_ENV] = "0"  # read when Ray is imported: before the import
    pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    from ray.cluster_utils import Cluster

    store = 80 * 2**20
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": store,
                                                            "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, object_store_memory=store)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
