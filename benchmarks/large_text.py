"""Chunking one large single-line text: time and peak memory, streamed against whole-text.

    python benchmarks/large_text.py [--mb 50] [--one-go-up-to 10] [--max-tokens 256] [--overlap 25]
        [--window-chars 32768] [--seed 0]

The text is --mb megabytes of words drawn (seeded) from a fixed vocabulary, joined by single
spaces: one line, as in the hardening issue's 50 MB .txt. Each mode runs in its own subprocess so
that its peak resident memory (ru_maxrss) is its own; chunks are dropped as they come (counted):

    iter     Chunker.iter_split: the text tokenized a window (--window-chars) at a time
    split    Chunker.split = list(iter_split): the same, but every chunk is kept (text + ids)
    one-go   the window made wider than the text: tokenized in one go with offsets and word ids,
             which is what split did before iter_split (same algorithm, one window); only run
             up to --one-go-up-to MB, since that is the one that blows up

Printed per mode: seconds, chunks, resident memory before chunking (tokenizer loaded, text
built), its peak while chunking (sampled every 2 ms, and ru_maxrss where chunking set the
process's peak), and the growth between the two. The tokenizer is the
default model's (all-MiniLM-L6-v2), loaded alone (no encoder).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VOCAB = (
    "the of and to in is that for on with as by semantic search engine encodes passages into "
    "vectors über-long words like antidisestablishmentarianism numbers 3.14159 code foo_bar(x) "
    "café naïve résumé index chunk memory window token offset document query ranking"
).split()


def make_text(megabytes: float, seed: int) -> str:
    rng = random.Random(seed)
    size = int(megabytes * 1_000_000)
    parts, length = [], 0
    while length < size:
        words = rng.choices(VOCAB, k=10_000)
        parts.append(" ".join(words))
        length += len(parts[-1]) + 1
    return " ".join(parts)[:size].rstrip()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class Sampler(threading.Thread):
    """The largest resident memory seen, sampled every few milliseconds while chunking (ru_maxrss
    alone would also count the peak of building the text)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = rss_mb(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.002)

    def stop(self) -> float:
        self.running = False
        self.join()
        return max(self.peak, rss_mb())


def child(args) -> None:
    sys.path.insert(0, str(ROOT))
    from transformers import AutoTokenizer

    from searcher.encoding.chunker import Chunker
    from searcher.encoding.encoder import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path(), local_files_only=True)
    window = 10**15 if args.child == "one-go" else args.window_chars
    chunker = Chunker(tokenizer, args.max_tokens, args.overlap, window_chars=window)
    text = make_text(args.mb, args.seed)
    chunker.split("warm up the tokenizer " * 10)
    before_rss, before_peak = rss_mb(), peak_mb()
    sampler = Sampler()
    sampler.start()
    t0 = time.perf_counter()
    if args.child == "split":
        chunks = chunker.split(text)
        count, tokens = len(chunks), sum(len(c.ids) for c in chunks)
    else:
        count = tokens = 0
        for chunk in chunker.iter_split(text):
            count, tokens = count + 1, tokens + len(chunk.ids)
    seconds = time.perf_counter() - t0
    peak = sampler.stop()
    if peak_mb() > before_peak:  # the process's lifetime peak was set while chunking: exact
        peak = max(peak, peak_mb())
    print(json.dumps({
        "mode": args.child, "mb": args.mb, "chars": len(text), "seconds": seconds, "chunks": count,
        "tokens": tokens, "rss_before_mb": before_rss, "peak_mb": peak, "growth_mb": peak - before_rss,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=50.0, help="text size in MB (default 50)")
    parser.add_argument("--one-go-up-to", type=float, default=10.0,
                        help="run the one-go mode only up to this size in MB (default 10)")
    parser.add_argument("--modes", default="iter,split,one-go")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--overlap", type=int, default=25)
    parser.add_argument("--window-chars", type=int, default=None, help="Chunker's window (default its own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.window_chars is None:
        sys.path.insert(0, str(ROOT))
        from searcher.encoding.chunker import WINDOW_CHARS

        args.window_chars = WINDOW_CHARS
    if args.child:
        return child(args)
    print(f"{args.mb:g} MB single-line text, max_tokens {args.max_tokens}, overlap {args.overlap}, "
          f"window {args.window_chars} chars")
    print(f"{'mode':<7} {'seconds':>8} {'chunks':>8} {'MB/s':>6} {'RSS before':>11} {'peak RSS':>9} {'growth':>8}")
    for mode in args.modes.split(","):
        if mode == "one-go" and args.mb > args.one_go_up_to:
            print(f"{mode:<7} skipped (over --one-go-up-to {args.one_go_up_to:g} MB)")
            continue
        cmd = [sys.executable, __file__, "--child", mode, "--mb", str(args.mb), "--max-tokens",
               str(args.max_tokens), "--overlap", str(args.overlap), "--window-chars", str(args.window_chars),
               "--seed", str(args.seed)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{mode:<7} failed (exit {out.returncode}): {out.stderr.strip()[-500:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mode:<7} {r['seconds']:8.1f} {r['chunks']:8d} {r['chars'] / 1e6 / r['seconds']:6.2f} "
              f"{r['rss_before_mb']:9.0f}MB {r['peak_mb']:7.0f}MB {r['growth_mb']:+7.0f}MB")


if __name__ == "__main__":
    main()
