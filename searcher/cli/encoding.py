"""Texts to vectors on the command line: `searcher encode`, with an index's model in process
or through a running server's /v1/embeddings (bert-as-service's `encode`, as a command)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from searcher.cli.options import device_option, index_option, precision_option

JSONL_SUFFIXES = (".jsonl", ".ndjson")


def read_inputs(source, jsonl: bool, field: str) -> tuple[list[str], list]:
    """(texts, ids) from a text stream: one text a line, or with `jsonl` one JSON value a line
    (a string, or an object whose `field` holds the text; its "id", if any, is kept)."""
    texts, ids = [], []
    for number, line in enumerate(source.read().splitlines(), 1):
        if not jsonl:
            texts.append(line)
            ids.append(None)
            continue
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as e:
            raise click.UsageError(f"line {number} is not JSON ({e}); plain text is read without --jsonl") from None
        if isinstance(value, dict):
            text = value.get(field)
            ids.append(value.get("id"))
        else:
            text = value
            ids.append(None)
        if not isinstance(text, str):
            raise click.UsageError(f"line {number} has no text: a JSON string, or an object with a {field!r} string")
        texts.append(text)
    return texts, ids


def write_jsonl(out, vectors, ids) -> None:
    for i, (vector, doc_id) in enumerate(zip(vectors, ids)):
        row = {"index": i, **({"id": doc_id} if doc_id is not None else {}),
               "embedding": [round(float(x), 7) for x in vector]}
        out.write(json.dumps(row) + "\n")


@click.command()
@click.argument("source", default="-", type=click.File("r", encoding="utf-8"))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where the vectors go: FILE.npy (a float32 numpy array, n x dimension) or a JSON Lines "
                   "file (default: JSON Lines on standard output).")
@click.option("--jsonl", "as_jsonl", is_flag=True, default=None,
              help="Read JSON Lines (default for .jsonl/.ndjson files): each line a string or an object with --field.")
@click.option("--field", default="text", show_default=True, help="The JSON Lines objects' text field.")
@click.option("--input-type", type=click.Choice(["document", "query"]), default="document", show_default=True,
              help="Encode as the index encodes a chunk (its document prefix) or a query (its query prefix).")
@click.option("--no-truncate", is_flag=True, help="Refuse texts longer than the model reads instead of cutting them.")
@click.option("--batch-size", type=click.IntRange(1), default=None,
              help="Texts per forward pass (per request with --url; default: 32, 256 with --url).")
@index_option
@click.option("--model", help="Model the index was built with (checked against the index).")
@device_option
@precision_option
@click.option("--url", help="Encode on a running `searcher serve` (e.g. http://127.0.0.1:8000) instead of --index.")
@click.option("--server-index", metavar="NAME", help="With --url: which of the server's indexes' model (default: its default).")
@click.option("--api-key", envvar="SEARCHER_API_KEY", help="With --url: a key of the server (or $SEARCHER_API_KEY).")
def encode(source, output, as_jsonl, field, input_type, no_truncate, batch_size, index_dir, model, device, precision,
           url, server_index, api_key):
    """Encode the texts of SOURCE (a file, or - for standard input: one text a line, or JSON
    Lines) with an index's model, as the index encodes them, and write their vectors.

    \b
    searcher encode sentences.txt -o vectors.npy
    searcher encode docs.jsonl --field body > vectors.jsonl
    echo "how do I read a file" | searcher encode --input-type query --url http://127.0.0.1:8000
    """
    if as_jsonl is None:
        as_jsonl = Path(getattr(source, "name", "")).suffix.lower() in JSONL_SUFFIXES
    texts, ids = read_inputs(source, as_jsonl, field)
    if url:
        from searcher.remote import connect

        client = connect(url, index=server_index, api_key=api_key)
        try:
            vectors = client.encode(texts, batch_size=batch_size or 256, input_type=input_type,
                                    truncate=not no_truncate)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
    else:
        from searcher.cluster.sharded import open_index

        index = open_index(index_dir, model, device=device, precision=precision)
        try:
            vectors = index.encode(texts, input_type=input_type, batch_size=batch_size, truncate=not no_truncate)
        except ValueError as e:
            raise click.ClickException(str(e)) from None
        finally:
            index.close()
    if output is not None and output.suffix.lower() == ".npy":
        import numpy as np

        np.save(output, np.asarray(vectors, dtype=np.float32))
    elif output is not None:
        with open(output, "w", encoding="utf-8") as out:
            write_jsonl(out, vectors, ids)
    else:
        write_jsonl(sys.stdout, vectors, ids)
    if output is not None:
        click.echo(f"{len(texts)} vectors of {len(vectors[0]) if len(vectors) else 0} dimensions written to {output}",
                   err=True)
