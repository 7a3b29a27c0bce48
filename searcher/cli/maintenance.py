"""Looking after an index: `searcher info`, `searcher check`, `searcher backup`, `searcher restore`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from searcher.cli.options import device_option, index_option, json_option
from searcher.cli.output import evaluation_line, printable
from searcher.cluster.sharded import open_index
from searcher.cluster.shards import is_sharded


@click.command()
@index_option
@json_option("Print as JSON.")
def info(index_dir, as_json):
    """Show what an index holds: documents, chunks, model, engines, size on disk (no model is loaded)."""
    data = open_index(index_dir, load_model=False).info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        if key == "per_shard":
            value = "\n".join(" " * 16 * (n > 0) + f"{s['name']}: {s['documents']} documents, {s['chunks']} chunks, "
                              f"generation {s['generation']}, {s['size_bytes'] / 2**20:.1f} MiB"
                              for n, s in enumerate(value))
        elif key == "size_bytes":
            value = f"{value / 2**20:.1f} MiB"
        elif key == "disk":
            value = ", ".join(f"{kind} {size / 2**20:.1f} MiB" for kind, size in value.items() if kind != "total")
        elif key == "evaluations":
            if not value:
                continue
            value = "\n".join(" " * 16 * (n > 0) + evaluation_line(e) for n, e in enumerate(value))
        click.echo(f"{key:>14}: {value}")


@click.command()
@index_option
@click.option("--repair", is_flag=True, help="Fix what is broken, keeping every committed document.")
@device_option
@json_option("Print the report as JSON.")
def check(index_dir, repair, device, as_json):
    """Verify an index (ids both ways, counts, manifest, files); exit 1 when broken. A sharded
    index: its manifest, every shard, and that each document is in the shard its id hashes to.

    \b
    searcher check --index indexes/notes
    searcher check --repair
    searcher check --index indexes/notes-sharded
    """
    from searcher.cluster.shards import check_sharded
    from searcher.index.check import check_index

    report = (check_sharded if is_sharded(index_dir) else check_index)(index_dir, repair=repair, device=device)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else printable(report.summary()))
    if not report.ok:
        hint = None if repair else report.repair_hint()  # only what repair can really do
        if hint:
            click.echo(hint, err=True)
        sys.exit(1)


@click.command()
@index_option
@click.option("--to", "to", required=True, type=click.Path(path_type=Path),
              help="The backup's folder (it must not exist yet).")
@json_option("Print the report as JSON.")
def backup(index_dir, to, as_json):
    """Copy one committed generation of an index (single or sharded) while it keeps serving and
    taking writes; written beside PATH and renamed when whole.

    \b
    searcher backup --index indexes/notes --to /backups/notes-2026-12-06
    """
    from searcher.cluster.backup import backup as back_up

    report = back_up(index_dir, to, progress=None if as_json else lambda message: click.echo(message, err=True))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else printable(report.summary()))


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@index_option
@click.option("--force", is_flag=True, help="Replace an index that is in the folder already.")
@json_option("Print the report as JSON.")
def restore(source, index_dir, force, as_json):
    """Put a backup (`searcher backup`) back as the index in --index; the result is checked
    before it takes the folder's place.

    \b
    searcher restore /backups/notes-2026-12-06 --index indexes/notes-restored
    searcher restore /backups/notes-2026-12-06 --index indexes/notes --force
    """
    from searcher.cluster.backup import restore as put_back

    report = put_back(source, index_dir, force=force,
                      progress=None if as_json else lambda message: click.echo(message, err=True))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else printable(report.summary()))
