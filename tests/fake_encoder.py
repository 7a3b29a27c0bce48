"""A small deterministic stand-in for searcher.encoding.encoder.Encoder, for tests that need no model.

It loads the default checkpoint's tokenizer (its files only, no weights), so chunking, title
prefixes and token counts are exactly what an index of the real model does; only the vectors
differ. A text's vector is the sum of fixed pseudo-random vectors of its tokens (special
tokens left out), normalised: the same text always gives the same vector, in any process, and
texts that share words have a higher cosine than texts that do not (a search for a word of a
short document finds it). It has no notion of meaning: "kitten" is no nearer to "cat" than to
"engine", so tests about what the model understands stay on the real model.

An index built with it records model "fake" and fingerprint "fake-<dimension>", which no real
checkpoint has: reopen it with Index.open(path, encoder=...) (a plain Index.open would try to
load a model called "fake", and refuses with ModelMismatchError). `searcher check --repair`
loads the manifest's model itself, so repairs that re-encode chunks need a real-model index.
"""

from __future__ import annotations

import json
from typing import Callable, Sequence

import numpy as np

from searcher.encoding.encoder import TokenizedEncoder, checkpoint_max_tokens, default_model_path

SEED = 20240607  # fixes every token's vector; change it and every fake index changes with it


class FakeEncoder(TokenizedEncoder):
    """Encoder's interface (as Index, the chunker, QueryEncoder and check use it), without a model."""

    def __init__(self, dimension: int = 64, batch_size: int = 32):
        from transformers import AutoTokenizer

        if dimension < 2:
            raise ValueError("dimension must be at least 2")
        self.path = default_model_path()
        self.name = "fake"
        self.fingerprint = f"fake-{dimension}"
        self.dimension = dimension
        self.pooling = "mean"
        self.device = "cpu"
        self.backend = "fake"
        self.precision = "exact"
        self.batch_size = batch_size
        self.model = None
        self.onnx = None
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        config = json.loads((self.path / "config.json").read_text())
        self.position_limit = int(min(config.get("max_position_embeddings", 512), 512))
        self.max_tokens = checkpoint_max_tokens(self.path, self.position_limit)
        self._learn_wrapping()
        self._special = np.array(sorted(set(self.tokenizer.all_special_ids)), dtype=np.int64)
        # One fixed unit vector per token id, from one seeded generator: identical in every instance.
        rng = np.random.default_rng(SEED)
        table = rng.standard_normal((len(self.tokenizer), dimension))
        self._table = table / np.linalg.norm(table, axis=1, keepdims=True)

    def encode_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Tokenized inputs (special tokens included) to unit vectors, in input order; `progress(n)`
        after each batch, as Encoder.encode_ids calls it."""
        batch_size = batch_size or self.batch_size
        out = np.empty((len(input_ids), self.dimension), dtype=np.float32)
        for b in range(0, len(input_ids), batch_size):
            part = range(b, min(b + batch_size, len(input_ids)))
            for i in part:
                out[i] = self._vector(input_ids[i])
            if progress:
                progress(len(part))
        return out

    def _vector(self, ids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        words = ids[~np.isin(ids, self._special)]
        if len(words) == 0:  # only special tokens (or none): still a fixed unit vector
            words = ids
        v = self._table[words].sum(axis=0) if len(words) else np.zeros(self.dimension)
        norm = np.linalg.norm(v)
        if norm < 1e-12:
            v, norm = np.eye(1, self.dimension)[0], 1.0
        return (v / norm).astype(np.float32)
