"""`searcher index` on one large single-line .txt: time, peak memory, commits, progress lines.

    python benchmarks/large_file.py [--mb 10] [--commit-every 4096] [--kill-after SECONDS]

Writes a --mb megabyte text of words drawn (seeded) from a fixed vocabulary, joined by
spaces on one line (the hardening issue's case: a 50 MB one-line .txt used to reach 6.3 GB
resident and commit nothing), then runs `searcher index FILE --index TMP --json` as its own
process with stderr not a terminal, and prints its wall time, peak resident memory
(ru_maxrss of the child), chunks, the progress lines it printed and the generations it
committed. With --kill-after the run is killed (SIGKILL) after that many seconds, and the
script reports what had been committed and what `searcher check` says.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VOCAB = ("river mountain cloud engine kitten market violin harbour forest copper glacier lantern "
         "semantic search passage vector index chunk memory window token offset query ranking").split()


def write_text(path: Path, megabytes: float, seed: int = 0) -> None:
    rng = random.Random(seed)
    size = int(megabytes * 1_000_000)
    with open(path, "w") as fh:
        written = 0
        while written < size:
            part = " ".join(rng.choices(VOCAB, k=10_000)) + " "
            fh.write(part)
            written += len(part)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=float, default=10.0)
    parser.add_argument("--commit-every", type=int, default=None)
    parser.add_argument("--kill-after", type=float, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="searcher-large-"))
    text = work / "large.txt"
    write_text(text, args.mb)
    index = work / "idx"
    cmd = [sys.executable, "-m", "searcher", "index", str(text), "--index", str(index), "--json"]
    if args.commit_every:
        cmd += ["--commit-every", str(args.commit_every)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=args.kill_after)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    progress = [line for line in err.splitlines() if line.startswith("encoding:")]
    print(f"text: {args.mb} MB on one line; exit status {proc.returncode}; {seconds:.1f} s; "
          f"peak resident {peak:.0f} MiB")
    if proc.returncode == 0:
        summary = json.loads(out)
        print(f"chunks {summary['chunks']}, tokens {summary['tokens']}, "
              f"{summary['chunks'] / seconds:.1f} chunks/s")
    print(f"progress lines on stderr: {len(progress)}" + (f" (last: {progress[-1]})" if progress else ""))
    check = subprocess.run([sys.executable, "-m", "searcher", "check", "--index", str(index), "--json"],
                           capture_output=True, text=True)
    if check.stdout:
        report = json.loads(check.stdout)
        print(f"check: ok={report['ok']}, {report['chunks']} chunks committed, notes: {report['notes']}")
    os.system(f"rm -rf {work}")


if __name__ == "__main__":
    main()
