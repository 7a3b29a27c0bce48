"""Serving an index: `searcher serve` (the page and JSON API, searcher/web/launcher.py) and
`searcher mcp` (the Model Context Protocol, searcher/integrations/mcp_server.py). The web layer
loads inside the commands, so `searcher --help` does not load Flask."""

from __future__ import annotations

from pathlib import Path

import click

from searcher.cli.options import (device_option, given, index_option, log_format_option, parse_index_specs,
                                  poll_option, precision_option, watch_timing)
from searcher.cli.output import log, run_logger, run_printer
from searcher.cluster.sharded import open_index
from searcher.index.facade import DEFAULT_INDEX_DIR
from searcher.logs import configure as configure_logging
from searcher.web.limits import DEFAULT_BATCH_WAIT_MS, MAX_WRITE_BYTES


@click.command()
@click.option("--index", "index_specs", multiple=True, metavar="[NAME=]DIR",
              help=f"An index to serve, as NAME=DIR or DIR (named after its folder); repeat it to serve "
                   f"several (the first is the default; ?index=NAME picks one). Default: {DEFAULT_INDEX_DIR}.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any other than loopback needs --api-keys (or --no-auth).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--threads", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Request threads (concurrent queries are encoded together in one batch).")
@click.option("--facets", "facet_fields", default="type,folder,year", show_default=True, metavar="FIELDS",
              help="The fields the page lists beside the results, with counts (metadata keys, or year).")
@click.option("--api-keys", "api_keys", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Every request needs one of the keys in FILE (`searcher keys add`); admin keys may write.")
@click.option("--no-auth", is_flag=True,
              help="Serve beyond loopback without keys: anyone who can reach it can search (never write).")
@click.option("--allowed-hosts", "allowed_hosts", multiple=True, metavar="NAMES",
              help="Host names the server answers besides localhost, IP addresses and --host (comma-separated, "
                   "repeatable; .example.com: a domain and the names under it; *: any). Any other name in a "
                   "request's Host gets 421 (DNS rebinding).")
@click.option("--max-write-mb", type=click.FloatRange(min=0.01, max=1024), default=MAX_WRITE_BYTES / 2**20,
              show_default=True, help="The largest body of a POST /api/documents, in MiB.")
@click.option("--backup-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where POST /api/backup (admin keys) writes backups; without it the server takes none.")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="ADDR",
              help="A reverse proxy (IP address or network, e.g. 127.0.0.1 or 10.0.0.0/8; repeatable) whose "
                   "X-Forwarded-For names the client, for the sign-in limits and the log; from any other peer "
                   "the header is ignored.")
@click.option("--watch", "watch_paths", multiple=True, type=click.Path(exists=True, path_type=Path), metavar="PATH",
              help="Keep the index in line with this folder (or file) as it changes (repeatable; `searcher watch`).")
@click.option("--follow-links", is_flag=True,
              help="With --watch: follow symlinks that lead out of the folders watched (by default they are skipped).")
@click.option("--readers", multiple=True, metavar="ENTRIES",
              help="With --watch: who may read what it indexes (user:NAME, group:NAME, comma-separated or repeated; "
                   "`everyone`), as `searcher index --readers` (docs/access.md). Without it a new file has no "
                   "readers and a changed one keeps those it has.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Serve a sharded index's shards on Ray Serve, one deployment each (pip install -e '.[ray]'); "
                   "this process is the front (the same page and API). Alone: a Ray of its own on 127.0.0.1; "
                   "auto: the cluster `ray start` made here; or HOST:PORT / ray://HOST:PORT.")
@click.option("--replicas", type=click.IntRange(1, 64), default=None,
              help="With --ray: copies of each shard (default 1); with 2 or more a shard survives losing one.")
@click.option("--batch-wait-ms", type=click.FloatRange(0, 1000), default=DEFAULT_BATCH_WAIT_MS, show_default=True,
              help="How long an encoder pass that is not full waits for more concurrent requests (searches, "
                   "/v1/embeddings) before it runs; 0 never waits (requests arriving during a pass still share the next).")
@watch_timing
@poll_option
@device_option
@precision_option
@log_format_option
@click.pass_context
def serve(ctx, index_specs, host, port, threads, facet_fields, api_keys, no_auth, allowed_hosts, max_write_mb,
          backup_dir, trusted_proxies, watch_paths, follow_links, readers, ray_address, replicas, batch_wait_ms,
          reconcile, debounce, settle, poll_interval, device, precision, log_format):
    """Serve the search page and its JSON API (waitress), e.g. on http://127.0.0.1:8000.

    \b
    searcher serve --index indexes/notes --port 8080
    searcher serve --index notes=indexes/notes --index mail=/srv/mail-index
    searcher serve --facets author,type,year
    searcher serve --host 0.0.0.0 --api-keys keys.txt --allowed-hosts search.example.com
    searcher serve --api-keys keys.txt --allowed-hosts search.example.com --trusted-proxy 127.0.0.1 --log-format json
    searcher serve --watch ~/notes --watch ~/papers
    searcher serve --ray auto --index sharded/ --replicas 2
    """
    from searcher.web.launcher import ServeConfig, ServeConfigError, serve as launch

    configure_logging(log_format)
    specs = parse_index_specs(index_specs)
    timing = given(ctx, "reconcile", "debounce", "settle")
    if timing and not watch_paths:
        raise click.UsageError(f"{', '.join(timing)} set how --watch keeps time: give --watch PATH too")
    try:
        config = ServeConfig(
            indexes=specs, host=host, port=port, threads=threads, facets=facet_fields.split(","), api_keys=api_keys,
            no_auth=no_auth, allowed_hosts=allowed_hosts, max_write_bytes=int(max_write_mb * 2**20),
            backup_dir=backup_dir, trusted_proxies=trusted_proxies, watch=watch_paths, follow_links=follow_links,
            readers=readers or None, reconcile=reconcile, debounce=debounce / 1000,
            settle=settle, ray_address=ray_address, replicas=replicas, device=device, precision=precision,
            poll_interval=poll_interval, batch_wait_ms=batch_wait_ms)
        if log_format == "json":
            launch(config, say=log.info, warn=log.warning, on_run=run_logger())
        else:
            launch(config, say=click.echo, warn=lambda line: click.echo(line, err=True), on_run=run_printer())
    except ServeConfigError as e:
        if e.option:
            raise click.BadParameter(str(e), param_hint=e.option) from None
        raise click.UsageError(str(e)) from None


@click.command("mcp")
@index_option
@click.option("--url", help="Read a running `searcher serve` (e.g. http://127.0.0.1:8000) instead of --index.")
@click.option("--http", "http_port", type=click.IntRange(1, 65535),
              help="Serve MCP's streamable HTTP transport on 127.0.0.1:PORT instead of stdio.")
@click.option("--user", metavar="NAME", help="Read --index as this user: only the documents without readers and "
                                             "those whose readers name the user or one of --groups (docs/access.md).")
@click.option("--groups", metavar="NAMES", help="The user's groups, comma-separated (with or without --user).")
@device_option
@precision_option
@click.pass_context
def mcp(ctx, index_dir, url, http_port, user, groups, device, precision):
    """Serve the index to AI assistants over the Model Context Protocol (stdio by default).

    \b
    searcher mcp --index indexes/notes
    searcher mcp --url http://127.0.0.1:8000 --http 8765
    searcher mcp --index indexes/shared --user ann --groups finance
    """
    try:
        from searcher.integrations.mcp_server import require_sdk, serve as serve_mcp

        require_sdk()
    except ImportError as e:
        raise click.ClickException(str(e)) from None
    access = None
    if user or groups is not None:
        from searcher.search.access import Viewer

        if url:
            raise click.UsageError("--user and --groups read --index as someone; over --url the server's key decides")
        try:
            access = Viewer(user or None, groups or ())
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--user/--groups") from None
    if url:
        from searcher.remote import RemoteIndex

        if given(ctx, "index_dir"):
            raise click.UsageError("give --index or --url, not both")
        try:
            source = RemoteIndex(url)
            source.check()  # a wrong URL fails now, not as empty results later
        except ValueError as e:
            raise click.UsageError(str(e)) from None
    else:
        source = open_index(index_dir, device=device, precision=precision)  # once: later commits show up anyway
        source.search("warm up", k=1)  # the first forward pass is slow; pay it before the first call
    try:
        serve_mcp(source, http_port, access)
    finally:
        source.close()
