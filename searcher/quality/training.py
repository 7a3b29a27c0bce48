"""Fine-tuning the encoder on relevance judgements: `searcher train`.

BERT's recipe is to pretrain once and fine-tune on your own data. Judged pairs (a query and a
document relevant to it) train the encoder contrastively with sentence-transformers'
MultipleNegativesRankingLoss: the other documents of a batch are negatives, and so are hard
negatives mined from an index of the corpus (documents it ranks high for the query that are not
judged relevant). The result is an ordinary checkpoint folder that `--model` accepts everywhere,
with `training.json` beside the weights: the settings, the data and the figures.

Judgements come in one of two forms:
- a BEIR-layout folder: `qrels/<split>.tsv` with `queries.jsonl` and `corpus.jsonl`;
- a JSON Lines file of `{"query", "positive"[, "negative"]}` objects (each a text or a list of texts).

sentence-transformers and its trainer come with the optional `train` extra.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from searcher.encoding.encoder import DEFAULT_MODEL_NAME, model_fingerprint, resolve_model_path
from searcher.errors import SearcherError
from searcher.quality.evaluate import DatasetError, check_index_holds, judgement_lines, read_corpus, read_jsonl, read_queries
from searcher.sanitize import is_blank

TRAINING_FILE = "training.json"  # beside the checkpoint's weights


class TrainingError(SearcherError):
    pass


@dataclass
class TrainingSettings:
    """How to train; stored in training.json as given."""

    base: str | None = None  # a checkpoint folder; None: the bundled all-MiniLM-L6-v2
    split: str = "train"  # the BEIR qrels split to train on
    epochs: int = 3  # SciFact: 1 epoch 0.701 dense nDCG@10, 3 epochs 0.749 (base 0.656)
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    hard_negatives: int = 1  # mined per query (0: in-batch negatives only)
    mining_depth: int = 30  # how far down the index's ranking negatives are looked for
    max_tokens: int | None = None  # None: the checkpoint's own max_seq_length
    seed: int = 42
    device: str = "auto"
    allow_test_split: bool = False  # `--split test` trains on what is usually evaluated
    eval_split: str | None = None  # evaluate before/after on this split (BEIR folders only)


@dataclass
class Example:
    query: str
    positive: str
    negatives: list[str] = field(default_factory=list)
    query_id: str | None = None  # BEIR: for mining, which skips the query's judged documents


@dataclass
class Judgements:
    examples: list[Example]
    corpus: dict[str, str] | None  # doc id -> training text (title and text); None for pairs files
    corpus_rows: list[dict] | None  # as evaluate.load_dataset gives them, for indexing
    positives: dict[str, set[str]]  # query id -> doc ids judged relevant
    skipped_queries: int = 0  # judged, but with no positive judgement


def document_text(title: str, text: str) -> str:
    """A document as the encoder sees it when indexing: its title's tokens, then its text's."""
    return f"{title} {text}".strip() if title else text


def read_judgements(source: str | os.PathLike, split: str = "train", allow_test_split: bool = False) -> Judgements:
    """Training pairs from a BEIR folder or a JSON Lines pairs file; errors name the line."""
    source = Path(source)
    if source.is_dir():
        if split == "test" and not allow_test_split:
            raise TrainingError("refusing to train on the test split, which is what evaluation reads "
                                "(give --allow-test-split if you mean it)")
        return _read_beir(source, split)
    if source.is_file():
        return _read_pairs(source)
    raise TrainingError(f"{source} is neither a BEIR-layout folder nor a JSON Lines file of pairs")


def _read_beir(folder: Path, split: str) -> Judgements:
    rows = read_corpus(folder)
    corpus = {row["id"]: document_text(row["title"], row["text"]) for row in rows}
    queries = read_queries(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    positives: dict[str, set[str]] = {}
    judged: set[str] = set()
    examples = []
    for n, qid, doc_id, score in judgement_lines(qrels_path):
        if qid not in queries or is_blank(queries[qid]):
            raise DatasetError(f"{qrels_path}:{n}: query {qid!r} is not in queries.jsonl (or has no text)")
        if doc_id not in corpus:
            raise DatasetError(f"{qrels_path}:{n}: document {doc_id!r} is not in corpus.jsonl")
        judged.add(qid)
        if score > 0:
            if is_blank(corpus[doc_id]):
                raise DatasetError(f"{qrels_path}:{n}: document {doc_id!r} has no text")
            positives.setdefault(qid, set()).add(doc_id)
            examples.append(Example(queries[qid], corpus[doc_id], query_id=qid))
    if not examples:
        raise DatasetError(f"{qrels_path}: no positive judgements (a score above 0): nothing to train on")
    return Judgements(examples, corpus, rows, positives, skipped_queries=len(judged - positives.keys()))


def _texts(value, path: Path, n: int, name: str, required: bool) -> list[str]:
    if value is None:
        if required:
            raise DatasetError(f'{path}:{n}: no "{name}" text')
        return []
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DatasetError(f'{path}:{n}: "{name}" must be a text or a list of texts')
    values = [v for v in values if not is_blank(v)]
    if required and not values:
        raise DatasetError(f'{path}:{n}: no "{name}" text')
    return values


def _read_pairs(path: Path) -> Judgements:
    examples = []
    for n, row in read_jsonl(path):
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{n}: expected a JSON object with query and positive")
        query = row.get("query")
        if not isinstance(query, str) or is_blank(query):
            raise DatasetError(f'{path}:{n}: no "query" text')
        negatives = _texts(row.get("negative"), path, n, "negative", required=False)
        for positive in _texts(row.get("positive"), path, n, "positive", required=True):
            examples.append(Example(query, positive, list(negatives)))
    if not examples:
        raise DatasetError(f"{path}: no pairs in it")
    return Judgements(examples, None, None, {})


def mine_hard_negatives(judgements: Judgements, index, count: int, depth: int,
                        progress: Callable[[int], None] | None = None) -> int:
    """Give each BEIR example up to `count` negatives: the documents the index ranks highest for
    its query (default mode) that are not judged relevant to it. Returns how many were added."""
    if count <= 0 or judgements.corpus is None:
        return 0
    ranked: dict[str, list[str]] = {}
    added = 0
    for example in judgements.examples:
        qid = example.query_id
        if qid not in ranked:
            judged = judgements.positives.get(qid, set())
            hits = index.search(example.query, k=depth, syntax=False)
            ranked[qid] = [judgements.corpus[h.doc_id] for h in hits
                           if h.doc_id not in judged and h.doc_id in judgements.corpus][:count]
            if progress:
                progress(1)
        example.negatives = example.negatives + ranked[qid]
        added += len(ranked[qid])
    return added


def training_columns(examples: list[Example], negatives: int) -> dict[str, list[str]]:
    """The trainer's columns: anchor, positive, negative_1..N. Every row needs every column, so
    N is at most the fewest negatives any row has (in-batch negatives still apply to every row)."""
    n = min(negatives, min((len(e.negatives) for e in examples), default=0))
    columns = {"anchor": [e.query for e in examples], "positive": [e.positive for e in examples]}
    for i in range(n):
        columns[f"negative_{i + 1}"] = [e.negatives[i] for e in examples]
    return columns


def train(source: str | os.PathLike, out: str | os.PathLike, settings: TrainingSettings | None = None,
          mining_index: str | os.PathLike | None = None, log: Callable[[str], None] = print,
          progress: Callable[[int], None] | None = None) -> dict:
    """Fine-tune `settings.base` on the judgements in `source` and write the checkpoint to `out`.

    Hard negatives come from `mining_index` (an index of the same corpus, e.g. the one you search
    today), else from a temporary index built with the base model. The checkpoint is written
    beside `out` and renamed into place at the end, so an interrupted run leaves nothing half
    written. Returns what training.json records.
    """
    settings = settings or TrainingSettings()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise TrainingError(f"{out} already exists and is not empty: give a new --out folder")
    if settings.epochs < 1 or settings.batch_size < 2:
        raise TrainingError("training needs --epochs of at least 1 and --batch-size of at least 2")
    if settings.eval_split is not None and settings.eval_split == settings.split and not settings.allow_test_split:
        raise TrainingError(f"refusing to train and evaluate on the same split ({settings.split!r})")
    judgements = read_judgements(source, settings.split, settings.allow_test_split)
    if settings.eval_split and judgements.corpus is None:
        raise TrainingError("--eval-split needs a BEIR-layout folder (a pairs file has no corpus to search)")
    base = resolve_model_path(settings.base)
    started = time.perf_counter()
    figures: dict = {"examples": len(judgements.examples),
                     "queries": len({e.query for e in judgements.examples}),
                     "queries_without_positives": judgements.skipped_queries}

    with tempfile.TemporaryDirectory(prefix="searcher-train-") as tmp, _mining_index(
            judgements, mining_index, Path(tmp), settings, log, progress) as index:
        if index is not None:
            log(f"mining hard negatives from {index.path} ({len(index)} documents)")
            figures["hard_negatives"] = mine_hard_negatives(
                judgements, index, settings.hard_negatives, settings.mining_depth, progress)
            if settings.eval_split:
                figures["before"] = _evaluate(index, source, settings.eval_split, log)
        log(f"training on {len(judgements.examples)} pairs from {source}")
        model, history = _fit(base, judgements.examples, settings, Path(tmp) / "trainer", log)
        figures.update(history)
        figures["train_seconds"] = round(time.perf_counter() - started, 1)
        stage = out.parent / f".{out.name}.partial-{os.getpid()}"
        shutil.rmtree(stage, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        model.save(str(stage))
        record = {"base": settings.base or DEFAULT_MODEL_NAME, "base_fingerprint": model_fingerprint(base),
                  "fingerprint": model_fingerprint(stage), "source": str(Path(source).resolve()),
                  "settings": asdict(settings), "figures": figures}
        (stage / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
        if out.is_dir():
            out.rmdir()  # empty (checked above): os.replace would not replace a folder on every system
        os.replace(stage, out)
    if settings.eval_split:
        figures["after"] = _evaluate_new(out, source, judgements.corpus_rows, settings, log, progress)
        record["figures"] = figures
        partial = out / f"{TRAINING_FILE}.partial"
        partial.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(partial, out / TRAINING_FILE)
    return record


@contextmanager
def _mining_index(judgements: Judgements, mining_index, tmp: Path, settings: TrainingSettings, log, progress):
    """The index to mine negatives from (and to evaluate the base model on): the one given,
    checked to hold the corpus, else a temporary one of the corpus built with the base model.
    None for a pairs file, which has no corpus."""
    from searcher.index.facade import Index

    if judgements.corpus is None or (settings.hard_negatives <= 0 and not settings.eval_split):
        yield None
        return
    if mining_index is not None:
        index = Index.open(mining_index, device=settings.device)
    else:
        log(f"indexing the corpus ({len(judgements.corpus_rows)} documents) with the base model to mine "
            "hard negatives (give --index DIR to reuse an index of it)")
        index = Index.create(tmp / "mining-index", settings.base, device=settings.device)
    try:
        missing = check_index_holds(index, judgements.corpus_rows)
        if missing and mining_index is not None:
            raise TrainingError(f"{mining_index} lacks {missing} documents of the corpus: it is not an index "
                                "of this collection (leave out --index to build a temporary one)")
        if missing:
            index.add_documents(judgements.corpus_rows, progress=progress)
        yield index
    finally:
        index.close()


def _evaluate(index, source, split: str, log) -> dict:
    from searcher.quality.evaluate import evaluate

    figures = {}
    for mode in ("dense", "hybrid"):
        result = evaluate(source, mode=mode, split=split, index=index, record=False)
        figures[mode] = {"nDCG@10": result["nDCG@10"], "Recall@100": result["Recall@100"]}
        log(f"{split} {mode} nDCG@10 {result['nDCG@10']:.4f}")
    return figures


def _evaluate_new(model_dir: Path, source, rows: list[dict], settings: TrainingSettings, log, progress) -> dict:
    from searcher.index.facade import Index

    log(f"indexing the corpus with the fine-tuned model to evaluate it on {settings.eval_split}")
    with tempfile.TemporaryDirectory(prefix="searcher-train-eval-") as tmp:
        index = Index.create(Path(tmp) / "index", str(model_dir), device=settings.device)
        try:
            index.add_documents(rows, progress=progress)
            return _evaluate(index, source, settings.eval_split, log)
        finally:
            index.close()


def _fit(base: Path, examples: list[Example], settings: TrainingSettings, work: Path, log: Callable[[str], None]):
    """sentence-transformers' trainer over the pairs: MultipleNegativesRankingLoss, no duplicate
    texts within a batch (a duplicate would be a false in-batch negative)."""
    try:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
        from sentence_transformers.sentence_transformer.training_args import (
            BatchSamplers, SentenceTransformerTrainingArguments)
        from transformers import PrinterCallback
    except ImportError as e:
        raise TrainingError(f"training needs the train extra: pip install -e '.[train]' ({e})") from None
    from searcher.encoding.encoder import pick_device

    device = pick_device(settings.device)
    model = SentenceTransformer(str(base), device=device)
    if settings.max_tokens:
        model.max_seq_length = settings.max_tokens
    dataset = Dataset.from_dict(training_columns(examples, settings.hard_negatives))
    steps_per_epoch = math.ceil(len(examples) / settings.batch_size)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work), num_train_epochs=settings.epochs,
        per_device_train_batch_size=settings.batch_size, learning_rate=settings.learning_rate,
        warmup_steps=round(settings.warmup_ratio * steps_per_epoch * settings.epochs),
        batch_sampler=BatchSamplers.NO_DUPLICATES, save_strategy="no", report_to="none",
        seed=settings.seed, data_seed=settings.seed, logging_steps=max(1, steps_per_epoch // 5),
        use_cpu=device == "cpu", fp16=device == "cuda", disable_tqdm=True,
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                         loss=MultipleNegativesRankingLoss(model))
    # The trainer prints its logs on stdout; they go to `log` instead (stdout may be --json).
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(_log_lines(log))
    result = trainer.train()
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    history = {"steps": trainer.state.global_step, "device": device,
               "negative_columns": len(dataset.column_names) - 2,
               "loss": round(float(result.training_loss), 4),
               "first_loss": round(losses[0], 4) if losses else None,
               "last_loss": round(losses[-1], 4) if losses else None}
    return model, history


def _log_lines(log: Callable[[str], None]):
    """A trainer callback that reports each logged step as one line."""
    from transformers import TrainerCallback

    class LogLines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                log(f"step {state.global_step}/{state.max_steps}: loss {float(logs['loss']):.4f}")

    return LogLines()
