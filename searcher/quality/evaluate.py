"""Retrieval quality on a test collection in the BEIR layout.

A collection is a folder with `corpus.jsonl` (`_id`, `title`, `text`), `queries.jsonl`
(`_id`, `text`) and `qrels/<split>.tsv` (`query-id`, `corpus-id`, `score`, with a header).
`evaluate()` indexes the corpus (or checks that a given index holds exactly it), runs every
query that has judgements and scores the rankings with ir-measures (pytrec_eval underneath):
nDCG@10, Recall@100 and MRR@10.
"""

from __future__ import annotations

import csv
import json
import logging
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, Mapping

from searcher.errors import SearcherError
from searcher.index.facade import Index
from searcher.index.writer import as_document, content_hash
from searcher.search.results import check_mode
from searcher.storage.folder import MANIFEST
from searcher.sanitize import is_blank

METRICS = ("nDCG@10", "Recall@100", "MRR@10")
RUN_DEPTH = 100  # documents retrieved per query: enough for Recall@100
log = logging.getLogger(__name__)


class DatasetError(SearcherError):
    pass


@dataclass
class Dataset:
    path: Path
    split: str
    corpus: list[dict]  # {"id", "title", "text"}
    queries: dict[str, str]  # judged queries only: id -> text
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: relevance}

    @property
    def name(self) -> str:
        return self.path.name


def read_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing (a BEIR-layout collection has corpus.jsonl and queries.jsonl)")
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"{path}:{n}: not JSON ({e})") from e


def judgement_lines(path: Path) -> Iterator[tuple[int, str, str, int]]:
    """(line number, query id, doc id, relevance) for each judgement in a BEIR qrels TSV
    (a header row is skipped)."""
    if not path.is_file():
        raise DatasetError(f"{path} is missing (judgements go in qrels/<split>.tsv)")
    with open(path, encoding="utf-8", newline="") as fh:
        for n, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 3:
                raise DatasetError(f"{path}:{n}: expected query-id, corpus-id, score")
            try:
                score = int(float(row[2]))
            except ValueError:
                if n == 1:
                    continue  # the header
                raise DatasetError(f"{path}:{n}: score {row[2]!r} is not a number") from None
            yield n, row[0].strip(), row[1].strip(), score


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """query id -> {doc id: relevance} from a BEIR qrels TSV."""
    qrels: dict[str, dict[str, int]] = {}
    for _, qid, doc_id, score in judgement_lines(path):
        qrels.setdefault(qid, {})[doc_id] = score
    return qrels


def read_corpus(folder: Path) -> list[dict]:
    """A collection's corpus.jsonl as {"id", "title", "text"} rows, in file order."""
    corpus = []
    for n, row in read_jsonl(folder / "corpus.jsonl"):
        doc_id = row.get("_id", row.get("id"))
        if doc_id is None:
            raise DatasetError(f"{folder / 'corpus.jsonl'}:{n}: no _id")
        corpus.append({"id": str(doc_id), "title": row.get("title") or "", "text": row.get("text") or ""})
    return corpus


def read_queries(folder: Path) -> dict[str, str]:
    """A collection's queries.jsonl: query id -> text."""
    return {str(q.get("_id", q.get("id"))): q.get("text") or "" for _, q in read_jsonl(folder / "queries.jsonl")}


def load_dataset(path: str | Path, split: str = "test") -> Dataset:
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path} is not a folder")
    corpus = read_corpus(path)
    texts = read_queries(path)
    qrels = read_qrels(path / "qrels" / f"{split}.tsv")
    missing = [q for q in qrels if q not in texts]
    if missing:
        raise DatasetError(f"{len(missing)} judged queries are not in queries.jsonl (e.g. {missing[0]!r})")
    queries = {q: texts[q] for q in qrels}
    return Dataset(path, split, corpus, queries, qrels)


def compute_metrics(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, list[str]]) -> dict[str, float]:
    """Mean nDCG@10, Recall@100 and MRR@10 over every query in `qrels`.

    `run` maps a query id to its ranked doc ids, best first. A judged query with no ranking
    (or an empty one) counts as 0, unlike pytrec_eval's own mean, which would drop it.
    """
    import ir_measures
    from ir_measures import RR, R, nDCG

    measures = {"nDCG@10": nDCG @ 10, "Recall@100": R @ 100, "MRR@10": RR @ 10}
    # Scores that decrease with rank, so the evaluator sees exactly our order (no tie-breaking).
    scored = {
        q: {d: float(len(docs) - r) for r, d in enumerate(docs)}
        for q, docs in run.items() if q in qrels and docs
    }
    qrels = {q: dict(j) for q, j in qrels.items()}
    per_query: dict[str, dict[str, float]] = {name: {} for name in measures}
    names = {m: name for name, m in measures.items()}
    if scored:
        for m in ir_measures.iter_calc(list(measures.values()), qrels, scored):
            per_query[names[m.measure]][m.query_id] = float(m.value)
    n = len(qrels)
    return {name: (sum(per_query[name].get(q, 0.0) for q in qrels) / n if n else 0.0) for name in measures}


def check_index_holds(index: Index, corpus: list[dict]) -> int:
    """Raise DatasetError unless `index` holds exactly the corpus (same ids, same content).

    Returns how many corpus documents are still missing (an interrupted build), which the
    caller may add. Documents with no text are never indexed, so they are not expected.
    """
    expected = {}
    for d in corpus:
        if not is_blank(d["text"]) and d["id"] not in expected:
            expected[d["id"]] = content_hash(as_document(d))
    present = set(index.store.document_ids())
    extra = present - expected.keys()
    if extra:
        raise DatasetError(
            f"the index in {index.path} holds {len(extra)} documents that are not in this corpus "
            f"(e.g. {sorted(extra)[0]!r}): it was not built from it; give another --index folder"
        )
    stored = index.store.content_hashes(sorted(present))
    changed = [d for d, h in stored.items() if h != expected[d]]
    if changed:
        raise DatasetError(
            f"{len(changed)} documents in {index.path} differ from the corpus (e.g. {changed[0]!r}): "
            f"it was built from another version of it; give another --index folder"
        )
    return len(expected.keys() - present)


def evaluate(
    dataset_dir: str | Path,
    mode: str | None = None,
    index_dir: str | Path | None = None,
    split: str = "test",
    model: str | None = None,
    device: str = "auto",
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
    index: Index | None = None,
    precision: str = "auto",
    record: bool | None = None,
) -> dict:
    """Index the collection (or reuse `index_dir` / `index`), run the judged queries, score them.

    Returns a dict with the metrics (METRICS as keys) and how long indexing and searching took.
    `index_dir` that holds no index yet is built there and kept; with neither `index_dir` nor
    `index` the index goes to a temporary folder that is removed afterwards.

    `record` (default: when `index_dir` is given) stores the figures in the index
    (`evaluation_record`, `Index.record_evaluation`): the last run per dataset, split and
    mode, which `searcher info` and the server's /about show. `recorded` in the result says
    whether that worked (a write lock held too long by another process, or a read-only
    folder, leaves the index as it was and logs a warning).
    """
    mode = check_mode(mode)
    dataset = load_dataset(dataset_dir, split)
    with tempfile.TemporaryDirectory(prefix="searcher-eval-") as tmp:
        own = index is None
        if own:
            folder = Path(index_dir) if index_dir is not None else Path(tmp) / "index"
            if (folder / MANIFEST).exists():
                index = Index.open(folder, model, device=device, batch_size=batch_size, precision=precision)
            else:
                index = Index.create(folder, model, device=device, batch_size=batch_size, precision=precision)
        try:
            result = _evaluate_on(index, dataset, mode, progress)
            result["index"] = str(index_dir) if index_dir is not None else (None if own else str(index.path))
            if record if record is not None else index_dir is not None:
                result["recorded"] = _record(index, evaluation_record(index, dataset, result))
            return result
        finally:
            if own:
                index.close()


def _evaluate_on(index: Index, dataset: Dataset, mode: str, progress) -> dict:
    started = time.perf_counter()
    missing = check_index_holds(index, dataset.corpus)
    indexed = 0
    if missing:
        report = index.add_documents(dataset.corpus, progress=progress)
        indexed = report.indexed
        check_index_holds(index, dataset.corpus)
    index_seconds = time.perf_counter() - started

    run: dict[str, list[str]] = {}
    started = time.perf_counter()
    for qid, text in dataset.queries.items():  # a dataset's queries are plain words, not the query language
        run[qid] = [] if is_blank(text) else [h.doc_id for h in index.search(text, k=RUN_DEPTH, mode=mode,
                                                                             syntax=False)]
    search_seconds = time.perf_counter() - started
    metrics = compute_metrics(dataset.qrels, run)
    n = len(dataset.queries)
    return {
        "dataset": str(dataset.path),
        "split": dataset.split,
        "mode": mode,
        **{name: round(value, 4) for name, value in metrics.items()},
        "queries": n,
        "documents": len(index),
        "indexed": indexed,
        "index_seconds": round(index_seconds, 2),
        "search_seconds": round(search_seconds, 2),
        "ms_per_query": round(1000 * search_seconds / n, 2) if n else 0.0,
    }


def evaluation_record(index: Index, dataset: Dataset, result: dict) -> dict:
    """What an index keeps of an evaluation run on it: the dataset (by folder name, and its
    path), split, mode, metrics, how many queries, when, the generation searched and the
    model and precision that encoded the queries."""
    encoder = index.encoder
    return {
        "dataset": dataset.name,
        "dataset_path": str(dataset.path.resolve()),
        "split": result["split"],
        "mode": result["mode"],
        "metrics": {name: result[name] for name in METRICS},
        "queries": result["queries"],
        "documents": result["documents"],
        "ms_per_query": result["ms_per_query"],
        "generation": index.generation,
        "model": index.manifest["model"],
        "precision": encoder.precision if encoder is not None else None,
        "backend": encoder.backend if encoder is not None else None,
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _record(index: Index, record: dict) -> bool:
    try:
        index.record_evaluation(record)
    except (SearcherError, OSError, sqlite3.Error) as e:
        log.warning("%s: the evaluation's figures were not stored in the index: %s", index.path, e)
        return False
    return True
