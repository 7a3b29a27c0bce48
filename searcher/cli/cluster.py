"""Spreading an index over shards: `searcher shard` (serving them on Ray: `searcher serve --ray`,
encoding on Ray: `searcher index --ray`)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from searcher.cli.options import json_option
from searcher.cluster.shards import KEYWORD_STATISTICS, MAX_SHARDS


@click.command()
@click.argument("source", type=click.Path(file_okay=False, path_type=Path))
@click.option("--shards", "count", type=int, required=True, help=f"How many shards (1 to {MAX_SHARDS}).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The new sharded index's folder (absent or empty).")
@click.option("--keyword-statistics", type=click.Choice(KEYWORD_STATISTICS), default="dfs", show_default=True,
              help="BM25 across shards: dfs, the whole collection's term statistics (a first round asks every "
                   "shard); shard, each shard's own (see docs/clusters.md).")
@json_option("Print the report as JSON.")
def shard(source, count, out, keyword_statistics, as_json):
    """Split the index in SOURCE into --shards folders under --out, by a stable hash of each
    document's id; the vectors are copied, nothing is re-encoded, SOURCE is left as it was.

    \b
    searcher shard indexes/notes --shards 4 --out indexes/notes-sharded
    searcher search "budget" --index indexes/notes-sharded
    """
    from searcher.cluster.shards import split_index

    if not 1 <= count <= MAX_SHARDS:
        raise click.BadParameter(f"must be from 1 to {MAX_SHARDS}, not {count}", param_hint="--shards")
    report = split_index(source, out, count, keyword_statistics=keyword_statistics,
                         progress=None if as_json else (lambda message: click.echo(message, err=True)))
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.summary())
