"""Writing an index: `searcher index`, `searcher watch`, `searcher delete`."""

from __future__ import annotations

import hashlib

import json
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import click

from searcher.cli.options import (device_option, index_option, json_option, log_format_option, poll_option,
                                  precision_option, watch_timing)
from searcher.cli.output import log, printable, progress_bar, run_logger, run_printer, say
from searcher.cluster.sharded import ShardedIndex, open_index
from searcher.cluster.shards import is_sharded, read_layout, shard_paths
from searcher.index.facade import ON_CONFLICT, Index
from searcher.index.sources import read_sources, sync, sync_recorded
from searcher.index.writer import IndexReport
from searcher.logs import configure as configure_logging
from searcher.readers.documents import check_readers
from searcher.readers.formats import READERS
from searcher.sources import SourceError, canonical_url, is_source_url, open_source, scheme_of
from searcher.readers.options import (DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_FILE_CHUNKS,
                                     DEFAULT_MAX_PAGES, LoadOptions)
from searcher.storage.folder import ensure_unlocked
from searcher.storage.keywords import DEFAULT_KEYWORD_ENGINE, KEYWORD_ENGINES
from searcher.storage.vectors import INDEX_TYPES

INDEX_HELP = f"""Index files and folders ({" ".join(READERS)}), and sources (s3://bucket/prefix,
https://host/docs/, imaps://user@host/INBOX),
adding to the index in --index. With no path, sync again every source the index was built from
(`searcher sources` lists them).

\b
searcher index docs/ notes.md --index indexes/notes
searcher index --python-docs
searcher index docs/ --prune        # also drop documents whose files were removed
searcher index s3://bucket/reports --endpoint-url http://127.0.0.1:9000   # MinIO; pip install -e '.[s3]'
searcher index https://docs.example.org/guide/ --crawl --crawl-pages 500
searcher index imaps://ann@mail.example.org/INBOX   # password: SEARCHER_IMAP_PASSWORD or --credentials-file
searcher index --index indexes/notes                 # sync its sources again
searcher index docs/ --index indexes/notes-sharded   # a sharded index: each document to its shard
searcher index papers/ --ray auto   # encode on the Ray cluster `ray start` made
"""


def check_readers_option(ctx, param, value):
    try:
        return check_readers(",".join(value)) if value else None
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


readers_option = click.option(
    "--readers", multiple=True, metavar="ENTRIES", callback=check_readers_option,
    help="Who may read the documents of this run: user:NAME and group:NAME entries, comma-separated or "
         "the option repeated (a JSON Lines row's own `readers` wins); `everyone`: every key of the index. "
         "Without it a new document has no readers and one read again keeps those it has. Changing it "
         "re-writes the documents' rows, not their vectors (docs/access.md).")


def source_options(command):
    """The options of a source URL (`searcher index s3://...`): where its server is, and whose
    credentials (never the credentials themselves: docs/indexing.md, "Credentials")."""
    for option in reversed([
        click.option("--endpoint-url", metavar="URL",
                     help="With an s3:// URL: an S3-compatible server (MinIO: http://127.0.0.1:9000); kept with the index."),
        click.option("--region", help="With an s3:// URL: the bucket's region (default: the AWS configuration's)."),
        click.option("--profile", help="With an s3:// URL: the AWS profile whose credentials to use."),
        click.option("--credentials-file", type=click.Path(dir_okay=False, path_type=Path),
                     help="With an s3:// URL: an AWS credentials file (mode 0600) instead of the environment's; "
                          "with an imap(s):// URL: a file (mode 0600) holding the password."),
        click.option("--crawl", is_flag=True, default=None,
                     help="With an http(s):// URL: the pages under it, following links and sitemaps, obeying "
                          "robots.txt (without: that one page)."),
        click.option("--crawl-pages", type=click.IntRange(min=1), metavar="N",
                     help="With --crawl: at most N pages (default 1000)."),
        click.option("--crawl-rate", type=click.FloatRange(min=0, min_open=True), metavar="R",
                     help="With --crawl: at most R requests a second (default 2)."),
    ]):
        command = option(command)
    return command


@click.command(help=INDEX_HELP)
@click.argument("paths", nargs=-1)
@index_option
@source_options
@click.option("--model", help="Local BERT-family checkpoint folder (default: all-MiniLM-L6-v2).")
@click.option("--python-docs", is_flag=True, help="Also index the Python standard library's docstrings.")
@click.option("--chunk-tokens", type=int, help="Tokens per chunk, special tokens included (default: the model's limit, at most 512).")
@click.option("--overlap", type=int, help="Tokens shared by consecutive chunks (default: 10% of --chunk-tokens).")
@click.option("--pooling", type=click.Choice(["mean", "cls", "max"]), help="Pooling when the checkpoint declares none.")
@click.option("--query-prefix", default=None, metavar="TEXT",
              help='Text before every query of a new index ("query: " for e5; default: the checkpoint\'s '
                   'config_sentence_transformers.json prompts, else none). Kept in the manifest.')
@click.option("--document-prefix", default=None, metavar="TEXT",
              help='Text before every chunk of a new index ("passage: " for e5; default: the checkpoint\'s '
                   'prompts, else none). Kept in the manifest.')
@device_option
@precision_option
@click.option("--batch-size", type=int, default=32, show_default=True, help="Chunks per forward pass.")
@click.option("--csv-text-column", help="CSV column holding the text (default: text, body, content...).")
@click.option("--csv-id-column", help="CSV column holding the document id (default: id if present, else the row).")
@click.option("--csv-title-column", help="CSV column holding the title (default: title).")
@click.option("--max-file-mb", type=float, default=DEFAULT_MAX_FILE_BYTES / 2**20, show_default=True,
              help="Skip files larger than this.")
@click.option("--max-pages", type=click.IntRange(1), default=DEFAULT_MAX_PAGES, show_default=True,
              help="Skip a PDF with more pages (a PPTX with more slides, an EPUB with more chapters).")
@click.option("--max-file-chars", type=click.IntRange(1), default=None,
              help="Skip a file whose text is longer (default: as many as --max-file-mb allows bytes).")
@click.option("--max-file-chunks", type=click.IntRange(1), default=DEFAULT_MAX_FILE_CHUNKS, show_default=True,
              help="Skip a document (a PDF, a book, a JSON Lines row) that makes more chunks, before encoding it.")
@click.option("--file-timeout", type=click.FloatRange(min=0.1), default=DEFAULT_FILE_TIMEOUT, show_default=True,
              help="Seconds one file's reading may take, and then its chunking; a file that takes longer is skipped.")
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Processes reading files beside the encoder (default: up to 4, one a core; 0: none).")
@click.option("--ocr", is_flag=True, help="Read PDF pages without a text layer (scans) with OCRmyPDF and Tesseract.")
@click.option("--follow-links", is_flag=True,
              help="Follow symlinks that lead out of the folders given (by default they are skipped, reported).")
@click.option("--prune", is_flag=True, help="Delete documents whose files under PATHS are gone.")
@readers_option
@click.option("--commit-every", type=click.IntRange(1), default=None,
              help="Chunks per commit (a kill loses at most one batch; default 4096 or 10% of the index).")
@click.option("--index-type", type=click.Choice(INDEX_TYPES), default=None,
              help="Vector index type of a new index (default auto: exact below 50,000 chunks, "
                   "inverted lists above; hnsw graph; ivfpq compressed codes). Fixed once the index exists.")
@click.option("--keyword-engine", type=click.Choice(KEYWORD_ENGINES), default=None,
              help=f"Keyword (BM25) engine of a new index (default {DEFAULT_KEYWORD_ENGINE}; see docs/indexing.md). "
                   f"Fixed once the index exists.")
@click.option("--nprobe", type=click.IntRange(1), help="Inverted lists visited a query (ivf, ivfpq); kept in the manifest.")
@click.option("--ef-search", type=click.IntRange(1), help="HNSW search queue size (hnsw); kept in the manifest.")
@click.option("--on-conflict", type=click.Choice(ON_CONFLICT), default="skip", show_default=True,
              help="A row whose id already belongs to a document from another file: skip it (reported) "
                   "or replace the other document (reported).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Encode on Ray (pip install -e '.[ray]'); files are still read, and the index written, "
                   "here. Alone: a Ray of its own on 127.0.0.1; auto: the cluster `ray start` made here; "
                   "or a head node's HOST:PORT or ray://HOST:PORT. Put it after the paths.")
@click.option("--ray-workers", type=click.IntRange(1, 4096), default=None,
              help="Ray actors encoding, each loading the model once (default: one per GPU, else one per node).")
@click.option("--ray-batch-size", type=click.IntRange(1), default=None,
              help="Chunks per Ray batch, the unit of work an actor takes (default 256).")
@json_option("Print the summary as JSON.")
@log_format_option
def index(paths, index_dir, model, python_docs, chunk_tokens, overlap, pooling, query_prefix, document_prefix,
          device, precision, batch_size,
          csv_text_column, csv_id_column, csv_title_column, max_file_mb, max_pages, max_file_chars, max_file_chunks,
          file_timeout, workers, ocr, follow_links, prune, readers, commit_every,
          index_type, keyword_engine, nprobe, ef_search, on_conflict, ray_address, ray_workers, ray_batch_size,
          as_json, log_format, endpoint_url, region, profile, credentials_file, crawl, crawl_pages, crawl_rate):
    configure_logging(log_format)
    urls = [p for p in paths if is_source_url(p)]
    paths = [Path(p) for p in paths if not is_source_url(p)]
    given = {"endpoint_url": endpoint_url, "region": region, "profile": profile,
             "credentials_file": str(credentials_file.absolute()) if credentials_file else None,
             "crawl": crawl, "max_pages": crawl_pages, "rate": crawl_rate}
    if any(v is not None for v in given.values()) and not urls:
        raise click.UsageError("--endpoint-url, --region, --profile, --credentials-file and --crawl... are options "
                               "of a source URL (s3://bucket/prefix, https://host/docs/): give one")
    if (crawl_pages or crawl_rate) and not crawl:
        raise click.UsageError("--crawl-pages and --crawl-rate go with --crawl")
    resync = not paths and not urls and not python_docs
    if resync and not read_sources(index_dir):
        raise click.UsageError(f"give files or folders to index, a source URL (s3://bucket/prefix), or "
                               f"--python-docs ({index_dir} has no sources to sync again)")
    recorded = {r["url"]: r.get("options") or {} for r in read_sources(index_dir)} if urls else {}
    # A recorded source given again with no options is synced with its recorded ones.
    url_options = {url: dict(given) if any(v is not None for v in given.values())
                   else dict(recorded.get(canonical_url(url), {})) for url in urls}
    for url in urls:  # a web site's validators (ETag, Last-Modified) kept beside the index: re-runs ask "changed?"
        if scheme_of(url) in ("http", "https") and not url_options[url].get("state_path"):
            name = hashlib.sha256(canonical_url(url).encode()).hexdigest()[:16]
            url_options[url]["state_path"] = str((Path(index_dir) / "web-state" / f"{name}.json").absolute())
    for url in urls:  # a URL or option the source refuses fails now, before the model loads
        open_source(url, url_options[url]).close()
    if (ray_workers or ray_batch_size) and ray_address is None:
        raise click.UsageError("--ray-workers and --ray-batch-size need --ray")
    if ray_address is not None:
        from searcher.cluster.ray_cluster import check_address, import_ray

        import_ray(loopback=check_address(ray_address) == "local")  # before the model loads
    if ocr:
        from searcher.readers.pdf import OCR_HINT, ocr_available

        if not ocr_available():
            raise click.ClickException(OCR_HINT)
    idx = open_for_writing(index_dir, model, chunk_tokens=chunk_tokens, overlap=overlap, pooling=pooling,
                           device=device, batch_size=batch_size, precision=precision, index_type=index_type,
                           keyword_engine=keyword_engine, query_prefix=query_prefix, document_prefix=document_prefix)
    for name, given in (("query_prefix", query_prefix), ("document_prefix", document_prefix)):
        kept = (idx.shards[0] if idx.sharded else idx).manifest.get(name, "")
        if given is not None and given != kept:
            raise click.UsageError(
                f"{index_dir} was made with --{name.replace('_', '-')} {kept!r}; the prefixes are chosen when an "
                f"index is created (its vectors were encoded with them): index into a new folder to change them")
    if index_type and index_type != idx.index_type:
        raise click.UsageError(
            f"{index_dir} is an index of type {idx.index_type}; the type is chosen when an index is "
            f"created (index into a new folder to use {index_type})")
    if keyword_engine and keyword_engine != idx.keyword_engine:
        raise click.UsageError(
            f"{index_dir} uses the keyword engine {idx.keyword_engine}; the engine is chosen when an index "
            f"is created (index into a new folder to use {keyword_engine})")
    if nprobe or ef_search:
        idx.set_search_params(nprobe=nprobe, ef_search=ef_search, persist=True)
    if commit_every:
        idx.commit_chunks = commit_every
    options = LoadOptions(csv_text_column, csv_id_column, csv_title_column, int(max_file_mb * 2**20),
                          workers=workers, file_timeout=file_timeout, ocr=ocr, follow_links=follow_links,
                          max_pages=max_pages, max_chars=max_file_chars, max_chunks=max_file_chunks, readers=readers)
    ray_facts = {}
    with encoding(idx, ray_address, ray_workers, ray_batch_size, ray_facts) as encoder, \
            progress_bar(logged=log_format == "json") as update:
        report = (idx.add_paths(paths, options, progress=update, prune=prune, on_conflict=on_conflict, encoder=encoder)
                  if paths or not (urls or resync) else IndexReport())
        synced = []  # (url, report or None, error or None) of each source
        for url in urls:
            try:
                synced.append((url, sync(idx, url, url_options[url], options, update, on_conflict, encoder), None))
            except SourceError as e:
                synced.append((url, None, str(e)))
        if resync:
            synced = sync_recorded(idx, options, update, on_conflict, encoder)
        for _, done, _ in synced:
            if done is not None:
                report = report.merge(done)
        if python_docs:
            from searcher.readers.pydocs import python_docs as stdlib_documents

            pydocs = stdlib_documents()
            if options.readers is not None:
                pydocs = (replace(d, metadata={"readers": options.readers, **d.metadata}) for d in pydocs)
            report = report.merge(idx.add_documents(pydocs, progress=update, on_conflict=on_conflict,
                                                    encoder=encoder))
    sources = {"sources": [{"url": url, "error": error, **(done.to_dict() if done else {})}
                           for url, done, error in synced]} if synced else {}
    failed = [(url, error) for url, _, error in synced if error]
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "index": str(index_dir), **ray_facts, **sources}, indent=2))
    if log_format == "json":  # the summary as one record, its report in fields
        log.info("%s; index: %s (%d documents)", report.summary(), index_dir, len(idx),
                 extra={"report": report.to_dict(), "index": str(index_dir), "documents": len(idx), **ray_facts,
                        **sources})
    elif not as_json:
        for url, done, error in synced:
            click.echo(f"{url}: {error}" if error else
                       f"{url}: {done.added} added, {done.updated} updated, {done.unchanged} unchanged, "
                       f"{done.removed} removed, {len(done.skipped)} skipped")
        click.echo(printable(report.summary()))
        if ray_facts:
            ray = ray_facts["ray"]
            nodes = len(ray["nodes"])
            click.echo(f"encoded by {ray['workers']} on {nodes} Ray node{'s' if nodes != 1 else ''}")
        click.echo(f"index: {index_dir} ({len(idx)} documents)")
    if failed:
        raise click.ClickException("; ".join(f"{url}: {error}" for url, error in failed)
                                   + " (nothing of these sources was changed in the index)")


@contextmanager
def encoding(idx: Index, ray_address: str | None, ray_workers: int | None, ray_batch_size: int | None,
             facts: dict):
    """The encoder of `searcher index`: None (the index's own), or a RayEncoder on
    `ray_address`; fills `facts` with where the chunks were encoded once the block is done."""
    if ray_address is None:
        yield None
        return
    from searcher.cluster.ray_encoder import DEFAULT_BATCH, ray_encoder

    with ray_encoder(idx.encoder, ray_address, ray_workers, ray_batch_size or DEFAULT_BATCH) as encoder:
        try:
            yield encoder
        finally:
            facts["ray"] = {"workers": encoder.describe(), "nodes": dict(encoder.nodes)}


def open_for_writing(index_dir: Path, model=None, **options):
    """The index in `index_dir` to write to: a sharded one, the single one there, or a new
    single one made with `options` (Index.create's). A second writer fails now, before the
    model loads (every shard's lock is tried)."""
    if is_sharded(index_dir):
        for folder in shard_paths(index_dir, read_layout(index_dir)):
            ensure_unlocked(folder)
        return ShardedIndex.open(index_dir, model, **{k: options[k] for k in ("device", "batch_size", "precision")
                                                      if k in options})
    ensure_unlocked(index_dir)
    return Index.open_or_create(index_dir, model, **options)


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@index_option
@click.option("--model", help="Local BERT-family checkpoint folder of a new index (default: all-MiniLM-L6-v2).")
@device_option
@precision_option
@watch_timing
@poll_option
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Processes reading files (default: up to 4, one a core; 0: none).")
@click.option("--on-conflict", type=click.Choice(ON_CONFLICT), default="skip", show_default=True,
              help="A row whose id already belongs to a document from another file: skip it or replace it.")
@click.option("--follow-links", is_flag=True,
              help="Follow symlinks that lead out of the folders watched (by default they are skipped, reported).")
@readers_option
@json_option("Print each run's report as one line of JSON.")
@log_format_option
def watch(paths, index_dir, model, device, precision, reconcile, debounce, settle, poll_interval, workers,
          follow_links, on_conflict, readers, as_json, log_format):
    """Keep the index in --index in line with PATHS as files change, and with its sources
    (`searcher sources`) every --poll-interval seconds, until Ctrl+C.

    New, changed, renamed and deleted files are indexed (or removed) a moment after they
    change; a file still being written waits until it is quiet. A full run at the start and
    every --reconcile seconds catches what events missed. The index's remote sources
    (s3://...) are synced at the start and every --poll-interval seconds (default 300).

    \b
    searcher watch ~/notes ~/papers --index indexes/notes
    searcher watch docs/ --reconcile 300 --debounce 1000
    searcher watch --index indexes/reports --poll-interval 60   # its sources only
    """
    from searcher.index.sources import DEFAULT_POLL_INTERVAL, SourcePoller
    from searcher.index.watch import Watcher, check_paths

    configure_logging(log_format)
    has_sources = bool(read_sources(index_dir)) if index_dir.is_dir() else False
    if not paths and not has_sources:
        raise click.UsageError(f"give folders or files to watch ({index_dir} has no sources to poll)")
    if poll_interval is not None and not has_sources:
        raise click.UsageError(f"--poll-interval: {index_dir} has no sources to poll (`searcher index s3://...`)")
    if paths:
        check_paths(paths, index_dir)  # before the model loads
    idx = open_for_writing(index_dir, model, device=device, precision=precision)
    on_run = run_logger() if log_format == "json" and not as_json else run_printer(as_json)
    options = LoadOptions(workers=workers, follow_links=follow_links, readers=readers)
    watcher = poller = None
    if paths:
        watcher = Watcher(idx, paths, options, debounce=debounce / 1000, reconcile_every=reconcile or None,
                          settle=settle, on_conflict=on_conflict, on_run=on_run)
    if has_sources:
        def told(url, report, error):
            if error:
                say(log_format, f"sync {url}: {error}", err=True)
            else:
                on_run(f"sync {url}", report)

        poller = SourcePoller(idx, poll_interval or DEFAULT_POLL_INTERVAL, LoadOptions(workers=workers),
                              on_conflict=on_conflict, on_run=told)
    watched = [str(p) for p in watcher.paths] if watcher else []
    polled = [r["url"] for r in read_sources(index_dir)] if poller else []
    say(log_format, f"watching {', '.join(watched + polled)} for {index_dir} (Ctrl+C to stop)", err=True)
    try:
        if watcher is not None:
            if poller is not None:
                poller.start()
            watcher.run()
        else:
            poller.run()
    except KeyboardInterrupt:
        pass
    finally:
        if poller is not None:
            poller.stop()
        idx.close()
    say(log_format, f"stopped; index: {index_dir}", err=True)


@click.command()
@click.argument("doc_ids", nargs=-1, required=True)
@index_option
def delete(doc_ids, index_dir):
    """Remove documents by id (a file's id is its absolute path); no model is loaded."""
    removed = open_index(index_dir, load_model=False).delete(doc_ids)
    click.echo(f"{removed} of {len(set(doc_ids))} documents removed")


@click.command()
@index_option
@json_option("Print the sources as a JSON list.")
def sources(index_dir, as_json):
    """List the sources the index was built from (s3://...), with each one's last sync, counts and
    errors; `searcher index --index DIR` with no path syncs them all again. No model is loaded."""
    from searcher.storage.folder import MANIFEST, SHARDS_MANIFEST

    if not ((index_dir / MANIFEST).is_file() or (index_dir / SHARDS_MANIFEST).is_file()):
        raise click.ClickException(f"no index in {index_dir}")
    records = read_sources(index_dir)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    if not records:
        click.echo(f"{index_dir} has no sources (its documents come from files and folders, or none)")
        return
    for record in records:
        counts = record.get("counts") or {}
        options = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in (record.get("options") or {}).items())
        click.echo(printable(record["url"]) + (f" ({printable(options)})" if options else ""))
        click.echo(f"  documents: {record.get('documents', '?')}; last sync {record.get('last_sync', 'never')}"
                   + (f", last success {record['last_success']}" if record.get("last_success") else ", never succeeded"))
        if counts:
            click.echo(f"  last run: {counts.get('added', 0)} added, {counts.get('updated', 0)} updated, "
                       f"{counts.get('unchanged', 0)} unchanged, {counts.get('removed', 0)} removed, "
                       f"{counts.get('skipped', 0)} skipped")
        if record.get("error"):
            click.echo(f"  error: {printable(record['error'])}")
        for line in record.get("errors") or []:
            click.echo(f"  skipped: {printable(line)}")
