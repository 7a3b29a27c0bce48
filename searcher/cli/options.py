"""The options several commands share, and the parsing of option values the commands turn
into library values (index names, filters)."""

from __future__ import annotations

from pathlib import Path

import click

from searcher.index.facade import DEFAULT_INDEX_DIR, DEFAULT_MODE, SEARCH_MODES
from searcher.logs import LOG_FORMATS

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
log_format_option = click.option(
    "--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
    help="text: lines for people; json: every line on stderr one JSON object (time, level, logger, message, "
         "fields; a server's access lines with request id, status, duration), for a log collector "
         "(docs/operations.md).",
)
k_option = click.option("-k", "k", type=click.IntRange(1, 1000), default=10, show_default=True,
                        help="Documents to return.")


def json_option(help: str):
    """--json: print what the command found as JSON (`help` says in which shape)."""
    return click.option("--json", "as_json", is_flag=True, help=help)


poll_option = click.option(
    "--poll-interval", type=click.FloatRange(min=1), default=None, metavar="SECONDS",
    help="Seconds between syncs of the index's sources (s3://...; `searcher sources`); default 300 "
         "when it has sources.")


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


def given(ctx: click.Context, *names: str) -> list[str]:
    """The options among `names` (parameter names) set on the command line, as --flags."""
    return [f"--{name}" for name in names if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]


def parse_where(wheres, where_json: str | None) -> dict | None:
    """The filter of `--where` conditions (all must hold) and `--where-json`; a usage error
    naming what is wrong, before any model loads."""
    from searcher.search.filters import compile_where, loads_where, parse_where_option

    try:
        conditions = [parse_where_option(w) for w in wheres]
        if where_json is not None:
            conditions.append(loads_where(where_json))
        where = None if not conditions else conditions[0] if len(conditions) == 1 else {"$and": conditions}
        if where is not None:
            compile_where(where)  # a filter that parses but cannot hold says so as a bad filter too
    except ValueError as e:  # json.JSONDecodeError is a ValueError too
        raise click.UsageError(f"bad filter: {e}") from None
    return where


def parse_index_specs(specs) -> list[tuple[str, Path]]:
    """`serve --index` values: NAME=DIR, or a bare DIR named after its folder; the default
    index when none. A usage error for a bad or repeated name (before anything is opened)."""
    from searcher.web.names import check_index_name, folder_name

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
