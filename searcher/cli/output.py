"""What the commands print, and how: text from documents made safe for a terminal, progress,
hits, a watcher's runs, and errors a user can act on as one line."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from contextlib import contextmanager

import click

from searcher.encoding.encoder import ModelError
from searcher.errors import SearcherError

log = logging.getLogger("searcher.cli")  # what the commands print, with --log-format json

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class Group(click.Group):
    """Turns the errors a user can act on into a one-line message and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (SearcherError, ModelError, ValueError) as e:
            raise click.ClickException(str(e)) from e


def printable(text: str) -> str:
    """Text from documents made safe to print: control characters (terminal escapes, bells)
    become a visible `\\xNN` (newlines and tabs are kept)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@contextmanager
def progress_bar(unit: str = " chunks", desc: str = "encoding", every: float = 5.0, logged: bool = False):
    """A progress callback: a tqdm bar on a terminal; elsewhere (a log file, CI) a line on stderr
    every `every` seconds, as pip and git do; `logged` (--log-format json): that line as a log record."""
    if sys.stderr.isatty() and not logged:
        from tqdm import tqdm

        with tqdm(unit=unit, desc=desc, file=sys.stderr) as bar:
            yield bar.update
        return
    started = last = time.monotonic()
    done = 0

    def update(n: int = 1) -> None:
        nonlocal done, last
        done += n
        now = time.monotonic()
        if now - last >= every:
            last = now
            line = f"{desc}: {done}{unit} ({done / (now - started):.1f}{unit}/s)"
            if logged:
                log.info(line, extra={"progress": desc, "done": done})
            else:
                click.echo(line, err=True)

    yield update


def run_printer(as_json: bool = False):
    """on_run for a watcher: each run's summary (or report as one JSON line) on stdout."""
    from datetime import datetime

    def on_run(kind: str, report) -> None:
        at = datetime.now().astimezone().isoformat(timespec="seconds")
        if as_json:
            click.echo(json.dumps({"run": kind, "at": at, **report.to_dict()}))
        else:
            click.echo(f"[{at}] {kind}: {printable(report.summary())}")

    return on_run


def run_logger():
    """on_run for a watcher with --log-format json: each run's summary as a log record, its
    report in the field `report`."""

    def on_run(kind: str, report) -> None:
        log.info("%s: %s", kind, report.summary(), extra={"run": kind, "report": report.to_dict()})

    return on_run


def say(log_format: str, line: str, err: bool = False, **fields) -> None:
    """A line a command prints (on stderr with `err`): as a log record (INFO, with `fields`)
    with --log-format json, where every line on stderr is JSON."""
    if log_format == "json":
        log.info(line, extra=fields)
    else:
        click.echo(line, err=err)


def scores(hit) -> str:
    """A hit's scores as people read them: the cosine similarity and BM25 where known (the same
    scale for every query), else the score it was ranked by."""
    shown = [f"similarity {hit.cosine:.2f}"] if hit.cosine is not None else [f"{hit.score:.3f}"]
    if hit.bm25 is not None:
        shown.append(f"BM25 {hit.bm25:.1f}")
    return ", ".join(shown)


def print_hits(hits, passages: bool = True) -> None:
    """Hits, best first: rank, title and score; where each is from; its passage (`passages`)."""
    for rank, hit in enumerate(hits, 1):
        click.echo(click.style(f"{rank}. {printable(hit.title or hit.doc_id)}", bold=True) + f"  ({scores(hit)})")
        click.echo(f"   {printable(hit.source or hit.doc_id)}")
        if passages:
            passage = printable(" ".join(hit.passage.split()))
            click.echo(f"   {passage[:300]}{'...' if len(passage) > 300 else ''}\n")


def evaluation_line(record: dict) -> str:
    """One stored `searcher eval` result on one line (searcher info)."""
    metrics = ", ".join(f"{name} {value:.4f}" if isinstance(value, (int, float)) else f"{name} {value}"
                        for name, value in (record.get("metrics") or {}).items())
    return (f"{record.get('dataset')} ({record.get('split')}, {record.get('mode')}): {metrics}; "
            f"{record.get('queries')} queries, generation {record.get('generation')}, {record.get('recorded_at')}")
