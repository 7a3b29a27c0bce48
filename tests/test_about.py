"""The index's own report: figures `searcher eval --index` stores, `Index.info()`'s commit time
and sizes on disk, the server's latency window, and /about and /api/about.

The eval test runs the real default model on a tiny BEIR-layout collection (tests/test_quality.py's);
the rest runs on the fake encoder (tests/fake_encoder.py).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.index.check import check_index
from searcher.cli import main
from searcher.errors import IndexLockedError
from searcher.quality.evaluate import METRICS, evaluate
from searcher.storage.folder import exclusive_lock, vectors_path
from searcher.web import create_app
from searcher.web.latency import LatencyWindow, percentile

from .conftest import ANIMALS
from .test_quality import DOCS, write_beir

ABOUT_KEYS = {"model", "index", "counts", "disk", "keywords", "evaluations", "latency"}


def stamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


# -- the latency window ------------------------------------------------------------------------

def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))
    random.Random(7).shuffle(values)
    window = LatencyWindow(size=1000)
    for v in values:
        window.record(v)
    summary = window.summary()
    assert summary == {"count": 100, "total": 100, "window": 1000, "p50_ms": 50.0, "p95_ms": 95.0}
    assert percentile([], 50) is None
    assert percentile([3.0], 50) == percentile([3.0], 95) == 3.0
    assert percentile([1.0, 2.0], 50) == 1.0 and percentile([1.0, 2.0], 95) == 2.0
    assert percentile([float(v) for v in range(1, 21)], 95) == 19.0  # ceil(0.95 * 20) = 19th


def test_the_window_keeps_only_the_last_searches():
    window = LatencyWindow(size=10)
    assert window.summary() == {"count": 0, "total": 0, "window": 10, "p50_ms": None, "p95_ms": None}
    for v in range(1, 21):
        window.record(v)
    # 11..20 are left: p50 is the 5th of them, p95 the 10th
    assert window.summary() == {"count": 10, "total": 20, "window": 10, "p50_ms": 15.0, "p95_ms": 20.0}


def test_the_window_takes_records_from_many_threads():
    window = LatencyWindow(size=100_000)

    def work(n):
        for _ in range(2000):
            window.record(n)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert window.summary()["count"] == window.summary()["total"] == 16_000


# -- Index.info(): commit time, sizes on disk ------------------------------------------------

def test_commit_time_moves_with_each_commit(fake_index, fake_encoder):
    created = stamp(fake_index.info()["committed_at"])
    before = time.time()
    fake_index.add_documents(ANIMALS[:2])
    added = stamp(fake_index.info()["committed_at"])
    assert before - 0.002 <= added <= time.time() + 0.002 and added > created
    time.sleep(0.01)
    fake_index.delete("cat")
    deleted = stamp(fake_index.info()["committed_at"])
    assert deleted > added
    # another process's (here: another Index's) commit shows in this one's info
    other = Index.open(fake_index.path, encoder=fake_encoder)
    try:
        time.sleep(0.01)
        other.add_documents(ANIMALS[2:3])
    finally:
        other.close()
    info = fake_index.info()
    assert stamp(info["committed_at"]) > deleted and info["documents"] == 2
    # reading changed nothing: the time is the commit's, not the read's
    assert fake_index.info()["committed_at"] == info["committed_at"]


def test_commit_time_of_an_older_index_is_its_vectors_files(fake_animals_index):
    path = fake_animals_index.path
    with sqlite3.connect(path / "content.db") as conn:  # as an index from before the state key
        conn.execute("delete from state where key = 'committed_at_ms'")
    live = vectors_path(path, fake_animals_index.generation)
    os.utime(live, (1_700_000_000.25, 1_700_000_000.25))
    assert stamp(fake_animals_index.info()["committed_at"]) == pytest.approx(1_700_000_000.25, abs=0.001)


@pytest.mark.parametrize("engine", ["tantivy", "fts5"])
def test_sizes_on_disk_are_the_files_sizes(tmp_path, fake_encoder, engine):
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder, keyword_engine=engine)
    try:
        idx.add_documents(ANIMALS)
        info = idx.info()
        disk = info["disk"]
        path = idx.path
        files = [p for p in path.rglob("*") if p.is_file()]

        def size(names):
            return sum((path / n).stat().st_size for n in names if (path / n).exists())

        assert disk["database"] == size(["content.db", "content.db-wal", "content.db-shm"]) > 0
        assert disk["vectors"] == vectors_path(path, info["generation"]).stat().st_size > 0
        tantivy = [p for p in files if "keywords.tantivy" in p.parts]
        assert disk["keywords"] == sum(p.stat().st_size for p in tantivy)
        assert (disk["keywords"] > 0) == (engine == "tantivy")
        assert disk["total"] == info["size_bytes"] == sum(p.stat().st_size for p in files)
        assert disk["total"] == disk["database"] + disk["vectors"] + disk["keywords"] + disk["other"]
        assert disk["other"] == size(["manifest.json", "write.lock"])
    finally:
        idx.close()


# -- stored evaluations --------------------------------------------------------------------

def test_eval_with_index_stores_its_figures_per_dataset_and_mode(tmp_path, encoder):
    data = write_beir(tmp_path / "tiny")
    folder = tmp_path / "kept"
    runner = CliRunner()
    runs = {}
    for mode in ("keyword", "hybrid", "keyword"):  # the second keyword run replaces the first
        result = runner.invoke(main, ["eval", str(data), "--index", str(folder), "--mode", mode,
                                      "--json", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        runs[mode] = json.loads(result.stdout)
        assert runs[mode]["recorded"] is True
    text = runner.invoke(main, ["eval", str(data), "--index", str(folder), "--mode", "dense", "--device", "cpu"])
    assert text.exit_code == 0 and "stored in" in text.output

    info = json.loads(runner.invoke(main, ["info", "--index", str(folder), "--json"]).stdout)
    stored = {e["mode"]: e for e in info["evaluations"]}
    assert len(info["evaluations"]) == 3 and set(stored) == {"keyword", "hybrid", "dense"}
    for mode in ("keyword", "hybrid"):
        e = stored[mode]
        assert e["dataset"] == "tiny" and e["split"] == "test" and e["queries"] == 3
        assert e["metrics"] == {name: runs[mode][name] for name in METRICS}
        assert e["generation"] == info["generation"] and e["model"] == "all-MiniLM-L6-v2"
        assert e["precision"] in ("exact", "fast") and e["dataset_path"] == str(data.resolve())
    assert stored["keyword"]["metrics"]["nDCG@10"] == 1.0
    assert check_index(folder).ok  # the stored figures are no damage
    shown = runner.invoke(main, ["info", "--index", str(folder)]).output
    assert "tiny (test, hybrid): nDCG@10" in shown and "committed_at" in shown

    idx = Index.open(folder, device="cpu")
    try:
        client = create_app(idx).test_client()
        about = client.get("/api/about").get_json()
        assert [(e["dataset"], e["mode"]) for e in about["evaluations"]].count(("tiny", "hybrid")) == 1
        assert all("dataset_path" not in e for e in about["evaluations"])  # no server paths
        page = client.get("/about").get_data(as_text=True)
        assert "Retrieval quality" in page and "tiny" in page and "hybrid" in page
        assert f"{stored['hybrid']['metrics']['nDCG@10']:.4f}" in page
        assert "the index has changed since" not in page
        idx.add_documents([{"id": "extra", "title": "", "text": "One more document."}])
        assert "the index has changed since" in client.get("/about").get_data(as_text=True)
    finally:
        idx.close()


def test_evaluate_stores_nothing_unless_asked(tmp_path, fake_encoder):
    data = write_beir(tmp_path / "tiny")
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    try:
        idx.add_documents(DOCS)
        result = evaluate(data, mode="keyword", index=idx)
        assert "recorded" not in result and idx.info()["evaluations"] == []
        result = evaluate(data, mode="keyword", index=idx, record=True)
        assert result["recorded"] is True
        [stored] = idx.info()["evaluations"]
        assert stored["mode"] == "keyword" and stored["model"] == "fake" and stored["generation"] == idx.generation
    finally:
        idx.close()


def test_a_held_write_lock_leaves_the_figures_unstored(tmp_path, fake_encoder, caplog, monkeypatch):
    data = write_beir(tmp_path / "tiny")
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    monkeypatch.setattr("searcher.index.report.RECORD_WAIT", 0.3)
    try:
        idx.add_documents(DOCS)
        with exclusive_lock(idx.path):  # another writer
            with pytest.raises(IndexLockedError):
                idx.record_evaluation({"dataset": "d", "split": "test", "mode": "dense"})
            result = evaluate(data, mode="keyword", index=idx, record=True)
        assert result["recorded"] is False and result["nDCG@10"] == 1.0  # the figures are still given
        assert "not stored" in caplog.text
        assert idx.info()["evaluations"] == []
        # the lock is free again: it is stored, and a wait for a lock held briefly succeeds
        holder = threading.Thread(target=hold_lock, args=(idx.path, 0.5))
        holder.start()
        time.sleep(0.1)
        idx.record_evaluation({"dataset": "d", "split": "test", "mode": "dense", "metrics": {}}, wait=5)
        holder.join()
        assert [e["dataset"] for e in idx.info()["evaluations"]] == ["d"]
    finally:
        idx.close()


def hold_lock(path: Path, seconds: float) -> None:
    with exclusive_lock(path):
        time.sleep(seconds)


# -- /about and /api/about ---------------------------------------------------------------

@pytest.fixture
def about_client(fake_animals_index):
    return create_app(fake_animals_index).test_client()


def test_api_about_shape(about_client, fake_animals_index):
    body = about_client.get("/api/about").get_json()
    assert set(body) == ABOUT_KEYS
    assert body["model"] == {"name": "fake", "dimension": 64, "pooling": "mean", "precision": "exact",
                             "backend": "fake", "device": "cpu"}
    info = fake_animals_index.info()
    assert body["index"] == {
        "type": info["index_type"], "factory": "IDMap2,Flat", "vector_backend": "faiss", "search_params": {},
        "chunk_tokens": info["chunk_tokens"], "overlap": info["overlap"], "generation": info["generation"],
        "committed_at": info["committed_at"], "created_at": info["created_at"],
    }
    assert body["counts"] == {"documents": 5, "chunks": 5, "vectors": 5}
    assert set(body["disk"]) == {"database", "vectors", "keywords", "other", "total"}
    assert body["disk"]["total"] == sum(v for k, v in body["disk"].items() if k != "total")
    assert body["keywords"] == {"engine": "tantivy", "pending": 0}
    assert body["evaluations"] == []
    assert body["latency"] == {"count": 0, "total": 0, "window": 1000, "p50_ms": None, "p95_ms": None}
    assert "path" not in json.dumps(body)  # no server paths


def test_latencies_of_searches_show_on_about(about_client, fake_animals_index):
    took = [about_client.get("/api/search", query_string={"q": q}).get_json()["took_ms"]
            for q in ("kittens", "engine petrol", "bread", "salt water")]
    about_client.get("/?q=compiler")  # the page's searches count too
    latency = about_client.get("/api/about").get_json()["latency"]
    assert latency["count"] == latency["total"] == 5
    assert 0 <= latency["p50_ms"] <= latency["p95_ms"]
    assert min(took) <= latency["p95_ms"] and latency["p50_ms"] <= max([*took, latency["p95_ms"]])
    about_client.get("/api/search?q=cats&k=0")  # a refused request is no search
    assert about_client.get("/api/about").get_json()["latency"]["count"] == 5
    page = about_client.get("/about").get_data(as_text=True)
    assert "p50" in page and "p95" in page and "the last 5 searches" in page


def test_about_page(about_client):
    r = about_client.get("/about")
    assert r.status_code == 200 and r.mimetype == "text/html"
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    page = r.get_data(as_text=True)
    for text in ("About this index", "Model", "fake", "IDMap2,Flat", "tantivy", "On disk", "content.db",
                 "exhaustive", "Retrieval quality", "No evaluation stored", "No searches yet", "/api/about"):
        assert text in page, text
    assert " style=" not in page and "<style" not in page  # the CSP allows no inline style
    assert page.count("<script") == 1 and '<script src="/static/app.js"' in page  # nor inline script
    home = about_client.get("/").get_data(as_text=True)
    assert 'href="/about">About this index</a>' in home


def test_about_shows_search_parameters(tmp_path, fake_encoder):
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder, index_type="hnsw")
    try:
        idx.add_documents(ANIMALS)
        idx.set_search_params(ef_search=48)
        client = create_app(idx).test_client()
        body = client.get("/api/about").get_json()
        assert body["index"]["type"] == "hnsw" and body["index"]["search_params"] == {"ef_search": 48}
        assert "ef_search=48" in client.get("/about").get_data(as_text=True)
    finally:
        idx.close()


def test_about_answers_503_when_the_index_cannot_be_read(tmp_path, fake_encoder):
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    try:
        idx.add_documents(ANIMALS)
        client = create_app(idx).test_client()
        (idx.path / "content.db").unlink()
        assert client.get("/api/about").status_code == 503
        assert client.get("/about").status_code == 503
    finally:
        idx.close()


def test_about_and_latency_import_nothing_from_app():
    import ast

    for name in ("about", "latency"):
        tree = ast.parse((Path(__file__).parent.parent / "searcher" / "web" / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
        assert "app" not in imported, name
