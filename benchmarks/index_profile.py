"""Where the time of an index run goes, by stage, against the encoder alone on the same chunks.

    python benchmarks/index_profile.py [--dataset ../shared/datasets/scifact] [--docs 1500]
        [--rounds 2] [--workers N] [--batch-size 32] [--precision auto|exact|fast] [--files]
        [--device cpu|cuda] [--ahead 0,256]

Writes the dataset's first --docs documents as one JSON Lines file (or, with --files, one text
file each: title, blank line, text), then per round: indexes them into a fresh folder with
`Index.add_paths` in this process, every stage's functions wrapped in timers, and encodes the
very inputs that run gave the encoder with `Encoder.encode_ids` alone (the rounds alternate which
goes first, so that load from other processes falls on both alike). Model loading is not timed.

Stages (seconds summed over the run; they do not overlap in the indexing thread, so their sum
is its time less the writer's own bookkeeping, shown as "other"):

    read          pulling documents from the readers (worker processes, or this one with
                  --workers 0): waiting for a worker's file, unpickling, cleaning
    chunk         Chunker.iter_split (tokenising each document with offsets, cutting chunks)
    title tokens  tokenising titles and the document prefix
    content hash  content_hash (sha256 of each document's JSON)
    lookup        ContentStore.documents (the stored rows of a batch's ids)
    encode        waiting for the vectors at each commit (Writer.encode_pending); the encoder
                  itself runs in the writer's encoding thread, beside the other stages, and
                  its own time (Encoder.encode_ids) is shown on a line of its own
    vectors add   adding the new vectors to the FAISS index in memory
    vectors write writing the vectors file, its checksum and fsync (write_vectors)
    sqlite        the SQLite transaction with its keyword rows (ContentStore.commit)
    keywords      bringing the keyword index (tantivy or FTS5) up to the commit (finish_commit)

It prints the table, chunks/s end to end against the encoder alone, and the ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STAGES = ["read", "chunk", "title tokens", "content hash", "lookup", "encode (waited for)", "vectors add",
          "vectors write", "sqlite", "keywords"]


class Timers:
    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.inputs: list = []

    def wrap(self, owner, name: str, stage: str, generator: bool = False):
        """Replace owner.name by a timed version (generators: the time spent in each next())."""
        original = getattr(owner, name)
        timers = self

        if generator:
            @functools.wraps(original)
            def timed(*a, **kw):
                it = original(*a, **kw)
                while True:
                    started = time.perf_counter()
                    try:
                        item = next(it)
                    except StopIteration:
                        timers.seconds[stage] += time.perf_counter() - started
                        return
                    timers.seconds[stage] += time.perf_counter() - started
                    yield item
        else:
            @functools.wraps(original)
            def timed(*a, **kw):
                started = time.perf_counter()
                try:
                    return original(*a, **kw)
                finally:
                    timers.seconds[stage] += time.perf_counter() - started

        setattr(owner, name, timed)
        return original


@contextlib.contextmanager
def instrumented(timers: Timers, encoder):
    from searcher.encoding.chunker import Chunker
    from searcher.index import live, writer, writing
    from searcher.storage import folder
    from searcher.storage.store import ContentStore

    restore = []

    def wrap(owner, name, stage, generator=False):
        restore.append((owner, name, timers.wrap(owner, name, stage, generator)))

    wrap(writing.PathRun, "documents", "read", generator=True)
    wrap(Chunker, "iter_split", "chunk", generator=True)
    wrap(writer, "title_token_ids", "title tokens")
    wrap(writer, "prefix_token_ids", "title tokens")
    wrap(writer, "content_hash", "content hash")
    wrap(writer.Writer, "encode_pending", "encode (waited for)")
    wrap(ContentStore, "documents", "lookup")
    wrap(folder, "write_vectors", "vectors write")
    wrap(ContentStore, "commit", "sqlite")
    wrap(live, "finish_commit", "keywords")
    original_encode = encoder.encode_ids

    def encode_ids(inputs, *a, **kw):
        timers.inputs.extend(inputs)
        started = time.perf_counter()
        try:
            return original_encode(inputs, *a, **kw)
        finally:
            timers.seconds["encode_ids"] += time.perf_counter() - started

    encoder.encode_ids = encode_ids
    original_commit = live.LiveGeneration.commit

    def commit(self, changes):
        vectors_class = type(self.vectors)  # known only here: the generation's vector store
        add = timers.wrap(vectors_class, "add", "vectors add")
        try:
            return original_commit(self, changes)
        finally:
            vectors_class.add = add

    live.LiveGeneration.commit = commit
    try:
        yield
    finally:
        del encoder.encode_ids
        live.LiveGeneration.commit = original_commit
        for owner, name, original in reversed(restore):
            setattr(owner, name, original)


def write_corpus(dataset: Path, docs: int, folder: Path, files: bool) -> Path:
    rows = []
    with open(dataset / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) >= docs:
                break
    folder.mkdir(parents=True, exist_ok=True)
    if files:
        for row in rows:
            (folder / f"{row['_id']}.txt").write_text(f"{row['title']}\n\n{row['text']}\n", encoding="utf-8")
        return folder
    corpus = folder / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": r["_id"], "title": r["title"], "text": r["text"]}) + "\n"
                              for r in rows), encoding="utf-8")
    return corpus


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None, help="reader processes (default: LoadOptions')")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--files", action="store_true", help="one text file a document instead of one JSON Lines file")
    ap.add_argument("--ahead", default=None,
                    help="comma-separated values of writer.ENCODE_AHEAD to compare, alternating (0: encode only "
                         "at each commit, as before issue 26.6); default: the writer's")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from searcher.encoding.encoder import get_encoder
    from searcher.index.facade import Index
    from searcher.readers.options import LoadOptions

    encoder = get_encoder(None, args.device, precision=args.precision)
    encoder.encode(["warm up the encoder"])
    from searcher.index import writer as writer_module

    settings = [int(a) for a in args.ahead.split(",")] if args.ahead else [writer_module.ENCODE_AHEAD]
    all_totals = {a: {"index": 0.0, "alone": 0.0, "chunks": 0, "stages": defaultdict(float)} for a in settings}
    with tempfile.TemporaryDirectory(prefix="index-profile-") as tmp:
        corpus = write_corpus(args.dataset, args.docs, Path(tmp) / "corpus", args.files)
        options = LoadOptions(workers=args.workers) if args.workers is not None else LoadOptions()
        previous_inputs: list = []
        for r, ahead in ((r, a) for r in range(args.rounds) for a in (settings if r % 2 == 0 else settings[::-1])):
            totals = all_totals[ahead]
            writer_module.ENCODE_AHEAD = ahead or 10**12
            timers = Timers()
            folder = Path(tmp) / f"index-{r}"

            def index_run():
                idx = Index.create(folder, encoder=encoder, batch_size=args.batch_size)
                with instrumented(timers, encoder):
                    started = time.perf_counter()
                    report = idx.add_paths([corpus], options)
                    seconds = time.perf_counter() - started
                idx.close()
                return report, seconds

            def alone_run(inputs):
                started = time.perf_counter()
                encoder.encode_ids(inputs, batch_size=args.batch_size)
                return time.perf_counter() - started

            if r % 2 == 0 or not previous_inputs:
                report, seconds = index_run()
                alone = alone_run(timers.inputs)
            else:  # the encoder alone first, on the inputs of the run before (the same chunks)
                alone = alone_run(previous_inputs)
                report, seconds = index_run()
            previous_inputs = list(timers.inputs)
            shutil.rmtree(folder, ignore_errors=True)
            totals["index"] += seconds
            totals["alone"] += alone
            totals["chunks"] += report.chunks
            for stage, s in timers.seconds.items():
                totals["stages"][stage] += s
            print(f"round {r + 1}, ENCODE_AHEAD {ahead}: {report.chunks} chunks, index {report.chunks / seconds:.1f} chunks/s, "
                  f"encoder alone {len(timers.inputs) / alone:.1f} chunks/s", file=sys.stderr, flush=True)
    for ahead, totals in all_totals.items():
        total = totals["index"]
        print(f"\nENCODE_AHEAD {ahead}: `Index.add_paths` on the first {args.docs} SciFact documents "
              f"({'one file each' if args.files else 'one JSON Lines file'}), {totals['chunks'] // args.rounds} chunks, "
              f"precision {encoder.backend}, batch {args.batch_size}, workers {options.workers}, {args.rounds} rounds, "
              f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
        print("| stage | seconds | share |")
        print("| --- | --- | --- |")
        for stage in STAGES:
            s = totals["stages"].get(stage, 0.0) / args.rounds
            print(f"| {stage} | {s:.2f} | {100 * s / (total / args.rounds):.1f}% |")
        other = total - sum(v for k, v in totals["stages"].items() if k in STAGES)
        print(f"| other (the writer's own work) | {other / args.rounds:.2f} | {100 * other / total:.1f}% |")
        print(f"| **total** | {total / args.rounds:.2f} | 100% |")
        print(f"| encode_ids itself (in the encoding thread, overlapping the stages above) | "
              f"{totals['stages']['encode_ids'] / args.rounds:.2f} | "
              f"{100 * totals['stages']['encode_ids'] / total:.1f}% |")
        end_to_end = totals["chunks"] / total
        alone = totals["chunks"] / totals["alone"]
        print(f"\nend to end {end_to_end:.1f} chunks/s; encoder alone on the same inputs {alone:.1f} chunks/s; "
              f"ratio {end_to_end / alone:.2f}")
    if args.json:
        args.json.write_text(json.dumps(all_totals, indent=2))


if __name__ == "__main__":
    main()
