"""Reading an index: `searcher search`, `searcher similar`."""

from __future__ import annotations

import json

import click

from searcher.cli.options import (device_option, index_option, json_option, k_option, mode_option, parse_where,
                                  precision_option)
from searcher.cli.output import print_hits, printable
from searcher.cluster.sharded import open_index
from searcher.search.options import SearchOptions


@click.command()
@click.argument("query")
@index_option
@k_option
@mode_option
@click.option("--model", help="Model the index was built with (checked against the index).")
@device_option
@precision_option
@click.option("--where", "wheres", multiple=True,
              help="A filter condition field=value (or != >= > <= <), repeatable, all must hold: --where type=pdf.")
@click.option("--where-json", help='A filter as JSON: \'{"type": {"$in": ["pdf", "docx"]}}\' (see docs/searching.md).')
@click.option("--sort", type=click.Choice(["relevance", "modified"]), default="relevance", show_default=True,
              help="modified: the best documents newest first.")
@click.option("--recency", type=click.FloatRange(min=0, min_open=True), metavar="DAYS",
              help="Boost recent documents: a score halves for every DAYS of age.")
@click.option("--facets", "facet_fields", metavar="FIELDS",
              help="Also count these fields' values among the best documents: --facets type,folder,year.")
@json_option("Print results as a JSON list (an object with facets).")
def search(query, index_dir, k, mode, model, device, precision, wheres, where_json, sort, recency, facet_fields,
           as_json):
    """Find the documents that best match QUERY. QUERY reads the way people type: "a phrase"
    (only documents holding it), -word and -"a phrase" (none holding them), a OR b, word*
    (a prefix), field:value, field:a,b, field:>=value (title, type, folder, year, modified, id,
    source or any metadata key; ANDed with --where); a backslash before a quote, minus, star or colon makes it
    literal. A word no document holds is read as the nearest word documents hold ("Did you
    mean"); quote a word to search it as typed. Each hit shows its similarity (cosine) and
    BM25, the same scale for every query; "No close match" says nothing is near in meaning.

    \b
    searcher search "how do I read a file line by line" -k 5
    searcher search "XQ-7781" --mode keyword
    searcher search "budget" --where type=pdf --where 'modified>=2024-01-01'
    searcher search "budget" --sort modified --facets type,year
    searcher search '"line by line" read -binary type:md'
    searcher search 'compress gzip OR bz2 year:>=2023'
    searcher search 'protien folding'        # Did you mean: protein folding
    """
    where = parse_where(wheres, where_json)
    try:  # checked before the model loads
        options = SearchOptions(k=k, mode=mode, where=where, sort=sort, recency=recency,
                                facets=tuple(facet_fields.split(",")) if facet_fields else ())
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    idx = open_index(index_dir, model, device=device, precision=precision)
    hits, facets = idx.search_with_facets(query, options.k, options.offset, options.facets, mode=options.mode,
                                          where=options.where, sort=options.sort, recency=options.recency)
    facets = facets if options.facets else None
    if as_json:
        results = [h.to_dict() for h in hits]
        click.echo(json.dumps(results if facets is None else {"results": results, "facets": facets},
                              indent=2, ensure_ascii=False))
        if hits.suggestion:  # the JSON stays a list of results; the note goes beside it
            click.echo(f"Did you mean: {hits.suggestion}", err=True)
        return
    if hits.suggestion:
        click.echo(f"Did you mean: {printable(hits.suggestion)}  (results for these words; "
                   "quote a word to search it as typed)")
    if not hits:
        click.echo("No results.")
    elif hits.close_match is False:
        click.echo("No close match: nothing in the index is near these words in meaning; the nearest follow.")
    print_hits(hits)
    for field, values in (facets or {}).items():
        listed = ", ".join(f"{printable(str(v))} ({n})" for v, n in values.items())
        click.echo(f"{field}: {listed or '-'}")


@click.command()
@click.argument("doc_id")
@index_option
@k_option
@device_option
@precision_option
@json_option("Print results as a JSON list.")
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
    print_hits(hits, passages=False)
