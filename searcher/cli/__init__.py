"""The `searcher` command line: a thin layer over `searcher.Index`."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

from searcher.encoding.encoder import ModelError
from searcher.storage.folder import ensure_unlocked
from searcher.index.facade import DEFAULT_INDEX_DIR, DEFAULT_MODE, ON_CONFLICT, SEARCH_MODES, Index, SearcherError
from searcher.readers.loaders import DEFAULT_FILE_TIMEOUT, DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PAGES, LoadOptions
from searcher.storage.keywords import KEYWORD_ENGINES
from searcher.cluster.sharded import ShardedIndex, open_index
from searcher.cluster.shards import KEYWORD_STATISTICS, MAX_SHARDS, is_sharded, read_layout, shard_paths
from searcher.storage.vectors import INDEX_TYPES

MAX_WRITE_BYTES = 4 * 1024 * 1024  # web.server.MAX_WRITE_BYTES, without importing the web layer here

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """Text from documents made safe to print: control characters (terminal escapes, bells)
    become a visible `\\xNN` (newlines and tabs are kept)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@contextmanager
def progress_bar(unit: str = " chunks", desc: str = "encoding", every: float = 5.0):
    """A progress callback: a tqdm bar on a terminal; elsewhere (a log file, CI) a line on stderr
    every `every` seconds, as pip and git do."""
    if sys.stderr.isatty():
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
            click.echo(f"{desc}: {done}{unit} ({done / (now - started):.1f}{unit}/s)", err=True)

    yield update

index_option = click.option(
    "--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_INDEX_DIR, show_default=True, help="Index folder.",
)
mode_option = click.option(
    "--mode", type=click.Choice(SEARCH_MODES), default=DEFAULT_MODE, show_default=True,
    help="dense: BERT vectors; keyword: BM25 over the words; hybrid: the two fused.",
)
device_option = click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
    help="Where the model runs (auto: CUDA when present).",
)

precision_option = click.option(
    "--precision", type=click.Choice(["auto", "exact", "fast"]), default="auto", show_default=True,
    help="exact: float32 (what sentence-transformers computes); fast: int8 ONNX Runtime on CPU "
         "(1.6-2.2x faster on 2 CPUs, nDCG@10 within 0.005), fp16 on CUDA; auto: fast when available.",
)


def watch_timing(command):
    """--reconcile, --debounce and --settle: how a folder watcher (searcher/index/watch.py) keeps time."""
    from searcher.index.watch import DEFAULT_DEBOUNCE, DEFAULT_RECONCILE, DEFAULT_SETTLE

    for option in reversed([
        click.option("--reconcile", type=click.FloatRange(min=0), default=DEFAULT_RECONCILE, show_default=True,
                     metavar="SECONDS", help="Seconds between full runs over the watched folders, which catch "
                                             "what events missed (0: only at the start)."),
        click.option("--debounce", type=click.IntRange(0, 600_000), default=int(DEFAULT_DEBOUNCE * 1000),
                     show_default=True, metavar="MS",
                     help="Milliseconds without an event before a changed file is indexed."),
        click.option("--settle", type=click.FloatRange(0, 3600), default=DEFAULT_SETTLE, show_default=True,
                     metavar="SECONDS", help="Seconds a file must go unmodified before it is read "
                                             "(a file still being written waits)."),
    ]):
        command = option(command)
    return command


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


class Group(click.Group):
    """Turns the errors a user can act on into a one-line message and exit status 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (SearcherError, ModelError, ValueError) as e:
            raise click.ClickException(str(e)) from e


@click.group(cls=Group)
@click.version_option(package_name="searcher")
def main():
    """Semantic search over your own documents."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@index_option
@click.option("--model", help="Local BERT-family checkpoint folder (default: all-MiniLM-L6-v2).")
@click.option("--python-docs", is_flag=True, help="Also index the Python standard library's docstrings.")
@click.option("--chunk-tokens", type=int, help="Tokens per chunk, special tokens included (default: the model's limit, at most 512).")
@click.option("--overlap", type=int, help="Tokens shared by consecutive chunks (default: 10% of --chunk-tokens).")
@click.option("--pooling", type=click.Choice(["mean", "cls", "max"]), help="Pooling when the checkpoint declares none.")
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
@click.option("--file-timeout", type=click.FloatRange(min=0.1), default=DEFAULT_FILE_TIMEOUT, show_default=True,
              help="Seconds one file's reading may take; a file that takes longer is skipped.")
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Processes reading files beside the encoder (default: up to 4, one a core; 0: none).")
@click.option("--ocr", is_flag=True, help="Read PDF pages without a text layer (scans) with OCRmyPDF and Tesseract.")
@click.option("--follow-links", is_flag=True,
              help="Follow symlinks that lead out of the folders given (by default they are skipped, reported).")
@click.option("--prune", is_flag=True, help="Delete documents whose files under PATHS are gone.")
@click.option("--commit-every", type=click.IntRange(1), default=None,
              help="Chunks per commit (a kill loses at most one batch; default 4096 or 10% of the index).")
@click.option("--index-type", type=click.Choice(INDEX_TYPES), default=None,
              help="Vector index type of a new index (default auto: exact below 50,000 chunks, "
                   "inverted lists above; hnsw graph; ivfpq compressed codes). Fixed once the index exists.")
@click.option("--keyword-engine", type=click.Choice(KEYWORD_ENGINES), default=None,
              help="Keyword (BM25) engine of a new index (default fts5; see README). Fixed once the index exists.")
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
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def index(paths, index_dir, model, python_docs, chunk_tokens, overlap, pooling, device, precision, batch_size,
          csv_text_column, csv_id_column, csv_title_column, max_file_mb, max_pages, max_file_chars, file_timeout,
          workers, ocr, follow_links, prune, commit_every,
          index_type, keyword_engine, nprobe, ef_search, on_conflict, ray_address, ray_workers, ray_batch_size,
          as_json):
    """Index files and folders (.txt .md .html .jsonl .csv), adding to the index in --index.

    \b
    searcher index docs/ notes.md --index indexes/notes
    searcher index --python-docs
    searcher index docs/ --prune        # also drop documents whose files were removed
    searcher index docs/ --index indexes/notes-sharded   # a sharded index: each document to its shard
    searcher index papers/ --ray auto   # encode on the Ray cluster `ray start` made
    """
    if not paths and not python_docs:
        raise click.UsageError("give files or folders to index, or --python-docs")
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
                           keyword_engine=keyword_engine)
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
                          max_pages=max_pages, max_chars=max_file_chars)
    ray_facts = {}
    with encoding(idx, ray_address, ray_workers, ray_batch_size, ray_facts) as encoder, progress_bar() as update:
        report = idx.add_paths(paths, options, progress=update, prune=prune, on_conflict=on_conflict, encoder=encoder)
        if python_docs:
            from searcher.readers.pydocs import python_docs as stdlib_documents

            report = report.merge(idx.add_documents(stdlib_documents(), progress=update, on_conflict=on_conflict,
                                                    encoder=encoder))
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "index": str(index_dir), **ray_facts}, indent=2))
    else:
        click.echo(printable(report.summary()))
        if ray_facts:
            ray = ray_facts["ray"]
            nodes = len(ray["nodes"])
            click.echo(f"encoded by {ray['workers']} on {nodes} Ray node{'s' if nodes != 1 else ''}")
        click.echo(f"index: {index_dir} ({len(idx)} documents)")


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


@main.command()
@click.argument("query")
@index_option
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Documents to return.")
@mode_option
@click.option("--model", help="Model the index was built with (checked against the index).")
@device_option
@precision_option
@click.option("--where", "wheres", multiple=True,
              help="A filter condition field=value (or != >= > <= <), repeatable, all must hold: --where type=pdf.")
@click.option("--where-json", help='A filter as JSON: \'{"type": {"$in": ["pdf", "docx"]}}\' (see README).')
@click.option("--sort", type=click.Choice(["relevance", "modified"]), default="relevance", show_default=True,
              help="modified: the best documents newest first.")
@click.option("--recency", type=click.FloatRange(min=0, min_open=True), metavar="DAYS",
              help="Boost recent documents: a score halves for every DAYS of age.")
@click.option("--facets", "facet_fields", metavar="FIELDS",
              help="Also count these fields' values among the best documents: --facets type,folder,year.")
@click.option("--json", "as_json", is_flag=True, help="Print results as a JSON list (an object with facets).")
def search(query, index_dir, k, mode, model, device, precision, wheres, where_json, sort, recency, facet_fields,
           as_json):
    """Find the documents that best match QUERY.

    \b
    searcher search "how do I read a file line by line" -k 5
    searcher search "XQ-7781" --mode keyword
    searcher search "budget" --where type=pdf --where 'modified>=2024-01-01'
    searcher search "budget" --sort modified --facets type,year
    """
    from searcher.search.facets import check_facet_fields

    from searcher.search.filters import compile_where, loads_where, parse_where_option

    try:
        conditions = [parse_where_option(w) for w in wheres]
        if where_json is not None:
            parsed = loads_where(where_json)
            conditions.append(parsed)
        where = None if not conditions else conditions[0] if len(conditions) == 1 else {"$and": conditions}
        if where is not None:
            compile_where(where)  # a malformed filter fails before the model loads
    except ValueError as e:  # json.JSONDecodeError is a ValueError too
        raise click.UsageError(f"bad filter: {e}") from None
    try:
        fields = check_facet_fields(facet_fields.split(",")) if facet_fields else ()
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    idx = open_index(index_dir, model, device=device, precision=precision)
    hits, facets = idx.search_with_facets(query, k, 0, fields, mode=mode, where=where, sort=sort, recency=recency)
    facets = facets if fields else None
    if as_json:
        results = [h.to_dict() for h in hits]
        click.echo(json.dumps(results if facets is None else {"results": results, "facets": facets},
                              indent=2, ensure_ascii=False))
        return
    if not hits:
        click.echo("No results.")
    for rank, hit in enumerate(hits, 1):
        click.echo(click.style(f"{rank}. {printable(hit.title or hit.doc_id)}", bold=True) + f"  ({hit.score:.3f})")
        click.echo(f"   {printable(hit.source or hit.doc_id)}")
        passage = printable(" ".join(hit.passage.split()))
        click.echo(f"   {passage[:300]}{'...' if len(passage) > 300 else ''}\n")
    for field, values in (facets or {}).items():
        listed = ", ".join(f"{printable(str(v))} ({n})" for v, n in values.items())
        click.echo(f"{field}: {listed or '-'}")


@main.command()
@click.argument("doc_id")
@index_option
@click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Documents to return.")
@device_option
@precision_option
@click.option("--json", "as_json", is_flag=True, help="Print results as a JSON list.")
def similar(doc_id, index_dir, k, device, precision, as_json):
    """Documents like DOC_ID (a file's id is its absolute path), never itself.

    \b
    searcher similar /home/ann/notes/garden.md -k 5
    """
    idx = open_index(index_dir, device=device, precision=precision)
    try:
        hits = idx.similar(doc_id, k=k)
    except KeyError as e:
        raise click.ClickException(str(e.args[0]) if e.args else "no such document") from None  # str() would quote it
    if as_json:
        click.echo(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(click.style(f"{rank}. {printable(hit.title or hit.doc_id)}", bold=True) + f"  ({hit.score:.3f})")
        click.echo(f"   {printable(hit.source or hit.doc_id)}")


@main.command()
@index_option
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
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


def evaluation_line(record: dict) -> str:
    """One stored `searcher eval` result on one line (searcher info)."""
    metrics = ", ".join(f"{name} {value:.4f}" if isinstance(value, (int, float)) else f"{name} {value}"
                        for name, value in (record.get("metrics") or {}).items())
    return (f"{record.get('dataset')} ({record.get('split')}, {record.get('mode')}): {metrics}; "
            f"{record.get('queries')} queries, generation {record.get('generation')}, {record.get('recorded_at')}")


@main.command()
@index_option
@click.option("--repair", is_flag=True, help="Fix what is broken, keeping every committed document.")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check(index_dir, repair, device, as_json):
    """Verify an index (ids both ways, counts, manifest, files); exit 1 when broken. A sharded
    index: its manifest, every shard, and that each document is in the shard its id hashes to.

    \b
    searcher check --index indexes/notes
    searcher check --repair
    searcher check --index indexes/notes-sharded
    """
    from searcher.index.check import check_index
    from searcher.cluster.shards import check_sharded

    report = (check_sharded if is_sharded(index_dir) else check_index)(index_dir, repair=repair, device=device)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else printable(report.summary()))
    if not report.ok:
        hint = None if repair else report.repair_hint()  # only what repair can really do
        if hint:
            click.echo(hint, err=True)
        sys.exit(1)


@main.command()
@click.argument("doc_ids", nargs=-1, required=True)
@index_option
def delete(doc_ids, index_dir):
    """Remove documents by id (a file's id is its absolute path); no model is loaded."""
    removed = open_index(index_dir, load_model=False).delete(doc_ids)
    click.echo(f"{removed} of {len(set(doc_ids))} documents removed")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@index_option
@click.option("--model", help="Local BERT-family checkpoint folder of a new index (default: all-MiniLM-L6-v2).")
@device_option
@precision_option
@watch_timing
@click.option("--workers", type=click.IntRange(0, 64), default=None,
              help="Processes reading files (default: up to 4, one a core; 0: none).")
@click.option("--on-conflict", type=click.Choice(ON_CONFLICT), default="skip", show_default=True,
              help="A row whose id already belongs to a document from another file: skip it or replace it.")
@click.option("--follow-links", is_flag=True,
              help="Follow symlinks that lead out of the folders watched (by default they are skipped, reported).")
@click.option("--json", "as_json", is_flag=True, help="Print each run's report as one line of JSON.")
def watch(paths, index_dir, model, device, precision, reconcile, debounce, settle, workers, follow_links, on_conflict,
          as_json):
    """Keep the index in --index in line with PATHS as files change, until Ctrl+C.

    New, changed, renamed and deleted files are indexed (or removed) a moment after they
    change; a file still being written waits until it is quiet. A full run at the start and
    every --reconcile seconds catches what events missed.

    \b
    searcher watch ~/notes ~/papers --index indexes/notes
    searcher watch docs/ --reconcile 300 --debounce 1000
    """
    from searcher.index.watch import Watcher, check_paths

    check_paths(paths, index_dir)  # before the model loads
    idx = open_for_writing(index_dir, model, device=device, precision=precision)
    watcher = Watcher(idx, paths, LoadOptions(workers=workers, follow_links=follow_links), debounce=debounce / 1000,
                      reconcile_every=reconcile or None, settle=settle, on_conflict=on_conflict,
                      on_run=run_printer(as_json))
    click.echo(f"watching {', '.join(map(str, watcher.paths))} for {index_dir} (Ctrl+C to stop)", err=True)
    try:
        watcher.run()
    except KeyboardInterrupt:
        pass
    finally:
        idx.close()
    click.echo(f"stopped; index: {index_dir}", err=True)


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


@main.command()
@click.argument("source", type=click.Path(file_okay=False, path_type=Path))
@click.option("--shards", "count", type=int, required=True, help=f"How many shards (1 to {MAX_SHARDS}).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The new sharded index's folder (absent or empty).")
@click.option("--keyword-statistics", type=click.Choice(KEYWORD_STATISTICS), default="dfs", show_default=True,
              help="BM25 across shards: dfs, the whole collection's term statistics (a first round asks every "
                   "shard); shard, each shard's own (see README).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
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


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name to listen on) is this machine's loopback only."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_index_specs(specs) -> list[tuple[str, Path]]:
    """`serve --index` values: NAME=DIR, or a bare DIR named after its folder; the default
    index when none. A usage error for a bad or repeated name (before anything is opened)."""
    from searcher.web.indexes import check_index_name, folder_name

    parsed: list[tuple[str, Path]] = []
    for spec in specs or (str(DEFAULT_INDEX_DIR),):
        name, sep, folder = spec.partition("=")
        if sep and "/" not in name and not name.startswith("."):  # NAME=DIR; ./a=b is a folder named a=b
            try:
                check_index_name(name)
            except ValueError as e:
                raise click.UsageError(f"--index {spec}: {e} (write ./{spec} for a folder whose name "
                                       f"holds '=')") from None
            if not folder:
                raise click.UsageError(f"--index {spec}: the folder after {name}= is missing")
            parsed.append((name, Path(folder)))
        else:
            parsed.append((folder_name(spec), Path(spec)))
    seen: dict[str, Path] = {}
    folders: dict[Path, str] = {}
    for name, folder in parsed:
        if name in seen:
            raise click.UsageError(f"two indexes are named {name!r} ({seen[name]} and {folder}): "
                                   f"name them with --index NAME=DIR")
        if folder.resolve() in folders:
            raise click.UsageError(f"{folder} is given twice ({folders[folder.resolve()]} and {name}): "
                                   f"serve each index folder once")
        seen[name], folders[folder.resolve()] = folder, name
    return parsed


@main.command()
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
@click.option("--watch", "watch_paths", multiple=True, type=click.Path(exists=True, path_type=Path), metavar="PATH",
              help="Keep the index in line with this folder (or file) as it changes (repeatable; `searcher watch`).")
@click.option("--follow-links", is_flag=True,
              help="With --watch: follow symlinks that lead out of the folders watched (by default they are skipped).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Serve a sharded index's shards on Ray Serve, one deployment each (pip install -e '.[ray]'); "
                   "this process is the front (the same page and API). Alone: a Ray of its own on 127.0.0.1; "
                   "auto: the cluster `ray start` made here; or HOST:PORT / ray://HOST:PORT.")
@click.option("--replicas", type=click.IntRange(1, 64), default=None,
              help="With --ray: copies of each shard (default 1); with 2 or more a shard survives losing one.")
@watch_timing
@device_option
@precision_option
@click.pass_context
def serve(ctx, index_specs, host, port, threads, facet_fields, api_keys, no_auth, allowed_hosts, max_write_mb,
          watch_paths, follow_links, ray_address, replicas, reconcile, debounce, settle, device, precision):
    """Serve the search page and its JSON API (waitress), e.g. on http://127.0.0.1:8000.

    \b
    searcher serve --index indexes/notes --port 8080
    searcher serve --index notes=indexes/notes --index mail=/srv/mail-index
    searcher serve --facets author,type,year
    searcher serve --host 0.0.0.0 --api-keys keys.txt --allowed-hosts search.example.com
    searcher serve --watch ~/notes --watch ~/papers
    searcher serve --ray auto --index sharded/ --replicas 2
    """
    from searcher.web import create_app
    from searcher.web.auth import KeyRing
    from searcher.web.server import make_server

    from searcher.search.facets import check_facet_fields
    from searcher.hosts import HostRule, parse_allowed_hosts

    specs = parse_index_specs(index_specs)
    if ray_address is not None:
        check_ray_serving(specs, watch_paths)
    elif replicas is not None:
        raise click.UsageError("--replicas is how many copies of each shard Ray Serve runs: give --ray too")

    if not watch_paths:
        timing = [f"--{name}" for name in ("reconcile", "debounce", "settle")
                  if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]
        if timing:
            raise click.UsageError(f"{', '.join(timing)} set how --watch keeps time: give --watch PATH too")
        if follow_links:
            raise click.UsageError("--follow-links is how --watch walks its folders: give --watch PATH too")
    else:
        from searcher.index.watch import check_paths

        if len(specs) != 1:
            raise click.UsageError("--watch keeps one index up to date: give one --index with it")
        check_paths(watch_paths, specs[0][1])
    if api_keys is not None and no_auth:
        raise click.UsageError("--api-keys and --no-auth contradict each other: give one")
    if api_keys is None and not no_auth and not is_loopback(host):
        raise click.UsageError(
            f"refusing to listen on {host} without API keys: anyone who can reach it could search "
            f"this index. Give --api-keys FILE (make one with `searcher keys add --scope read --file FILE`), "
            f"or --no-auth to serve it to everyone anyway.")
    try:
        facets = check_facet_fields(f for f in facet_fields.split(",") if f.strip())
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    try:
        hosts = HostRule(host, parse_allowed_hosts(allowed_hosts))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--allowed-hosts") from None
    keys = None
    if api_keys is not None:
        keys = KeyRing.from_file(api_keys)  # a bad file: KeyFileError, a ValueError (one line, exit 1)
        if not len(keys):
            raise click.UsageError(f"{api_keys} holds no keys: add one with "
                                   f"`searcher keys add --scope admin --file {api_keys}`")
    opened: dict[str, Index] = {}
    cleanup = contextlib.ExitStack()  # a Ray connection and the shards' deployments (--ray)
    try:
        for name, folder in specs:  # the model loads once (indexes of one model share it), here
            if ray_address is not None:
                opened[name] = cleanup.enter_context(served_on_ray(folder, ray_address, replicas or 1, device,
                                                                   precision))
            else:
                opened[name] = open_index(folder, device=device, precision=precision)
            opened[name].search("warm up", k=1)  # the first forward pass is slow; pay it before the first request
        app = create_app(indexes=opened, facets=facets, keys=keys, max_write_bytes=int(max_write_mb * 2**20),
                         allowed_hosts=hosts)
        watcher = None
        if watch_paths:
            from searcher.web.writes import watch_folders

            watcher = watch_folders(app, watch_paths, LoadOptions(follow_links=follow_links), debounce=debounce / 1000,
                                    reconcile_every=reconcile or None, settle=settle, on_run=run_printer())
        try:
            server = make_server(app, host, port, threads)
        except OSError as e:
            raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    except BaseException:
        for idx in opened.values():
            idx.close()
        cleanup.close()
        raise
    if keys is None and not is_loopback(host):
        click.echo(f"warning: listening on {host} without keys (--no-auth): anyone who can reach it "
                   f"can search this index", err=True)
    url_host = f"[{host}]" if ":" in host and not host.startswith("[") else host  # ::1 and [::1] alike
    port = getattr(server, "effective_port", port)  # a name like localhost gets several sockets
    access = (f"{len(keys)} API keys from {api_keys}" if keys is not None
              else "no keys, read-only API")
    def documents(name: str) -> str:
        n = len(opened[name])
        return f"{n} document{'' if n == 1 else 's'}"

    if len(specs) == 1:
        (name, folder), = specs
        served = f"{documents(name)} from {folder}"
        if ray_address is not None:
            shards = len(opened[name].shards)
            served += (f" ({shards} shard{'s' if shards != 1 else ''} on Ray Serve, {replicas or 1} "
                       f"replica{'s' if (replicas or 1) != 1 else ''} each)")
    else:
        served = f"{len(specs)} indexes (" + ", ".join(
            f"{name}: {documents(name)} from {folder}" for name, folder in specs) + ")"
    watching = f"; watching {', '.join(map(str, watcher.paths))}" if watcher is not None else ""
    click.echo(f"Serving {served} on http://{url_host}:{port}/ ({access}{watching}; Ctrl+C to stop)")
    if watcher is not None:
        watcher.start()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        if watcher is not None:
            watcher.stop()
        server.close()
        for idx in opened.values():
            idx.close()
        cleanup.close()


def check_ray_serving(specs: list[tuple[str, Path]], watch_paths) -> None:
    """serve --ray serves one sharded index, read-only; say so before Ray starts."""
    from searcher.storage.folder import SHARDS_MANIFEST

    if len(specs) != 1:
        raise click.UsageError("--ray serves the shards of one sharded index: give one --index DIR")
    if watch_paths:
        raise click.UsageError("--watch writes to the index, and --ray serves it read-only: index with "
                               "`searcher index PATH --index DIR` instead (the replicas read each commit)")
    folder = specs[0][1]
    if not (folder / SHARDS_MANIFEST).is_file():
        kind = "an index, not a sharded one" if (folder / "manifest.json").is_file() else "no index"
        raise click.UsageError(f"--ray serves a sharded index's shards, and {folder} holds {kind}: split it "
                               f"with `searcher shard {folder} --shards N --out DIR`, or serve it without --ray")


@contextlib.contextmanager
def served_on_ray(folder: Path, address: str, replicas: int, device: str, precision: str):
    """The sharded index in `folder` deployed on Ray Serve for the block (the front's
    ShardedIndex); the deployments are deleted, and a Ray started here stopped, at the end."""
    from searcher.cluster.ray_cluster import check_address, import_ray, ray_session
    from searcher.cluster.ray_serving import UNDEPLOY_TIMEOUT_S, ServeSettings, serve_sharded

    import_ray(loopback=check_address(address) == "local")  # before the model loads
    with ray_session(address) as _, serve_sharded(folder, ServeSettings(replicas=replicas), device=device,
                                                  precision=precision) as front:
        try:
            yield front.index
        finally:  # the deletion is bounded (ray_serving.undeploy); say why stopping takes a moment
            click.echo(f"stopping: removing the shards from Ray Serve (waiting at most {UNDEPLOY_TIMEOUT_S:g} s)",
                       err=True)


key_file_option = click.option(
    "--file", "key_file", type=click.Path(dir_okay=False, path_type=Path), required=True, metavar="FILE",
    help="The key file (`searcher serve --api-keys FILE`).",
)


@main.group(cls=Group)
def keys():
    """Manage the API keys of `searcher serve --api-keys FILE` (only their hashes are stored).

    \b
    searcher keys add --scope read --file keys.txt     # prints the new key, once
    searcher keys add --scope read --indexes notes,mail --file keys.txt
    searcher keys list --file keys.txt
    searcher keys remove 3f9c01ab --file keys.txt
    """


@keys.command("add")
@click.option("--scope", type=click.Choice(["read", "admin"]), required=True,
              help="read: searches, documents, the page; admin: also the write API.")
@click.option("--indexes", "index_names", default="*", show_default=True, metavar="NAMES",
              help="Limit the key to these indexes of `serve --index NAME=DIR` (comma-separated); * for all.")
@key_file_option
def keys_add(scope, index_names, key_file):
    """Make a key; prints it once (stdout), stores only its hash."""
    from searcher.web.auth import add_key, check_indexes

    try:
        check_indexes(index_names)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--indexes") from None
    entry, key = add_key(key_file, scope, index_names)
    click.echo(key)
    limit = "" if entry.index_limit is None else f", indexes {entry.indexes}"
    click.echo(f"added key {entry.id} ({scope}{limit}) to {key_file}; it is shown only now, so keep it somewhere "
               f"safe. A running server picks it up at once.", err=True)


@keys.command("list")
@key_file_option
def keys_list(key_file):
    """The keys' ids and scopes (a key is srch_<id>_..., so each key says which it is)."""
    from searcher.web.auth import read_key_file

    entries = read_key_file(key_file)
    if not entries:
        click.echo(f"no keys in {key_file}", err=True)
        return
    click.echo(f"{'ID':<10} {'SCOPE':<6} INDEXES")
    for entry in entries:
        click.echo(f"{entry.id:<10} {entry.scope:<6} {entry.indexes}")


@keys.command("remove")
@click.argument("key_id")
@key_file_option
def keys_remove(key_id, key_file):
    """Remove a key by its id (or the key itself); a running server refuses it at once."""
    from searcher.web.auth import key_id as id_in_key, remove_key

    shown = id_in_key(key_id) or key_id[:40]  # never echo a whole key
    if not remove_key(key_file, key_id):
        raise click.ClickException(f"no key {shown!r} in {key_file} (`searcher keys list --file {key_file}`)")
    click.echo(f"removed key {shown} from {key_file}")


@main.command("mcp")
@index_option
@click.option("--url", help="Read a running `searcher serve` (e.g. http://127.0.0.1:8000) instead of --index.")
@click.option("--http", "http_port", type=click.IntRange(1, 65535),
              help="Serve MCP's streamable HTTP transport on 127.0.0.1:PORT instead of stdio.")
@device_option
@precision_option
@click.pass_context
def mcp(ctx, index_dir, url, http_port, device, precision):
    """Serve the index to AI assistants over the Model Context Protocol (stdio by default).

    \b
    searcher mcp --index indexes/notes
    searcher mcp --url http://127.0.0.1:8000 --http 8765
    """
    try:
        from searcher.integrations.mcp_server import require_sdk, serve as serve_mcp

        require_sdk()
    except ImportError as e:
        raise click.ClickException(str(e)) from None
    if url:
        from searcher.remote import RemoteIndex

        if ctx.get_parameter_source("index_dir") != click.core.ParameterSource.DEFAULT:
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
        serve_mcp(source, http_port)
    finally:
        source.close()


@main.command("eval")
@click.argument("dataset_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@mode_option
@click.option("--index", "index_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Index folder to reuse (it must hold exactly this corpus) or to build and keep; "
                   "default: a temporary folder, removed afterwards.")
@click.option("--split", default="test", show_default=True, help="Judgements to use: qrels/SPLIT.tsv.")
@click.option("--model", help="Model to build the index with (default: all-MiniLM-L6-v2).")
@device_option
@precision_option
@click.option("--batch-size", type=int, default=32, show_default=True, help="Chunks per forward pass.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (metric names as keys).")
def evaluate(dataset_dir, mode, index_dir, split, model, device, precision, batch_size, as_json):
    """Measure search quality on a BEIR-layout collection: nDCG@10, Recall@100, MRR@10.

    DATASET_DIR holds corpus.jsonl, queries.jsonl and qrels/SPLIT.tsv. Every query with
    judgements is run (100 results each).

    \b
    searcher eval ../shared/datasets/scifact --index indexes/scifact --mode hybrid
    """
    from searcher.quality.evaluate import METRICS, evaluate as run_evaluation

    if index_dir is not None and is_sharded(index_dir):
        raise click.UsageError(f"{index_dir} is a sharded index: `searcher eval --index` takes a single one "
                               f"(evaluate the index it was split from)")
    with progress_bar() as update:
        result = run_evaluation(dataset_dir, mode=mode, index_dir=index_dir, split=split, model=model,
                                device=device, batch_size=batch_size, progress=update,
                                precision=precision)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['dataset']} ({result['split']}): {result['queries']} queries, "
               f"{result['documents']} documents, mode {result['mode']}")
    for name in METRICS:
        click.echo(f"{name:>11}: {result[name]:.4f}")
    click.echo(f"{'search':>11}: {result['search_seconds']:.1f}s ({result['ms_per_query']:.1f} ms/query)")
    if result["indexed"]:
        click.echo(f"{'indexing':>11}: {result['index_seconds']:.1f}s ({result['indexed']} documents)")
    if index_dir is None and result["indexed"]:
        click.echo("(the index was temporary; give --index DIR to keep it and reuse it next time)")
    if result.get("recorded"):
        click.echo(f"(stored in {index_dir}: `searcher info` and the server's /about show it)")
    elif result.get("recorded") is False:
        click.echo(f"warning: the figures could not be stored in {index_dir} (see the log above)", err=True)



@main.command()
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Folder for the fine-tuned checkpoint (new or empty), e.g. models/NAME.")
@click.option("--base", help="Checkpoint folder to start from (default: the bundled all-MiniLM-L6-v2).")
@click.option("--split", default="train", show_default=True, help="Judgements to train on: qrels/SPLIT.tsv.")
@click.option("--epochs", type=click.IntRange(min=1), default=3, show_default=True,
              help="Passes over the pairs (3 is best of 1 and 3 on SciFact).")
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True,
              help="Pairs per step; each pair's query sees the batch's other documents as negatives.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=5e-5, show_default=True)
@click.option("--hard-negatives", type=click.IntRange(min=0), default=1, show_default=True,
              help="Negatives per query mined from an index of the corpus (not judged relevant).")
@click.option("--index", "index_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="An index of this corpus to mine negatives from (default: a temporary one, built "
                   "with the base model).")
@click.option("--eval-split", help="Also evaluate the base and the fine-tuned model (dense and hybrid) on "
                                   "qrels/SPLIT.tsv and record the figures (indexes the corpus again).")
@click.option("--allow-test-split", is_flag=True, help="Allow training on the test split.")
@click.option("--max-tokens", type=click.IntRange(min=8), help="Tokens per text in training "
                                                                "(default: the checkpoint's own).")
@click.option("--seed", type=int, default=42, show_default=True)
@device_option
@click.option("--json", "as_json", is_flag=True, help="Print training.json's content.")
def train(source, out, base, split, epochs, batch_size, learning_rate, hard_negatives, index_dir, eval_split,
          allow_test_split, max_tokens, seed, device, as_json):
    """Fine-tune the encoder on relevance judgements; write a checkpoint that --model takes.

    SOURCE is a BEIR-layout folder (qrels/SPLIT.tsv, queries.jsonl, corpus.jsonl) or a JSON
    Lines file of {"query", "positive"[, "negative"]} objects. Needs the train extra.

    \b
    searcher train ../shared/datasets/scifact --out models/scifact --index indexes/scifact
    searcher index corpus/ --index indexes/tuned --model models/scifact
    """
    from searcher.quality.training import TrainingSettings, train as run_training

    settings = TrainingSettings(base=base, split=split, epochs=epochs, batch_size=batch_size,
                                learning_rate=learning_rate, hard_negatives=hard_negatives,
                                max_tokens=max_tokens, seed=seed, device=device,
                                allow_test_split=allow_test_split, eval_split=eval_split)
    with progress_bar(unit=" items", desc="preparing") as update:
        record = run_training(source, out, settings, mining_index=index_dir,
                              log=lambda line: click.echo(line, err=True), progress=update)
    if as_json:
        click.echo(json.dumps(record, indent=2))
        return
    figures = record["figures"]
    click.echo(f"wrote {out} ({figures['examples']} pairs, {figures['steps']} steps, "
               f"{figures['train_seconds']:.0f} s, loss {figures['first_loss']} -> {figures['last_loss']})")
    for when in ("before", "after"):
        for mode, metrics in figures.get(when, {}).items():
            click.echo(f"{when:>6} {mode:>6}: nDCG@10 {metrics['nDCG@10']:.4f}")
    click.echo(f"use it with --model {out}")

if __name__ == "__main__":  # pragma: no cover
    main()
