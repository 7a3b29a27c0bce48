"""Measuring and improving search quality: `searcher eval`, `searcher train`."""

from __future__ import annotations

import json
from pathlib import Path

import click

from searcher.cli.options import device_option, json_option, mode_option, precision_option
from searcher.cli.output import progress_bar
from searcher.cluster.shards import is_sharded


@click.command("eval")
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
@json_option("Print one JSON object (metric names as keys).")
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


@click.command()
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
@json_option("Print training.json's content.")
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
