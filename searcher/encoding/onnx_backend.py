"""The fast CPU path: the checkpoint exported to ONNX, graph-optimised and quantised to int8.

The model is exported locally from the checkpoint folder (`torch.onnx.export`, TorchScript
exporter), its transformer blocks fused by ONNX Runtime's BERT optimiser (attention, bias +
GELU; not skip + layer norm: ONNX Runtime's CPU SkipLayerNormalization kernel took 13% of a
sequence's time where Add + LayerNormalization take 3%, benchmarks/onnx_ops.py), and its
weights quantised to int8 by
`onnxruntime.quantization.quantize_dynamic` (per output channel, 7-bit range: the
AVX2 u8 x s8 kernels saturate with full-range weights, which costs a lot of accuracy on
CPUs without VNNI). Nothing is downloaded. The result is cached under the user's cache
folder, keyed by the model's fingerprint, and written atomically, so the first run pays
a few seconds and later runs load it at once.

On SciFact with all-MiniLM-L6-v2 the vectors keep a mean cosine of about 0.993 to the exact
ones, and nDCG@10 moves by less than 0.005 (benchmarks/README.md, "Encoding").

Each sequence runs alone (no padding), one single-threaded run per core in parallel. Dynamic
quantisation picks its activation scale from the whole input tensor, so in a padded batch a
text's vector would depend on its neighbours; alone, a text always gets the same vector (as a
query, whatever else is being encoded), and it is as fast: one 240-token abstract is already
a large enough matrix, and parallel runs beat one run split over the cores.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

# Bump when the export or the quantisation changes, so that old cache entries are not reused.
EXPORT_VERSION = 2
# ONNX Runtime's session-level fusions that would undo `_optimise`'s choice (see the docstring).
DISABLED_FUSIONS = ["SkipLayerNormFusion"]

log = logging.getLogger(__name__)


class OnnxUnavailable(RuntimeError):
    """onnxruntime (or onnx, needed once to quantise) is not installed."""


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def cache_dir() -> Path:
    """Where exported models live: $SEARCHER_CACHE_DIR, else $XDG_CACHE_HOME/searcher, else ~/.cache/searcher."""
    explicit = os.environ.get("SEARCHER_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "searcher"


def cached_model_path(fingerprint: str) -> Path:
    import onnxruntime

    ort = ".".join(onnxruntime.__version__.split(".")[:2])
    return cache_dir() / "onnx" / f"{fingerprint}-int8-v{EXPORT_VERSION}-ort{ort}.onnx"


def _export(checkpoint: Path, out: Path) -> None:
    """Export the checkpoint's encoder (last hidden state) to ONNX with dynamic batch and length."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(checkpoint, local_files_only=True, attn_implementation="eager",
                                      dtype=torch.float32).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    ids = torch.ones((2, 16), dtype=torch.long)
    mask = torch.ones((2, 16), dtype=torch.long)
    mask[1, 10:] = 0  # a padded row, so that the traced graph keeps the masking
    axes = {"input_ids": {0: "batch", 1: "length"}, "attention_mask": {0: "batch", 1: "length"},
            "last_hidden_state": {0: "batch", 1: "length"}}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        # dynamo=False: the TorchScript exporter needs no onnxscript and handles this model fully.
        torch.onnx.export(LastHidden(model), (ids, mask), str(out), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)


def _optimise(src: Path, out: Path, num_heads: int, hidden_size: int) -> Path:
    """Fuse BERT blocks with ONNX Runtime's transformer optimiser; on any failure keep the plain graph."""
    try:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        fusions = FusionOptions("bert")
        fusions.enable_skip_layer_norm = False  # see the module's docstring
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size,
                                   optimization_options=fusions)
            model.save_model_to_file(str(out))
        return out
    except Exception as e:  # an architecture the fusions do not know still runs unfused
        log.info("ONNX graph optimisation skipped: %s", e)
        return src


def _quantise(src: Path, out: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint through the root logger
    try:
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         extra_options={"DefaultTensorType": 1})  # 1 = FLOAT, for outputs of fused ops
    finally:
        root.setLevel(level)


def build(checkpoint: Path, fingerprint: str, num_heads: int, hidden_size: int) -> Path:
    """The cached int8 model for this checkpoint, exporting and quantising it first if needed."""
    if not available():
        raise OnnxUnavailable("the fast CPU path needs onnxruntime and onnx (pip install onnxruntime onnx)")
    target = cached_model_path(fingerprint)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_exports(target.parent)
    log.info("exporting %s to ONNX int8 (once; cached in %s)", checkpoint, target)
    with tempfile.TemporaryDirectory(prefix=".export-", dir=target.parent) as tmp:
        tmp = Path(tmp)
        _export(checkpoint, tmp / "model.onnx")
        fused = _optimise(tmp / "model.onnx", tmp / "fused.onnx", num_heads, hidden_size)
        _quantise(fused, tmp / "int8.onnx")
        os.replace(tmp / "int8.onnx", target)  # atomic: readers see the whole file or none
    _remove_older_versions(target)
    return target


def _remove_older_versions(target: Path) -> None:
    """This model's exports of an earlier EXPORT_VERSION (same ONNX Runtime): nothing loads them again."""
    for old in target.parent.glob(target.name.replace(f"-v{EXPORT_VERSION}-", "-v*-")):
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()


def _remove_stale_exports(folder: Path, older_than_s: float = 3600) -> None:
    """Scratch folders of exports that were killed midway (a live export takes seconds)."""
    import shutil
    import time

    for scratch in folder.glob(".export-*"):
        try:
            if time.time() - scratch.stat().st_mtime > older_than_s:
                shutil.rmtree(scratch, ignore_errors=True)
        except OSError:
            pass


class OnnxModel:
    """An ONNX Runtime session on the int8 model: one sequence of token ids -> its hidden states."""

    name = "onnx-int8"

    def __init__(self, checkpoint: Path, fingerprint: str, num_heads: int, hidden_size: int,
                 threads: int | None = None, profile_prefix: str | None = None):
        """`profile_prefix`: ONNX Runtime's profiler writes its trace there (benchmarks/onnx_ops.py)."""
        import onnxruntime as ort

        self.path = build(checkpoint, fingerprint, num_heads, hidden_size)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1  # parallel across sequences instead (see above)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"],
                                            disabled_optimizers=DISABLED_FUSIONS)
        self.threads = threads or _cores()
        self._pool = None

    def run_one(self, ids: Sequence[int]) -> np.ndarray:
        """(length, hidden) float32 hidden states of one sequence (special tokens included)."""
        x = np.asarray(ids, dtype=np.int64)[None, :]
        return self.session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})[0][0]

    def run(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Hidden states of each sequence, in order; the runs spread over the cores."""
        if self.threads == 1 or len(sequences) == 1:
            return [self.run_one(s) for s in sequences]
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="searcher-onnx")
        return list(self._pool.map(self.run_one, sequences))


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
