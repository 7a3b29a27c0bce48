"""The keyword engine contract (every engine in searcher/storage/keywords/factory.ENGINES, on a real
SQLite store), tantivy's crash safety, and the highlighter using the engine's analysis."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searcher import Index
from searcher.index.check import check_index
from searcher.storage.keywords import ENGINES, KeywordEngine, check_keyword_engine, open_keywords
from searcher.storage.store import ContentStore
from searcher.web.highlight import mark_terms, query_terms, snippet

DOCS = [
    ("cat", "Cats", ["Small felines such as kittens chase mice.", "A cat was running across the garden."]),
    ("car", "Engines", ["An automobile engine burns petrol so that the wheels turn."]),
    ("bread", "Baking", ["Dough of flour, water and yeast rises before it is baked."]),
    ("order", "Shipping note", ["Order XQ-7781 shipped on Monday in one parcel."]),
]


def commit(store, engine, docs, delete=(), generation=None):
    """Commit documents through the store, the engine recording its changes (as Index does)."""
    next_id = store.state("next_chunk_id")
    rows, chunks = [], []
    for doc_id, title, texts in docs:
        rows.append({"id": doc_id, "title": title, "text": " ".join(texts), "content_hash": doc_id})
        for position, text in enumerate(texts):
            chunks.append({"id": next_id, "doc_id": doc_id, "position": position, "start": 0,
                           "end": len(text), "text": text})
            next_id += 1
    store.commit(generation or store.generation + 1, rows, chunks, list(delete), next_id, None, engine.record)
    engine.catch_up(store)


def owners(store, rows):
    found = store.chunk_doc_ids([cid for cid, _ in rows])
    return [found.get(cid) for cid, _ in rows]


@pytest.fixture(params=sorted(ENGINES))
def engine_store(request, tmp_path):
    store = ContentStore(tmp_path / "content.db", create=True)
    engine = open_keywords(tmp_path, {"keyword_engine": request.param})
    engine.prepare(store)
    commit(store, engine, DOCS)
    yield engine, store
    engine.close()
    store.close()


def test_the_factory_knows_every_engine():
    assert set(ENGINES) == {"fts5", "tantivy"} and all(issubclass(e, KeywordEngine) for e in ENGINES.values())
    assert check_keyword_engine(None) == "tantivy"  # new indexes: the faster engine (benchmarks/README.md)
    assert open_keywords(Path("x"), {}).name == "fts5"  # indexes made before the choice existed
    with pytest.raises(ValueError, match="unknown keyword engine 'lucene'"):
        check_keyword_engine("lucene")


def test_search_finds_words_through_stems_best_first(engine_store):
    engine, store = engine_store
    rows = engine.search(store, "runs", 10)  # "running" in the text: both engines stem it to "run"
    assert owners(store, rows) == ["cat"]
    rows = engine.search(store, "kittens running", 10)
    assert set(owners(store, rows)) == {"cat"} and len(rows) == 2
    scores = [s for _, s in rows]
    assert all(s > 0 for s in scores) and scores == sorted(scores, reverse=True)
    assert owners(store, engine.search(store, "xq 7781", 10)) == ["order"]
    assert owners(store, engine.search(store, "BAKING", 10)) == ["bread"]  # titles count, case folded
    assert len(engine.search(store, "the a engine wheels cat dough order", 2)) == 2  # limit


def test_ids_follow_adds_replacements_and_deletes(engine_store):
    engine, store = engine_store
    assert engine.ids(store) == store.all_chunk_ids()
    commit(store, engine, [("order", "Shipping note", ["Order ZZ-1234 was cancelled."])], delete=["order"])
    assert engine.ids(store) == store.all_chunk_ids()
    assert engine.search(store, "XQ-7781", 10) == []
    assert owners(store, engine.search(store, "ZZ-1234", 10)) == ["order"]
    commit(store, engine, [], delete=["cat", "bread"])
    assert engine.ids(store) == store.all_chunk_ids()
    assert engine.search(store, "kittens dough", 10) == []


def test_rebuild_refills_the_engine_from_the_store(engine_store):
    engine, store = engine_store
    engine.remove(store, store.all_chunk_ids()[:2])
    assert engine.ids(store) != store.all_chunk_ids()
    engine.rebuild(store)
    assert engine.ids(store) == store.all_chunk_ids()
    assert owners(store, engine.search(store, "kittens", 10)) == ["cat"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_any_text_is_a_query_never_an_error(engine_store, text):
    engine, store = engine_store
    rows = engine.search(store, text, 10)
    assert set(owners(store, rows)) <= {d[0] for d in DOCS}


def test_the_analyzer_gives_the_terms_the_engine_matches(engine_store):
    engine, store = engine_store
    analyzer = engine.analyzer
    terms = analyzer.query_terms("The cats were RUNNING")
    assert analyzer.term("running") in terms and analyzer.term("cat") in terms
    assert analyzer.term("the") not in terms  # a stop word: not searched
    assert analyzer.matches("Runs", terms) and not analyzer.matches("the", terms)
    assert analyzer.query_terms("the of") == [analyzer.term("the"), analyzer.term("of")]  # only stop words: kept


# -- through Index ------------------------------------------------------------------------------

ANIMALS = [{"id": d, "title": t, "text": " ".join(x)} for d, t, x in DOCS]


@pytest.mark.parametrize("engine", sorted(ENGINES))
def test_index_keeps_its_engine_and_searches_every_mode(tmp_path, encoder, engine):
    path = tmp_path / "idx"
    with Index.create(path, device="cpu", keyword_engine=engine) as index:
        index.add_documents(ANIMALS)
        assert index.info()["keyword_engine"] == engine
    assert json.loads((path / "manifest.json").read_text())["keyword_engine"] == engine
    with Index.open(path, load_model=False) as index:  # no model: keyword search still works
        assert index.keywords.name == engine
        assert [h.doc_id for h in index.search("parcel XQ-7781", k=1, mode="keyword")] == ["order"]
        assert index.delete("order") == 1
    with Index.open(path, device="cpu") as index:
        for mode in ("dense", "keyword", "hybrid"):
            assert index.search("kittens", k=1, mode=mode)[0].doc_id == "cat"
        assert index.search("XQ-7781", mode="keyword") == []
    assert check_index(path).ok


def test_highlighting_marks_a_word_bm25_matched_through_stemming(tmp_path, encoder):
    for engine in sorted(ENGINES):
        with Index.create(tmp_path / engine, device="cpu", keyword_engine=engine) as index:
            index.add_documents(ANIMALS)
            hit = index.search("runs", k=1, mode="keyword")[0]  # the text says "running"
            out = str(snippet(hit.passage, "runs", index.keywords.analyzer))
            assert '<mark class="term">running</mark>' in out, (engine, out)
            terms = query_terms("runs", index.keywords.analyzer)
            assert '<mark class="term">Runs</mark>' in str(mark_terms("Runs home", terms, index.keywords.analyzer))


# -- tantivy: SQLite first, tantivy after, replayed after a crash ---------------------------------

KILL_BETWEEN_COMMITS = textwrap.dedent("""
    import os, signal, sys
    from searcher import Index
    from searcher.storage.keywords.tantivy_engine import TantivyEngine

    def killed(self, store):  # the SQLite commit is done; tantivy's would come now
        if self.pending(store):
            os.kill(os.getpid(), signal.SIGKILL)
        return 0

    index = Index.open(sys.argv[1], device="cpu")
    TantivyEngine.catch_up = killed
    index.add_documents([{"id": "late", "title": "Late arrival", "text": "Zebras graze on the savanna at dusk."}])
    index.delete("car")
""")


def test_a_kill_between_the_sqlite_and_the_tantivy_commit_loses_nothing(tmp_path, encoder):
    path = tmp_path / "idx"
    with Index.create(path, device="cpu", keyword_engine="tantivy") as index:
        index.add_documents(ANIMALS)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    run = subprocess.run([sys.executable, "-c", KILL_BETWEEN_COMMITS, str(path)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr
    report = check_index(path)  # the journal is waiting: a note, not a problem
    assert report.ok and any("not yet applied to tantivy" in n for n in report.notes), report.summary()
    with Index.open(path, device="cpu") as index:  # opening replays the journal
        assert index.keywords.pending(index.store) == 0
        assert {"cat", "car", "bread", "order", "late"} == set(index.store.document_ids())  # committed: kept
        assert index.keywords.ids(index.store) == index.store.all_chunk_ids()
        queries = ["zebras savanna", "kittens running", "parcel", "automobile petrol", "dough yeast"]
        replayed = {q: [(h.doc_id, round(h.score, 4)) for h in index.search(q, mode="keyword")] for q in queries}
    assert replayed["zebras savanna"][0][0] == "late"
    assert check_index(path).ok and not check_index(path).notes
    fresh = tmp_path / "fresh"  # the same index with its tantivy side rebuilt from SQLite
    shutil.copytree(path, fresh)
    shutil.rmtree(fresh / "keywords.tantivy")
    assert check_index(fresh, repair=True).ok
    with Index.open(fresh, device="cpu") as index:
        rebuilt = {q: [(h.doc_id, round(h.score, 4)) for h in index.search(q, mode="keyword")] for q in queries}
    assert replayed == rebuilt


def test_keyword_hits_of_a_lagging_engine_are_only_live_chunks(tmp_path, encoder, monkeypatch):
    from searcher.storage.keywords.tantivy_engine import TantivyEngine

    path = tmp_path / "idx"
    index = Index.create(path, device="cpu", keyword_engine="tantivy")
    index.add_documents(ANIMALS)
    monkeypatch.setattr(TantivyEngine, "catch_up", lambda self, store: 0)  # tantivy never hears of it
    index.delete("order")
    assert index.keywords.pending(index.store) > 0
    assert index.search("parcel XQ-7781", mode="keyword") == []  # tantivy still has it; it is not live
    index.close()
    monkeypatch.undo()
    with Index.open(path, device="cpu") as index:
        assert index.keywords.pending(index.store) == 0 and index.keywords.ids(index.store) == index.store.all_chunk_ids()


# -- writes do not stall searches ---------------------------------------------------------------

class SlowEncoder:
    """The real encoder, whose encoding for the write waits until the test lets it go (queries
    and documents both go through `encode_ids`: searcher/encoding/queries.py). Once `holding`,
    every thread but the searches' (`free`) waits: the writer encodes in a thread of its own
    (searcher/index/writer.py), not in the thread that called add_documents."""

    def __init__(self, encoder):
        self._encoder = encoder
        self.entered, self.release = threading.Event(), threading.Event()
        self.holding = False
        self.free: set[threading.Thread] = set()  # the searches' threads: never held

    def __getattr__(self, name):
        return getattr(self._encoder, name)

    def encode_ids(self, *args, **kwargs):
        if self.holding and threading.current_thread() not in self.free:
            self.entered.set()
            assert self.release.wait(60)
        return self._encoder.encode_ids(*args, **kwargs)


def test_a_search_answers_while_another_thread_of_the_same_index_encodes(tmp_path, encoder):
    slow = SlowEncoder(encoder)
    index = Index.create(tmp_path / "idx", encoder=slow)
    index.add_documents(ANIMALS)
    writer = threading.Thread(target=index.add_documents,
                              args=([{"id": "late", "text": "Zebras graze on the savanna at dusk."}],))
    slow.holding = True
    writer.start()
    try:
        assert slow.entered.wait(30)  # the writer holds its locks and is encoding
        answers = {}
        for mode in ("dense", "keyword", "hybrid"):
            searcher = threading.Thread(target=lambda m=mode: answers.setdefault(m, index.search("kittens", k=1, mode=m)))
            slow.free.add(searcher)
            searcher.start()
            searcher.join(20)  # bounded: far below the encoding, which waits for the release
            assert not searcher.is_alive(), f"a {mode} search waited for the write"
        assert all(hits[0].doc_id == "cat" for hits in answers.values())
        assert writer.is_alive()
    finally:
        slow.release.set()
        writer.join(60)
    assert index.search("zebras", k=1, mode="keyword")[0].doc_id == "late"
    index.close()


def test_a_damaged_tantivy_index_is_reported_and_rebuilt_by_repair(tmp_path, fake_encoder):
    from searcher.errors import IndexCorruptError

    path = tmp_path / "idx"
    with Index.create(path, encoder=fake_encoder, keyword_engine="tantivy") as index:
        index.add_documents(ANIMALS)
    (path / "keywords.tantivy" / "meta.json").write_text("{not json")
    with Index.open(path, encoder=fake_encoder) as index:
        with pytest.raises(IndexCorruptError, match="check --repair"):
            index.search("kittens", mode="keyword")
        assert index.search("kittens", mode="dense")  # the vectors are fine
    report = check_index(path)
    assert not report.ok and any("tantivy keyword index" in p for p in report.problems)
    assert check_index(path, repair=True).ok
    with Index.open(path, encoder=fake_encoder) as index:
        assert [h.doc_id for h in index.search("kittens", k=1, mode="keyword")] == ["cat"]


def test_a_missing_tantivy_index_is_a_problem_and_a_failed_rebuild_resumes(tmp_path, fake_encoder, monkeypatch):
    from searcher.storage.keywords.tantivy_engine import TantivyEngine

    path = tmp_path / "idx"
    with Index.create(path, encoder=fake_encoder, keyword_engine="tantivy") as index:
        index.add_documents(ANIMALS)
    shutil.rmtree(path / "keywords.tantivy")  # restored from a backup without it, say
    report = check_index(path)
    assert not report.ok and any("keywords.tantivy is missing" in p for p in report.problems)

    real_write = TantivyEngine._write

    def dies(self, store, chunk_ids, add=True, clear=False):  # as a kill inside the rebuild would
        raise KeyboardInterrupt

    monkeypatch.setattr(TantivyEngine, "_write", dies)
    index = Index.open(path, encoder=fake_encoder)
    with pytest.raises(KeyboardInterrupt):
        index.add_documents([{"id": "late", "text": "Zebras graze on the savanna at dusk."}])  # rebuilds first
    index.close()
    monkeypatch.setattr(TantivyEngine, "_write", real_write)
    with Index.open(path, encoder=fake_encoder) as index:  # the rebuild was journalled: it resumes
        assert index.keywords.pending(index.store) == 0
        assert index.keywords.ids(index.store) == index.store.all_chunk_ids() and len(index.store.all_chunk_ids())
        assert [h.doc_id for h in index.search("parcel", k=1, mode="keyword")] == ["order"]
    assert check_index(path).ok
