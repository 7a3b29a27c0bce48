"""The `searcher` command line: a thin layer over the library. Each command parses its flags,
calls the library and prints; the commands live by what they do:

    indexing     index, watch, delete, sources
    searching    search, similar
    encoding     encode
    maintenance  info, check, backup, restore
    cluster      shard
    serving      serve (searcher/web/launcher.py), mcp
    quality      eval, train
    keys         keys add|list|remove

options.py holds the options they share, output.py how they print."""

from __future__ import annotations

import click

from searcher.cli import cluster, encoding, indexing, keys, maintenance, quality, searching, serving
from searcher.cli.output import Group


@click.group(cls=Group)
@click.version_option(package_name="searcher-engine")
def main():
    """Semantic search over your own documents."""


for command in (indexing.index, indexing.watch, indexing.delete, indexing.sources, searching.search, searching.similar, encoding.encode,
                maintenance.info, maintenance.check, maintenance.backup, maintenance.restore, cluster.shard, serving.serve, serving.mcp,
                quality.evaluate, quality.train, keys.keys):
    main.add_command(command)
