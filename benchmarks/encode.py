"""Encoding throughput: searcher's encoder against sentence-transformers, same model, same texts.

    python benchmarks/encode.py [--dataset ../shared/datasets/scifact] [--device cpu|cuda]
        [--limit N] [--max-tokens 256] [--batch-size 32] [--backends st,exact,fast] [--rounds 4]

Texts are title + " " + text of each corpus document, as sentence-transformers' BEIR evaluation
builds them, truncated to --max-tokens (special tokens included) by every backend. Backends:

    st        sentence-transformers' SentenceTransformer(<packaged checkpoint>).encode, float32
    st-fp16   the same model in half precision (CUDA only; the GPU baseline)
    exact     searcher's Encoder, precision exact (float32 torch)
    fast      searcher's Encoder, precision fast (int8 ONNX Runtime on CPU, fp16 torch on CUDA)
    fastembed fastembed's TextEmbedding (ONNX Runtime, float32) on a local ONNX export of the
              packaged checkpoint (add_custom_model + specific_model_path, nothing downloaded),
              run by benchmarks/encode_peer.py in --fastembed-python (its own venv)
    infinity  infinity-emb's CPU engine (torch) on the packaged checkpoint, the same way in
              --infinity-python

--synthetic 128,256,512 encodes texts of exactly that many tokens instead (SciFact abstracts
run together and cut every N-2 tokens, decoded back to text), --limit of each, --max-tokens N,
and prints one table per length (no nDCG: the texts are not documents of the dataset).

The corpus is cut into --rounds slices; each round encodes one slice with every backend, in a
rotating order, so that load from other processes and thermal drift fall on all of them alike.
Model loading (and the one-off ONNX export) is not timed; tokenization is, for every backend.
Per backend it prints documents/s, tokens/s (real tokens, padding excluded), the ratio to `st`,
the mean and minimum cosine of its vectors to st's, and nDCG@10 of dense retrieval with its
vectors (exact inner product over the document vectors, the judged queries of qrels/test.tsv
encoded by the same backend, metrics by searcher.quality.evaluate.compute_metrics / ir-measures).
With --index-run N it instead times the whole `searcher index` command (a subprocess: loading,
chunking, encoding, FAISS and SQLite) on the first N corpus documents, once per --precision
(exact, fast, alternating over --rounds), and prints documents/s from the command's own report
and its wall time.
On CUDA it also estimates model FLOPs (2 x non-embedding parameters per token, plus attention:
4 x layers x hidden x length^2 per sequence for QK^T and AV) and the share of --peak-tflops.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from searcher.encoding.encoder import Encoder, default_model_path  # noqa: E402
from searcher.quality.evaluate import compute_metrics, load_dataset  # noqa: E402

H100_SXM_FP16_DENSE_TFLOPS = 989.0


class SentenceTransformersBackend:
    def __init__(self, device: str, max_tokens: int, batch_size: int, fp16: bool = False):
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(default_model_path()), device=device)
        if fp16:
            self.model.half()
        self.model.max_seq_length = max_tokens
        self.batch_size = batch_size
        self.device = device

    def encode(self, texts):
        return self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                 normalize_embeddings=True, show_progress_bar=False).astype(np.float32)

    def sync(self):
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()


PEER_SCRIPT = Path(__file__).resolve().parent / "encode_peer.py"


def onnx_export_folder(max_tokens: int) -> Path:
    """A float32 ONNX export of the packaged checkpoint (last hidden state), beside its tokenizer
    files with model_max_length set to `max_tokens`: what fastembed loads as a custom model."""
    import shutil

    from searcher.encoding.onnx_backend import _export, cache_dir

    folder = cache_dir() / "peers" / f"all-MiniLM-L6-v2-fp32-{max_tokens}"
    source = default_model_path()
    if not (folder / "model.onnx").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "tokenizer.json", "special_tokens_map.json", "vocab.txt"):
            shutil.copy(source / name, folder / name)
        config = json.loads((source / "tokenizer_config.json").read_text())
        (folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": max_tokens}))
        _export(source, folder / "model.tmp.onnx")
        (folder / "model.tmp.onnx").replace(folder / "model.onnx")
    return folder


def checkpoint_folder(max_tokens: int) -> Path:
    """The packaged checkpoint (links to its files) with sentence-transformers' max_seq_length set
    to `max_tokens`: what infinity-emb loads (it reads the limit from the checkpoint)."""
    from searcher.encoding.onnx_backend import cache_dir

    source = default_model_path()
    folder = cache_dir() / "peers" / f"all-MiniLM-L6-v2-st-{max_tokens}"
    folder.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.name != "sentence_bert_config.json" and not (folder / item.name).exists():
            (folder / item.name).symlink_to(item)
    config = json.loads((source / "sentence_bert_config.json").read_text())
    (folder / "sentence_bert_config.json").write_text(json.dumps({**config, "max_seq_length": max_tokens}))
    return folder


class PeerBackend:
    """A peer library in its own Python (benchmarks/encode_peer.py), fed slices through files."""

    def __init__(self, kind: str, python: str, max_tokens: int, batch_size: int, threads: int):
        import subprocess
        import tempfile

        model = onnx_export_folder(max_tokens) if kind == "fastembed" else checkpoint_folder(max_tokens)
        self.tmp = tempfile.mkdtemp(prefix=f"encode-{kind}-")
        self.proc = subprocess.Popen([python, str(PEER_SCRIPT), kind, str(model), str(max_tokens), str(batch_size),
                                      str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{kind} did not start in {python} (see its error above)")
        self.info = json.loads(line)["ready"]
        self.seconds = 0.0  # the peer's own encoding time of the last call

    def encode(self, texts):
        texts_file, out = Path(self.tmp) / "texts.json", Path(self.tmp) / "out.npy"
        texts_file.write_text(json.dumps(list(texts)), encoding="utf-8")
        self.proc.stdin.write(json.dumps({"texts": str(texts_file), "out": str(out)}) + "\n")
        self.proc.stdin.flush()
        self.seconds = json.loads(self.proc.stdout.readline())["seconds"]
        return np.load(out)

    def sync(self):
        pass


class SearcherBackend:
    def __init__(self, device: str, max_tokens: int, batch_size: int, precision: str):
        self.encoder = Encoder(None, device=device, batch_size=batch_size, precision=precision)
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.device = device

    def encode(self, texts):
        return self.encoder.encode(list(texts), batch_size=self.batch_size, max_tokens=self.max_tokens)

    sync = SentenceTransformersBackend.sync


def make_backend(name: str, device: str, max_tokens: int, batch_size: int, peers: dict | None = None,
                 threads: int = 2):
    if name == "st":
        return SentenceTransformersBackend(device, max_tokens, batch_size)
    if name == "st-fp16":
        if device != "cuda":
            raise SystemExit("st-fp16 needs --device cuda")
        return SentenceTransformersBackend(device, max_tokens, batch_size, fp16=True)
    if name in ("exact", "fast"):
        return SearcherBackend(device, max_tokens, batch_size, name)
    if name in ("fastembed", "infinity"):
        return PeerBackend(name, peers[name] or sys.executable, max_tokens, batch_size, threads)
    raise SystemExit(f"unknown backend {name!r} (st, st-fp16, exact, fast, fastembed, infinity)")


def synthetic_texts(corpus, tokens: int, count: int) -> list[str]:
    """`count` texts of `tokens` tokens each with [CLS] and [SEP] (give or take a few after
    decoding): the corpus' abstracts run together and cut every tokens - 2 word pieces."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)
    ids: list[int] = []
    for d in corpus:
        ids.extend(tok(f"{d['title']} {d['text']}", add_special_tokens=False)["input_ids"])
        if len(ids) >= count * (tokens - 2):
            break
    step = tokens - 2
    return [tok.decode(ids[i * step:(i + 1) * step]) for i in range(min(count, len(ids) // step))]


def model_flops(lengths: list[int]) -> float:
    """Forward FLOPs for sequences of these lengths: 2 x non-embedding params x tokens + attention."""
    from transformers import AutoConfig, AutoModel

    path = default_model_path()
    cfg = AutoConfig.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("embeddings."))
    tokens = sum(lengths)
    attention = sum(4 * cfg.num_hidden_layers * cfg.hidden_size * n * n for n in lengths)
    return 2.0 * params * tokens + attention


def dense_ndcg(doc_ids, doc_vecs, query_ids, query_vecs, qrels) -> float:
    scores = query_vecs @ doc_vecs.T
    top = np.argsort(-scores, axis=1)[:, :100]
    run = {q: [doc_ids[j] for j in top[i]] for i, q in enumerate(query_ids)}
    return compute_metrics(qrels, run)["nDCG@10"]


def index_run(args) -> None:
    import subprocess
    import tempfile

    precisions = (args.backends or "exact,fast").split(",")
    rows = [line for line in (args.dataset / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()][: args.index_run]
    totals = {p: {"seconds": 0.0, "wall": 0.0, "documents": 0, "chunks": 0, "tokens": 0} for p in precisions}
    with tempfile.TemporaryDirectory(prefix="encode-bench-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("\n".join(rows) + "\n", encoding="utf-8")
        for r in range(args.rounds):
            for p in precisions[r % len(precisions):] + precisions[: r % len(precisions)]:
                folder = Path(tmp) / f"index-{p}-{r}"
                cmd = [sys.executable, "-m", "searcher", "index", str(corpus), "--index", str(folder),
                       "--device", args.device, "--precision", p, "--batch-size", str(args.batch_size), "--json"]
                started = time.perf_counter()
                out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
                wall = time.perf_counter() - started
                report = json.loads(out)
                t = totals[p]
                t["seconds"] += report["seconds"]
                t["wall"] += wall
                t["documents"] += report["added"]
                t["chunks"] += report["chunks"]
                t["tokens"] += report["tokens"]
                print(f"round {r + 1}: {p} {report['added'] / report['seconds']:.1f} docs/s "
                      f"({report['seconds']:.1f}s indexing, {wall:.1f}s wall)", file=sys.stderr, flush=True)
    print(f"\n`searcher index` on the first {len(rows)} SciFact documents, device {args.device}, "
          f"{args.rounds} alternating runs, {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(f"{'precision':<9} {'docs/s':>8} {'chunks/s':>9} {'tokens/s':>9} {'index s':>8} {'wall s':>7} {'x exact':>8}")
    base = totals.get("exact", next(iter(totals.values())))
    for p, t in totals.items():
        print(f"{p:<9} {t['documents'] / t['seconds']:>8.1f} {t['chunks'] / t['seconds']:>9.1f} "
              f"{t['tokens'] / t['seconds']:>9.0f} {t['seconds'] / args.rounds:>8.1f} {t['wall'] / args.rounds:>7.1f} "
              f"{base['seconds'] / t['seconds']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps({"index_run": len(rows), "device": args.device, "results": totals}, indent=2))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact",
                    help="BEIR-layout folder (corpus.jsonl, queries.jsonl, qrels/test.tsv)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--limit", type=int, help="N documents only (quick runs): with nDCG, the judged documents "
                                              "and the first others up to N, else the first N")
    ap.add_argument("--max-tokens", type=int, default=256, help="token limit for every backend (256 or 512)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--backends", help="comma-separated (default: st,exact,fast; on CUDA st,st-fp16,exact,fast)")
    ap.add_argument("--rounds", type=int, default=4, help="slices the corpus is cut into, backends alternating")
    ap.add_argument("--no-quality", action="store_true", help="skip the query encoding and nDCG@10")
    ap.add_argument("--peak-tflops", type=float, default=H100_SXM_FP16_DENSE_TFLOPS,
                    help="GPU fp16 dense peak for the utilisation share (default: H100 SXM)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--index-run", type=int, metavar="N",
                    help="time `searcher index` end to end on the first N documents, exact vs fast")
    ap.add_argument("--synthetic", type=int, metavar="N",
                    help="texts of exactly N tokens (SciFact run together, cut every N-2 tokens); sets --max-tokens N")
    ap.add_argument("--fastembed-python", help="the Python that has fastembed (default: this one)")
    ap.add_argument("--infinity-python", help="the Python that has infinity-emb (default: this one)")
    ap.add_argument("--threads", type=int, default=None, help="threads for the peers (default: the cores)")
    args = ap.parse_args(argv)
    if args.synthetic:
        args.max_tokens = args.synthetic
        args.no_quality = True
    if args.index_run:
        return index_run(args)

    names = (args.backends or ("st,st-fp16,exact,fast" if args.device == "cuda" else "st,exact,fast")).split(",")
    if "st" not in names:
        names.insert(0, "st")  # the reference for cosines and ratios
    dataset = load_dataset(args.dataset, "test")
    corpus = dataset.corpus[: args.limit] if args.limit else dataset.corpus
    if args.limit and not args.no_quality:
        # nDCG@10 on a smaller corpus: the documents judged for the test queries, then the first others
        judged = {doc for rels in dataset.qrels.values() for doc in rels}
        corpus = [d for d in dataset.corpus if d["id"] in judged]
        corpus += [d for d in dataset.corpus if d["id"] not in judged][: max(0, args.limit - len(corpus))]
    texts = [f"{d['title']} {d['text']}".strip() for d in corpus]
    doc_ids = [d["id"] for d in corpus]
    if args.synthetic:
        texts = synthetic_texts(dataset.corpus, args.synthetic, args.limit or 300)
        doc_ids = [str(i) for i in range(len(texts))]

    import torch

    backends, load_seconds = {}, {}
    for name in names:
        started = time.perf_counter()
        backends[name] = make_backend(name, args.device, args.max_tokens, args.batch_size,
                                      {"fastembed": args.fastembed_python, "infinity": args.infinity_python},
                                      args.threads or len(os.sched_getaffinity(0)))
        backends[name].encode(texts[:8])  # warm-up: first-call allocations, lazy inits
        backends[name].sync()
        load_seconds[name] = time.perf_counter() - started
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)
    lengths = [len(x) for x in tok(texts, truncation=True, max_length=args.max_tokens)["input_ids"]]

    n = len(texts)
    bounds = np.linspace(0, n, args.rounds + 1).astype(int)
    vectors = {name: np.zeros((n, 384), np.float32) for name in names}
    seconds = dict.fromkeys(names, 0.0)
    for r in range(args.rounds):
        lo, hi = bounds[r], bounds[r + 1]
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            backend = backends[name]
            backend.sync()
            started = time.perf_counter()
            vecs = backend.encode(texts[lo:hi])
            backend.sync()
            # a peer in its own process: its own encoding time (not the passing of texts and vectors)
            seconds[name] += backend.seconds if isinstance(backend, PeerBackend) else time.perf_counter() - started
            if vectors[name].shape[1] != vecs.shape[1]:
                vectors[name] = np.zeros((n, vecs.shape[1]), np.float32)
            vectors[name][lo:hi] = vecs
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(
            f"{name} {(bounds[r + 1]) / seconds[name]:.1f} docs/s" for name in names), file=sys.stderr, flush=True)

    tokens = sum(lengths)
    flops = model_flops(lengths) if args.device == "cuda" else None
    query_ids = list(dataset.queries)
    query_texts = [dataset.queries[q] for q in query_ids]
    results = {}
    for name in names:
        cos = (vectors[name] * vectors["st"]).sum(axis=1)
        row = {
            "docs_per_s": n / seconds[name],
            "tokens_per_s": tokens / seconds[name],
            "seconds": seconds[name],
            "ratio_to_st": seconds["st"] / seconds[name],
            "mean_cosine_to_st": float(cos.mean()),
            "min_cosine_to_st": float(cos.min()),
            "load_seconds": load_seconds[name],
        }
        backend = backends[name]
        if isinstance(backend, SearcherBackend):
            row["backend"] = backend.encoder.backend
        if isinstance(backend, PeerBackend):
            row["backend"] = backend.info
        if flops is not None:
            row["tflops"] = flops / seconds[name] / 1e12
            row["share_of_peak"] = row["tflops"] / args.peak_tflops
        if not args.no_quality:
            qv = backend.encode(query_texts)
            row["ndcg@10"] = dense_ndcg(doc_ids, vectors[name], query_ids, qv, dataset.qrels)
        results[name] = row

    threads = torch.get_num_threads()
    machine = (torch.cuda.get_device_name(0) if args.device == "cuda"
               else f"{platform.processor() or platform.machine()}, {threads} torch threads")
    print(f"\n{'synthetic ' + str(args.synthetic) + '-token texts' if args.synthetic else 'SciFact'} {n} documents, {tokens} tokens ({tokens / n:.0f}/doc) at --max-tokens {args.max_tokens}, "
          f"batch {args.batch_size}, device {args.device} ({machine}), "
          f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, {args.rounds} alternating rounds")
    header = f"{'backend':<9} {'docs/s':>8} {'tokens/s':>9} {'x st':>6} {'cos mean':>9} {'cos min':>8}"
    header += f" {'nDCG@10':>8}" if not args.no_quality else ""
    header += f" {'TFLOP/s':>8} {'% peak':>7}" if flops is not None else ""
    print(header)
    for name, row in results.items():
        line = (f"{name:<9} {row['docs_per_s']:>8.1f} {row['tokens_per_s']:>9.0f} {row['ratio_to_st']:>6.2f} "
                f"{row['mean_cosine_to_st']:>9.5f} {row['min_cosine_to_st']:>8.5f}")
        if not args.no_quality:
            line += f" {row['ndcg@10']:>8.4f}"
        if flops is not None:
            line += f" {row['tflops']:>8.1f} {100 * row['share_of_peak']:>6.2f}%"
        print(line)
    for name in ("exact", "fast"):
        if "st-fp16" in results and name in results:
            print(f"{name} / st-fp16: {results['st-fp16']['seconds'] / results[name]['seconds']:.2f}x "
                  f"({results[name].get('backend')})")
    if flops is not None:
        print(f"FLOPs: {flops / 1e12:.2f} TFLOP for the corpus (2 x non-embedding params x tokens + "
              f"attention 4 x layers x hidden x length^2); peak {args.peak_tflops:g} TFLOP/s fp16 dense")
    if args.json:
        args.json.write_text(json.dumps({"documents": n, "tokens": tokens, "max_tokens": args.max_tokens,
                                         "batch_size": args.batch_size, "device": args.device,
                                         "machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
