"""Incremental updates, crash safety, check/repair, locking, live reload, bad input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher import IndexLockedError
from searcher.index.check import check_index
from searcher.cli import main
from searcher.storage.folder import exclusive_lock as _exclusive_lock, vectors_path
from searcher.storage.store import ContentStore
from searcher.storage.vectors import FaissVectorIndex

from .conftest import ANIMALS

REPO = Path(__file__).resolve().parent.parent


def write_corpus(path: Path, n: int, seed: int = 0, start: int = 0) -> list[str]:
    """Append n generated documents (ids doc{start}..) to a JSON Lines file; return their ids."""
    rng = random.Random(seed * 100_003 + start)
    words = "river mountain cloud engine kitten market violin harbour forest copper glacier lantern".split()
    ids = []
    with path.open("a") as fh:
        for i in range(start, start + n):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120)))
            fh.write(json.dumps({"id": f"doc{i}", "title": f"Doc {i}", "text": text}) + "\n")
            ids.append(f"doc{i}")
    return ids


def write_sql(index_dir: Path, statement: str) -> None:
    """Change an index's database behind its back (to damage it)."""
    import sqlite3

    with sqlite3.connect(index_dir / "content.db") as conn:
        conn.execute(statement)
    conn.close()


def latest_generation(index_dir: Path) -> int:
    """The newest vectors file's generation (0 when there is none yet)."""
    return max((int(p.name.split(".")[1]) for p in index_dir.glob("vectors.*.faiss")), default=0)


def test_unchanged_rerun_encodes_nothing_and_prune_removes_deleted_files(tmp_path, fake_index):
    index = fake_index
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("a", "b", "c"):
        (docs / f"{name}.txt").write_text(f"Document {name} talks about {name}-things.")
    first = index.add_paths([docs])
    assert (first.added, first.chunks) == (3, 3)
    again = index.add_paths([docs])
    assert (again.added, again.updated, again.unchanged, again.chunks, again.tokens) == (0, 0, 3, 0, 0)

    (docs / "b.txt").write_text("Document b changed its mind.")
    (docs / "c.txt").unlink()
    (docs / "d.txt").write_text("A new document d.")
    kept = index.add_paths([docs])
    assert (kept.added, kept.updated, kept.unchanged, kept.removed) == (1, 1, 1, 0)
    assert index.get_document(str(docs / "c.txt")) is not None  # not pruned unless asked
    pruned = index.add_paths([docs], prune=True)
    assert (pruned.removed, pruned.unchanged, pruned.chunks) == (1, 3, 0)
    assert index.get_document(str(docs / "c.txt")) is None
    assert check_index(index.path).ok


def test_prune_keeps_documents_of_files_that_failed_to_read(tmp_path, fake_index):
    index = fake_index
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "rows.jsonl").write_text('{"id": "r1", "text": "one"}\n{"id": "r2", "text": "two"}\n')
    index.add_paths([docs])
    (docs / "rows.jsonl").write_text('{"id": "r1", "text": "one"}\n')  # r2 left the file
    assert index.add_paths([docs], prune=True).removed == 1
    (docs / "rows.jsonl").write_bytes(b"\x00\x01 binary now")  # unreadable: keep r1
    report = index.add_paths([docs], prune=True)
    assert report.removed == 0 and index.get_document("r1") is not None


@pytest.mark.parametrize("fail_at", ["before_sqlite", "after_sqlite"])
def test_failure_inside_a_commit_leaves_a_consistent_index(fake_animals_index, monkeypatch, fail_at):
    animals_index = fake_animals_index
    real_commit = ContentStore.commit

    def failing_commit(*args, **kwargs):
        if fail_at == "after_sqlite":
            real_commit(*args, **kwargs)
        raise OSError("disk on fire")

    monkeypatch.setattr(ContentStore, "commit", failing_commit)
    with pytest.raises(OSError):
        animals_index.add_documents([{"id": "new", "text": "A brand new document about tea."}])
    monkeypatch.undo()
    assert check_index(animals_index.path).problems == []
    expected = len(ANIMALS) + (fail_at == "after_sqlite")
    reopened = Index.open(animals_index.path, encoder=animals_index.encoder)
    assert len(reopened) == expected
    assert len(reopened.vectors) == reopened.store.count_chunks() == expected
    assert reopened.search("tea", k=1)[0].doc_id == ("new" if fail_at == "after_sqlite" else reopened.search("tea", k=1)[0].doc_id)
    animals_index.add_documents([{"id": "later", "text": "Writes go on afterwards."}])
    assert check_index(animals_index.path).ok


def test_a_large_batch_commits_every_commit_chunks(fake_index):
    """A kill loses at most `--commit-every` chunks, even inside one batch of documents."""
    index = fake_index
    index.commit_chunks = 5
    before = index.store.generation
    report = index.add_documents([{"id": f"d{i}", "text": f"Note {i}: green tea is steeped for {i} minutes."}
                                  for i in range(12)])
    assert (report.added, report.chunks) == (12, 12)
    assert index.store.generation - before == 3  # 5 + 5 + 2 chunks
    assert check_index(index.path).ok and len(index) == 12


def test_sigkill_at_random_moments_loses_no_committed_document(tmp_path):
    """Kill `searcher index` with SIGKILL many times; after each kill the index checks clean,
    searches, and still holds every document a previous check saw. Seeded: replay with SEED."""
    seed = int(os.environ.get("SEED", "1234"))
    rng = random.Random(seed)
    corpus = tmp_path / "corpus.jsonl"
    index_dir = tmp_path / "idx"
    cmd = [sys.executable, "-m", "searcher", "index", str(corpus), "--index", str(index_dir),
           "--commit-every", "12", "--device", "cpu", "--batch-size", "8"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    all_ids: list[str] = []
    committed: set[str] = set()
    kills = attempts = 0
    cut_short: list[int] = []  # documents a killed run had not committed yet
    per_run = 120  # new documents (one chunk each) a run; it commits every 12 chunks or a tenth of the index
    # Each run gets fresh documents to encode, so however fast the machine is, a run is
    # still working when the kill lands (a run that finishes first is simply not counted).
    while kills < 6 and attempts < 20:
        attempts += 1
        all_ids += write_corpus(corpus, per_run, seed, start=len(all_ids))
        start_generation = latest_generation(index_dir)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Kill after a random number of this run's commits (model loading takes seconds and
        # varies from machine to machine), a random fraction of a commit cycle later.
        commits = max(1, per_run // max(12, len(committed) // 10))
        target = start_generation + rng.randint(1, max(1, commits - 1))
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and latest_generation(index_dir) < target:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        if not (index_dir / "manifest.json").exists():
            continue  # killed before the index existed: nothing to lose yet
        report = check_index(index_dir)
        assert report.ok, f"seed {seed}, attempt {attempts}: {report.summary()}"
        idx = Index.open(index_dir)
        present = set(idx.store.document_ids())
        assert committed <= present, f"seed {seed}: lost {sorted(committed - present)[:5]}"
        if present:
            assert idx.search("violin harbour", k=3)
        if killed:
            cut_short.append(len(all_ids) - len(present))
        committed = present
        idx.close()
    assert kills >= 6, f"only {kills} of {attempts} runs were still going when killed"
    # A final run completes the job without re-encoding what was committed.
    done = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, check=True)
    summary = json.loads(done.stdout)
    assert summary["unchanged"] == len(committed)
    assert summary["added"] == len(all_ids) - len(committed)
    idx = Index.open(index_dir)
    assert set(idx.store.document_ids()) == set(all_ids)
    assert check_index(index_dir).ok
    print(f"\nSIGKILL test (seed {seed}): {kills} kills in {attempts} runs survived, 0 documents lost, "
          f"{len(committed)} of {len(all_ids)} committed before the final run; "
          f"documents each kill left uncommitted: {cut_short}")
    assert any(cut_short), "every kill came after its run's last commit"


def test_check_finds_and_repair_fixes_damage(animals_index):
    path = animals_index.path
    animals_index.close()
    live = vectors_path(path, Index.open(path).store.generation)
    live.unlink()
    report = check_index(path)
    assert not report.ok and "is missing" in report.problems[0]
    result = CliRunner().invoke(main, ["check", "--index", str(path)])
    assert result.exit_code == 1 and "problem" in result.output

    repaired = check_index(path, repair=True, device="cpu")
    assert repaired.ok and any("re-encoded 5 chunks" in r for r in repaired.repaired)
    idx = Index.open(path)
    assert len(idx) == len(ANIMALS) and idx.search("pet kitty", k=1)[0].doc_id == "cat"

    # An orphan vector (no chunk row) and an orphan chunk (no document).
    vectors = FaissVectorIndex.load(vectors_path(path, idx.store.generation))
    vectors.add([999], vectors.index.reconstruct(int(vectors.ids()[0])).reshape(1, -1))
    vectors.save(vectors_path(path, idx.store.generation))
    write_sql(path, "insert into chunks (id, doc_id, position, start, [end], text) values (500, 'ghost', 0, 0, 1, 'x')")
    report = check_index(path)
    assert len(report.problems) >= 2
    result = CliRunner().invoke(main, ["check", "--index", str(path), "--repair", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert check_index(path).ok and len(Index.open(path)) == len(ANIMALS)


def test_second_indexer_fails_at_once_with_a_clear_message(tmp_path, fake_animals_index):
    animals_index = fake_animals_index  # the CLI refuses before it opens the index (no model loaded)
    (tmp_path / "x.txt").write_text("text")
    with _exclusive_lock(animals_index.path):
        result = CliRunner().invoke(main, ["index", str(tmp_path / "x.txt"), "--index", str(animals_index.path)])
    assert result.exit_code == 1 and "another process is writing" in result.output
    with _exclusive_lock(animals_index.path), pytest.raises(IndexLockedError):
        animals_index.delete(["cat"])
    assert check_index(animals_index.path).ok and len(animals_index) == len(ANIMALS)


def test_reader_picks_up_a_finished_commit_without_reopening(fake_animals_index):
    animals_index = fake_animals_index
    reader = Index.open(animals_index.path, encoder=animals_index.encoder)
    assert "tea" not in [h.doc_id for h in reader.search("green tea leaves", k=10)]
    animals_index.add_documents([{"id": "tea", "text": "Green tea is brewed from the leaves of Camellia sinensis."}])
    assert reader.search("green tea leaves", k=1)[0].doc_id == "tea"
    animals_index.delete(["tea"])
    assert "tea" not in [h.doc_id for h in reader.search("green tea leaves", k=10)]


def test_open_refuses_vectors_that_disagree_with_the_database(animals_index):
    from searcher import IndexCorruptError

    path, generation = animals_index.path, animals_index.store.generation
    vectors = FaissVectorIndex.load(vectors_path(path, generation))
    vectors.remove([int(vectors.ids()[0])])
    vectors.save(vectors_path(path, generation))  # as if an older vectors file were put back
    with pytest.raises(IndexCorruptError, match="check --repair"):
        Index.open(path)
    assert check_index(path, repair=True, device="cpu").ok
    assert len(Index.open(path).vectors) == len(ANIMALS)


def test_check_finds_and_repair_rebuilds_a_damaged_keyword_table(tmp_path, fake_encoder):
    from searcher.storage.keywords.fts5 import FTS_TABLE

    animals_index = Index.create(tmp_path / "fts5", encoder=fake_encoder, keyword_engine="fts5")
    animals_index.add_documents(ANIMALS)  # the vectors are sound: repair re-encodes nothing
    write_sql(animals_index.path, f"delete from [{FTS_TABLE}] where rowid = (select min(id) from chunks)")
    report = check_index(animals_index.path)
    assert any("keyword index (fts5) disagrees" in p for p in report.problems)
    repaired = check_index(animals_index.path, repair=True, device="cpu")
    assert repaired.ok and any("keyword index" in r for r in repaired.repaired)
    assert animals_index.search("kittens", k=1, mode="keyword")[0].doc_id == "cat"


def test_a_row_moving_down_its_file_is_not_re_encoded(tmp_path, fake_index):
    index = fake_index
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "r1", "text": "one"}\n{"id": "r2", "text": "two"}\n')
    assert index.add_paths([rows]).added == 2
    rows.write_text('{"id": "r0", "text": "zero"}\n{"id": "r1", "text": "one"}\n{"id": "r2", "text": "two"}\n')
    report = index.add_paths([rows])
    assert (report.added, report.updated, report.unchanged, report.chunks) == (1, 0, 2, 1)
