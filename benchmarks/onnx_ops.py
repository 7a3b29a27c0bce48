"""Where the int8 CPU encoder's time goes, by ONNX operator: what bounds `--precision fast`.

    python benchmarks/onnx_ops.py [--dataset ../shared/datasets/scifact] [--limit 64]
        [--max-tokens 256] [--model DIR] [--json FILE]

Loads searcher's int8 ONNX model (searcher/encoding/onnx_backend.py: exported, fused and
quantised once, then cached), encodes --limit SciFact abstracts (title + " " + text, cut to
--max-tokens) one sequence a run on one thread, as the encoder runs them, first timed without
and then with ONNX Runtime's profiler, and prints the milliseconds a sequence and each operator
type's share of the kernel time. The int8 GEMMs are `DynamicQuantizeMatMul` (attention output,
feed-forward in and out) and the Q/K/V projection inside `QAttention`, whose time is estimated
as DynamicQuantizeMatMul's scaled by their FLOPs (a token costs hidden x 3 hidden in the Q/K/V
projection against hidden x (hidden + 2 ffn) in the others, ffn the intermediate size); the
rest of `QAttention` is float32 attention (QKᵀ, softmax, AV). "If only the int8 GEMMs cost" is the rate the encoder would reach were every
other operator free: the ceiling of this approach on this CPU.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from searcher.encoding.encoder import Encoder  # noqa: E402
from searcher.encoding.onnx_backend import OnnxModel  # noqa: E402


def kernel_times(model: OnnxModel, inputs) -> collections.Counter:
    """Microseconds of kernel time per operator type over one pass of `inputs` through a
    profiling `model`."""
    for ids in inputs:
        model.run_one(ids)
    events = json.loads(Path(model.session.end_profiling()).read_text())
    times: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"]
    return times


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--model", help="a checkpoint folder (default: the packaged all-MiniLM-L6-v2)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    encoder = Encoder(args.model, device="cpu", precision="fast")
    rows = [json.loads(line) for line in (args.dataset / "corpus.jsonl").open(encoding="utf-8")][: args.limit]
    inputs = encoder.model_inputs([f"{r.get('title', '')} {r.get('text', '')}".strip() for r in rows],
                                  max_tokens=args.max_tokens)
    tokens = sum(map(len, inputs))

    import transformers

    config = transformers.AutoConfig.from_pretrained(encoder.path, local_files_only=True)
    hidden, ffn = int(config.hidden_size), int(config.intermediate_size)
    for ids in inputs[:4]:  # the encoder's own session, as it encodes (one thread a sequence)
        encoder.onnx.run_one(ids)
    started = time.perf_counter()
    for ids in inputs:
        encoder.onnx.run_one(ids)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="onnx-ops-") as folder:
        profiling = OnnxModel(encoder.path, encoder.fingerprint, int(config.num_attention_heads), hidden,
                              profile_prefix=str(Path(folder) / "ops"))
        times = kernel_times(profiling, inputs)

    total = sum(times.values())
    share = {op: t / total for op, t in times.items()}
    qkv_share = share.get("DynamicQuantizeMatMul", 0.0) * 3 * hidden / (hidden + 2 * ffn)
    gemm_share = share.get("DynamicQuantizeMatMul", 0.0) + min(qkv_share, share.get("QAttention", 0.0))
    per_thread = tokens / seconds
    print(f"int8 ONNX model {encoder.onnx.path.name}, {len(inputs)} SciFact texts, {tokens / len(inputs):.0f} "
          f"tokens each at --max-tokens {args.max_tokens}, one thread, {platform.machine()}, "
          f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"{seconds * 1000 / len(inputs):.1f} ms a sequence, {per_thread:,.0f} tokens/s on one thread\n")
    print("| operator | share of kernel time |")
    print("| --- | --- |")
    for op, part in sorted(share.items(), key=lambda kv: -kv[1]):
        if part >= 0.001:
            print(f"| {op} | {100 * part:.1f}% |")
    print(f"\nint8 GEMMs (DynamicQuantizeMatMul + the Q/K/V projection of QAttention, estimated): "
          f"{100 * gemm_share:.0f}%; float32 attention inside QAttention: "
          f"{100 * (share.get('QAttention', 0.0) - min(qkv_share, share.get('QAttention', 0.0))):.0f}%")
    print(f"If only the int8 GEMMs cost: {per_thread / gemm_share:,.0f} tokens/s on one thread "
          f"({1 / gemm_share:.2f}x today)")
    if args.json:
        args.json.write_text(json.dumps({"ms_per_sequence": seconds * 1000 / len(inputs), "tokens_per_s": per_thread,
                                         "shares": share, "int8_gemm_share": gemm_share}, indent=2))


if __name__ == "__main__":
    main()
