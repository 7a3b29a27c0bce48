"""`searcher train`: fine-tuning the encoder on judgements (real model, real trainer, a tiny
collection where the base model cannot know the answers: product codes that no document names)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.quality.evaluate import DatasetError, evaluate
from searcher.quality.training import (Example, TrainingError, TrainingSettings, mine_hard_negatives, read_judgements,
                               train, training_columns)

pytest.importorskip("sentence_transformers")

PRODUCTS = ["a coffee grinder with ceramic burrs", "a tent for four people that packs small",
            "a cordless drill with two batteries", "a rain jacket with taped seams",
            "a cast iron pan that needs seasoning", "a bicycle lock made of hardened steel",
            "a desk lamp with a warm light", "a kettle that boils water quickly",
            "running shoes with a cushioned sole", "a backpack with a laptop sleeve"]
CODES = ["ZX-41", "QT-7", "MB-220", "RK-9", "LP-33", "VN-5", "HC-80", "DW-12", "PG-64", "SY-3"]


def write_collection(folder: Path, qrels: dict[str, list[str]] | None = None) -> Path:
    """A BEIR-layout folder: one document a product, one query a product code, and the same
    judgements (query i -> document i) as train and test splits unless `qrels` says otherwise."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as fh:
        for i, product in enumerate(PRODUCTS):
            fh.write(json.dumps({"_id": f"d{i}", "title": "", "text": f"This product is {product}. It ships in a box."}) + "\n")
    with open(folder / "queries.jsonl", "w") as fh:
        for i, code in enumerate(CODES):
            fh.write(json.dumps({"_id": f"q{i}", "text": f"item {code}"}) + "\n")
    default = ["query-id\tcorpus-id\tscore"] + [f"q{i}\td{i}\t1" for i in range(len(CODES))]
    for split, lines in (qrels or {"train": default, "test": default}).items():
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


SETTINGS = dict(epochs=6, batch_size=4, learning_rate=2e-4, seed=1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = write_collection(tmp_path_factory.mktemp("products"))
    out = tmp_path_factory.mktemp("models") / "products"
    lines: list[str] = []
    record = train(folder, out, TrainingSettings(**SETTINGS), log=lines.append)
    return folder, out, record, lines


def dense_ndcg(folder: Path, model: str | None, split: str = "train") -> float:
    return evaluate(folder, mode="dense", split=split, model=model, precision="exact")["nDCG@10"]


def test_training_changes_the_model_and_improves_its_own_training_ranking(trained):
    folder, out, record, lines = trained
    assert record["fingerprint"] != record["base_fingerprint"]
    before, after = dense_ndcg(folder, None), dense_ndcg(folder, str(out))
    assert after > before + 0.2, (before, after)
    figures = record["figures"]
    assert figures["examples"] == len(CODES) and figures["hard_negatives"] == len(CODES)
    assert figures["steps"] == SETTINGS["epochs"] * 3  # 10 pairs in batches of 4
    assert figures["last_loss"] < figures["first_loss"]
    assert any(line.startswith("step 1/18: loss") for line in lines)  # progress, step by step


def test_the_checkpoint_encodes_as_sentence_transformers_does(trained):
    from sentence_transformers import SentenceTransformer

    from searcher.encoding.encoder import Encoder

    _, out, _, _ = trained
    texts = [f"item {code}" for code in CODES] + [f"This product is {p}." for p in PRODUCTS]
    expected = SentenceTransformer(str(out), device="cpu").encode(texts, normalize_embeddings=True)
    encoder = Encoder(out, device="cpu", precision="exact")
    assert encoder.pooling == "mean" and encoder.max_tokens == 256  # as the base declares
    assert ((encoder.encode(texts) * expected).sum(axis=1) > 1 - 1e-4).all()


def test_the_checkpoint_opens_with_model_everywhere(trained, tmp_path):
    folder, out, record, _ = trained
    on_disk = json.loads((out / "training.json").read_text())
    assert on_disk["settings"]["epochs"] == SETTINGS["epochs"] and on_disk["fingerprint"] == record["fingerprint"]
    runner = CliRunner()
    result = runner.invoke(main, ["index", str(folder / "corpus.jsonl"), "--index", str(tmp_path / "idx"),
                                  "--model", str(out)])
    assert result.exit_code == 0, result.output
    with Index.open(tmp_path / "idx") as index:
        assert index.manifest["model_fingerprint"] == record["fingerprint"]  # a new index for a new model
        assert index.search("item QT-7", k=1, mode="dense")[0].doc_id == "d1"
    result = runner.invoke(main, ["eval", str(folder), "--split", "train", "--model", str(out), "--mode", "dense",
                                  "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nDCG@10"] > 0.6  # the base model: about 0.36


def test_hard_negatives_are_ranked_documents_that_are_not_judged_relevant(tmp_path):
    folder = write_collection(tmp_path / "c")
    judgements = read_judgements(folder)
    with Index.create(tmp_path / "idx") as index:
        index.add_documents([{"id": f"d{i}", "text": f"This product is {p}. It ships in a box."}
                             for i, p in enumerate(PRODUCTS)])
        added = mine_hard_negatives(judgements, index, count=2, depth=5)
    assert added == 2 * len(CODES)
    for i, example in enumerate(judgements.examples):
        assert len(example.negatives) == 2 and example.positive not in example.negatives
        assert judgements.corpus[f"d{i}"] == example.positive


def test_training_columns_cut_negatives_to_what_every_row_has():
    rows = [Example("q1", "p1", ["n1", "n2"]), Example("q2", "p2", ["m1"])]
    assert training_columns(rows, 3) == {"anchor": ["q1", "q2"], "positive": ["p1", "p2"], "negative_1": ["n1", "m1"]}
    assert list(training_columns(rows, 0)) == ["anchor", "positive"]


def test_training_refuses_the_test_split_without_the_flag(tmp_path):
    folder = write_collection(tmp_path / "c")
    result = CliRunner().invoke(main, ["train", str(folder), "--out", str(tmp_path / "m"), "--split", "test"])
    assert result.exit_code == 1 and "--allow-test-split" in result.output
    with pytest.raises(TrainingError, match="same split"):
        train(folder, tmp_path / "m", TrainingSettings(split="train", eval_split="train"))
    assert not (tmp_path / "m").exists()


def test_training_refuses_an_out_folder_that_holds_something(tmp_path):
    folder = write_collection(tmp_path / "c")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["train", str(folder), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and "not empty" in result.output
    assert (tmp_path / "m" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("line, message", [
    ("q99\td1\t1", "train.tsv:3: query 'q99' is not in queries.jsonl"),
    ("q1\td99\t1", "train.tsv:3: document 'd99' is not in corpus.jsonl"),
    ("q1\td1\tmany", "train.tsv:3: score 'many' is not a number"),
])
def test_a_bad_judgements_file_names_the_line(tmp_path, line, message):
    folder = write_collection(tmp_path / "c", {"train": ["query-id\tcorpus-id\tscore", "q0\td0\t1", line]})
    with pytest.raises(DatasetError, match=message):
        read_judgements(folder)
    result = CliRunner().invoke(main, ["train", str(folder), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1 and message in result.output


def test_judgements_without_a_positive_are_refused(tmp_path):
    folder = write_collection(tmp_path / "c", {"train": ["query-id\tcorpus-id\tscore", "q0\td0\t0", "q1\td3\t0"]})
    with pytest.raises(DatasetError, match="no positive judgements"):
        read_judgements(folder)


@pytest.mark.parametrize("row, message", [
    ({"positive": "a text"}, 'pairs.jsonl:2: no "query" text'),
    ({"query": "q"}, 'pairs.jsonl:2: no "positive" text'),
    ({"query": "q", "positive": ["  "]}, 'pairs.jsonl:2: no "positive" text'),
    ({"query": "q", "positive": "p", "negative": 3}, 'pairs.jsonl:2: "negative" must be a text or a list'),
])
def test_a_bad_pairs_file_names_the_line(tmp_path, row, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"query": "fine", "positive": "also fine"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(DatasetError, match=message):
        read_judgements(path)


def test_training_on_a_pairs_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    with open(path, "w") as fh:
        for code, product in zip(CODES, PRODUCTS):
            fh.write(json.dumps({"query": f"item {code}", "positive": f"This product is {product}.",
                                 "negative": "A box with nothing in it."}) + "\n")
    result = CliRunner().invoke(main, ["train", str(path), "--out", str(tmp_path / "m"), "--epochs", "1",
                                       "--batch-size", "5", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout[result.stdout.index("{"):])
    assert record["figures"]["negative_columns"] == 1 and record["figures"]["steps"] == 2
    with pytest.raises(TrainingError, match="needs a BEIR-layout folder"):
        train(path, tmp_path / "m2", TrainingSettings(eval_split="test"))
    assert (tmp_path / "m" / "config.json").is_file()
