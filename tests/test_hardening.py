"""Regression tests for the hardening issue: each breaks one promise that held only on paper."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from searcher import Index
from searcher import IndexCorruptError
from searcher import IndexExistsError
from searcher.index.check import check_index
from searcher.cli import main
from searcher.cli.output import printable
from searcher.storage.folder import exclusive_lock, vectors_path

from .conftest import ANIMALS


def folder_state(path: Path) -> dict[str, str]:
    """Name -> SHA-256 of every file in an index folder (SQLite's empty -wal/-shm left out)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.iterdir())
            if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def live_vectors(path: Path) -> Path:
    with sqlite3.connect(f"file:{path / 'content.db'}?mode=ro", uri=True) as conn:
        generation = conn.execute("select value from state where key = 'generation'").fetchone()[0]
    return vectors_path(path, generation)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- 1. repair never breaks a healthy index -----------------------------------------------------

def test_repair_of_a_healthy_index_with_a_leftover_file_keeps_it_working(fake_animals_index):
    animals_index = fake_animals_index  # the CLI's repair only removes a file here: it loads no model
    path = animals_index.path
    live = live_vectors(path)
    generation = int(live.name.split(".")[1])
    leftover = vectors_path(path, generation + 1)  # what a kill between rename and SQLite commit leaves
    shutil.copy(live, leftover)
    before = [h.doc_id for h in animals_index.search("pet kitty", k=3)]
    result = run("check", "--repair", "--index", path, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert not leftover.exists() and live.exists()
    assert check_index(path).ok
    assert [h.doc_id for h in Index.open(path, encoder=animals_index.encoder).search("pet kitty", k=3)] == before


def test_a_commit_never_reuses_the_name_of_a_file_in_the_folder(fake_animals_index):
    animals_index = fake_animals_index
    path = animals_index.path
    generation = int(live_vectors(path).name.split(".")[1])
    leftover = vectors_path(path, generation + 1)
    leftover.write_bytes(b"not a vectors file")
    animals_index.add_documents([{"id": "tea", "text": "Green tea is brewed from leaves."}])
    assert live_vectors(path) != leftover and not leftover.exists()
    reopened = Index.open(path, encoder=animals_index.encoder)
    assert check_index(path).ok and reopened.search("tea leaves", k=1)[0].doc_id == "tea"


# -- 2. one bad name or text never stops a run ---------------------------------------------------

def test_a_file_name_that_is_not_utf8_is_indexed_escaped_and_the_rest_too(tmp_path, fake_index):
    index = fake_index
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"good{i}.txt").write_text(f"Good document number {i} about lighthouses.")
    bad = os.path.join(os.fsencode(folder), b"bad\xffname.txt")
    with open(bad, "wb") as fh:
        fh.write(b"A document about harbours whose name is not UTF-8.")
    report = index.add_paths([folder])
    assert report.added == 4, report.summary()
    escaped = str(folder / "bad\\xffname.txt")
    doc = index.get_document(escaped)
    assert doc is not None and "harbours" in doc["text"]
    assert index.search("harbours", k=1)[0].doc_id == escaped
    assert index.add_paths([folder], prune=True).unchanged == 4  # the same id again, nothing pruned
    assert index.delete(escaped) == 1


def test_add_documents_with_lone_surrogates_keeps_the_good_documents(fake_index):
    index = fake_index
    report = index.add_documents([
        {"id": "ok1", "text": "Plain good text about kittens."},
        {"id": "bad\udcffid", "text": "An id from a file name that was not UTF-8."},
        {"id": "badtext", "text": "Text with a lone surrogate \ud800 inside.", "title": "T\udcff"},
        {"id": "ok2", "text": "More good text about ovens."},
    ])
    assert report.added == 4 and not report.skipped, report.summary()
    assert index.get_document("bad\udcffid")["id"] == "bad\\xffid"  # the same rule on lookup
    assert "\\ud800" in index.get_document("badtext")["text"]
    assert check_index(index.path).ok


# -- 3. damage is detected, and repair converges ------------------------------------------------

def flip(path: Path, offset: int, count: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + count, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_bytes_in_a_vectors_file_are_detected_and_repaired(animals_index):
    path = animals_index.path
    expected = animals_index.search("pet kitty", k=5, mode="dense")
    animals_index.close()
    live = live_vectors(path)
    flip(live, live.stat().st_size // 2, 200)
    report = check_index(path)
    assert any("checksum" in p for p in report.problems), report.summary()
    with pytest.raises(IndexCorruptError, match="checksum"):
        Index.open(path)
    info = run("info", "--index", path)
    assert info.exit_code == 1 and "checksum" in info.output
    repaired = check_index(path, repair=True, device="cpu")
    assert repaired.ok, repaired.summary()
    assert check_index(path).ok
    got = Index.open(path).search("pet kitty", k=5, mode="dense")
    assert [h.doc_id for h in got] == [h.doc_id for h in expected]
    assert np.allclose([h.score for h in got], [h.score for h in expected], atol=1e-4)


def test_a_flipped_vector_id_is_repaired_so_check_and_search_agree(animals_index):
    from searcher.storage.vectors import FaissVectorIndex

    path = animals_index.path
    animals_index.close()
    live = live_vectors(path)
    vectors = FaissVectorIndex.load(live)
    ids = vectors.ids()
    vectors.index.id_map.resize(0)  # rewrite the id map with one id's bytes flipped
    import faiss

    bad = ids.copy()
    bad[2] = ~bad[2]  # every bit of one id: a negative id
    faiss.copy_array_to_vector(bad.astype(np.int64), vectors.index.id_map)
    vectors.index.construct_rev_map()
    vectors.save(live)  # a file with a valid layout but a damaged id (its checksum no longer matches)
    assert not check_index(path).ok
    repaired = check_index(path, repair=True, device="cpu")
    assert repaired.ok, repaired.summary()
    idx = Index.open(path)
    assert len(idx.vectors) == idx.store.count_chunks() == len(ANIMALS)
    assert check_index(path).ok and idx.search("pet kitty", k=1)[0].doc_id == "cat"


def test_repair_of_an_index_without_checksums_also_fixes_invalid_ids(animals_index):
    """An index made before checksums: the ids themselves are checked, and repair converges."""
    import faiss

    from searcher.storage.vectors import FaissVectorIndex

    path = animals_index.path
    animals_index.close()
    with sqlite3.connect(path / "content.db") as conn:
        conn.execute("drop table checksums")
    live = live_vectors(path)
    vectors = FaissVectorIndex.load(live)
    ids = vectors.ids()
    ids[0] = -5
    faiss.copy_array_to_vector(ids, vectors.index.id_map)
    vectors.index.construct_rev_map()
    vectors.save(live)
    report = check_index(path)
    assert not report.ok and any("no checksum recorded" in n for n in report.notes)
    assert check_index(path, repair=True, device="cpu").ok
    report = check_index(path)
    assert report.ok and report.vectors == report.chunks == len(ANIMALS)
    assert Index.open(path).search("pet kitty", k=1)[0].doc_id == "cat"


# -- 4, 5. a damaged content.db: clear errors, nothing written by readers ----------------------

@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_database_gives_clear_errors_and_readers_change_nothing(animals_index, damage):
    path = animals_index.path
    animals_index.close()
    db = path / "content.db"
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3] if damage == "truncated" else b"")
    before = folder_state(path)
    with pytest.raises(IndexCorruptError, match="check"):
        Index.open(path).search("kittens")
    for args in (["search", "kittens"], ["info"], ["check"]):
        result = run(*args, "--index", path)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "content.db" in result.output
    assert folder_state(path) == before  # reading commands changed and created nothing
    repair = run("check", "--repair", "--index", path)
    assert repair.exit_code == 1
    if damage == "empty" or shutil.which("sqlite3") is None:
        assert "searcher index" in repair.output  # says how to get the documents back
        assert (path / "content.db").read_bytes() == (b"" if damage == "empty" else data[: len(data) // 3])


def test_reading_commands_never_write_to_a_healthy_index(animals_index):
    path = animals_index.path
    animals_index.close()
    before = folder_state(path)
    for args in (["search", "kittens"], ["info"], ["check"], ["search", "kittens", "--mode", "dense"]):
        assert run(*args, "--index", path).exit_code == 0
    assert folder_state(path) == before


# -- 6. rows from different files never overwrite each other silently --------------------------

def test_the_same_row_id_in_two_files_is_a_reported_conflict(tmp_path, fake_index):
    index = fake_index
    (tmp_path / "semi.csv").write_text("id;text\n1;first file row about kittens\n2;another row\n")
    (tmp_path / "t.tsv").write_text("id\ttext\n1\tsecond file row about engines\n")
    assert index.add_paths([tmp_path / "semi.csv"]).added == 2
    report = index.add_paths([tmp_path / "t.tsv"])
    assert (report.added, report.updated) == (0, 0)
    [skipped] = report.skipped
    assert f"{tmp_path / 't.tsv'}:2" == skipped.path and str(tmp_path / "semi.csv") in skipped.reason
    assert "kittens" in index.get_document("1")["text"]
    replaced = index.add_paths([tmp_path / "t.tsv"], on_conflict="replace")
    assert replaced.updated == 1 and len(replaced.replaced) == 1 and not replaced.skipped
    assert "engines" in index.get_document("1")["text"]


def test_the_same_row_id_twice_in_one_run_names_both_places(tmp_path, index):
    tmp_path = tmp_path / "rows"
    tmp_path.mkdir()
    (tmp_path / "a.jsonl").write_text('{"id": "1", "text": "alpha about kittens"}\n')
    (tmp_path / "b.jsonl").write_text('{"id": "x", "text": "other"}\n{"id": "1", "text": "beta about engines"}\n')
    report = index.add_paths([tmp_path])
    [skipped] = report.skipped
    assert skipped.path == f"{tmp_path / 'b.jsonl'}:2" and f"{tmp_path / 'a.jsonl'}:1" in skipped.reason
    assert "alpha" in index.get_document("1")["text"]
    result = run("index", tmp_path, "--index", index.path, "--on-conflict", "replace")
    assert result.exit_code == 0, result.output
    assert "beta" in Index.open(index.path).get_document("1")["text"]


# -- 7. a large text is committed as it goes ----------------------------------------------------

def test_a_document_larger_than_a_commit_is_committed_in_parts(fake_index, monkeypatch):
    from searcher.storage.store import ContentStore

    index = fake_index
    words = "river mountain cloud engine kitten market violin harbour forest copper glacier lantern".split()
    text = " ".join(words[i % len(words)] + str(i % 97) for i in range(6000))
    index.commit_chunks = 10
    commits = []
    real = ContentStore.commit
    monkeypatch.setattr(ContentStore, "commit", lambda self, *a, **k: (commits.append(len(a[2])), real(self, *a, **k)))
    report = index.add_documents([{"id": "big", "text": text}])
    chunks = index.store.count_chunks()
    assert report.chunks == chunks > 30 and len(commits) >= 3 and max(commits) <= 10
    doc = index.get_document("big")
    assert not doc["content_hash"].startswith("unfinished:")
    assert index.add_documents([{"id": "big", "text": text}]).unchanged == 1
    assert check_index(index.path).ok


def test_a_run_killed_inside_a_large_document_redoes_it_next_time(fake_index, monkeypatch):
    from searcher.storage.store import ContentStore

    index = fake_index
    text = " ".join(f"word{i}" for i in range(4000))
    index.commit_chunks = 10
    real, calls = ContentStore.commit, []

    def dies_on_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(ContentStore, "commit", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        index.add_documents([{"id": "big", "text": text}])
    monkeypatch.undo()
    assert index.get_document("big")["content_hash"].startswith("unfinished:")
    assert any("committed in part" in n for n in check_index(index.path).notes)
    again = index.add_documents([{"id": "big", "text": text}])
    assert again.updated == 1 and check_index(index.path).ok
    assert index.store.count_chunks() == again.chunks


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, monkeypatch):
    from searcher.cli import output as cli

    clock = iter(range(0, 1000, 3))
    monkeypatch.setattr(cli.time, "monotonic", lambda: next(clock))
    lines = []
    monkeypatch.setattr(cli.click, "echo", lambda msg, err=False: lines.append((msg, err)))
    with cli.progress_bar(every=5) as update:
        for _ in range(6):
            update(100)
    assert lines and all(err for _, err in lines)
    assert lines[-1][0].startswith("encoding: ") and "chunks/s" in lines[-1][0]


# -- 9. a damaged manifest ------------------------------------------------------------------------

@pytest.mark.parametrize("edit, field", [
    (lambda m: [], "not a JSON object"),
    (lambda m: {k: v for k, v in m.items() if k != "dimension"}, "dimension"),
    (lambda m: {**m, "dimension": "abc"}, "dimension"),
    (lambda m: {**m, "dimension": 12}, "dimension"),
    (lambda m: {**m, "chunk_tokens": None}, "chunk_tokens"),
    (lambda m: {**m, "index_type": "magic"}, "index_type"),
])
def test_a_damaged_manifest_is_an_index_corrupt_error_naming_the_field(animals_index, edit, field):
    path = animals_index.path
    animals_index.close()
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.pop("checksum")  # as a manifest written before checksums: the fields themselves are checked
    (path / "manifest.json").write_text(json.dumps(edit(manifest)))
    with pytest.raises(IndexCorruptError, match=field):
        Index.open(path)
    for args in (["search", "kittens"], ["info"], ["check"]):
        result = run(*args, "--index", path)
        assert result.exit_code == 1 and field in result.output and "Traceback" not in result.output


# -- 10, 11, 13. bad arguments -----------------------------------------------------------------

def test_a_query_that_is_not_utf8_on_the_command_line(animals_index):
    result = run("search", "caf\udce9 kittens", "--index", animals_index.path)
    assert result.exit_code == 0 and "Cats" in result.output, result.output


@pytest.mark.parametrize("k", [1.5, "3", None, True])
def test_search_refuses_a_k_that_is_not_an_integer(fake_animals_index, k):
    with pytest.raises(ValueError, match="k must be an integer"):
        fake_animals_index.search("kittens", k=k)


def test_api_arguments_get_clear_errors_and_one_rule_for_ids(fake_animals_index, tmp_path):
    animals_index = fake_animals_index
    with pytest.raises(TypeError, match="must be a string, not int"):
        animals_index.search(123)
    report = animals_index.add_documents([{"id": "m", "text": "some text", "metadata": [1, 2]},
                                          {"id": 42, "text": "The answer about towels."}])
    assert report.added == 1 and "metadata must be" in report.skipped[0].reason
    assert animals_index.get_document(42)["id"] == "42" == animals_index.get_document("42")["id"]
    assert animals_index.delete("cat") == 1 and animals_index.get_document("cat") is None
    assert animals_index.delete(42) == 1
    (tmp_path / "file").write_text("x")
    with pytest.raises(IndexExistsError, match="not a folder"):
        Index.create(tmp_path / "file", model="/nonexistent/model/would/fail/later")


def test_nan_and_infinity_in_metadata_are_stored_as_null(fake_animals_index):
    animals_index = fake_animals_index
    animals_index.add_documents([{"id": "n", "text": "numbers", "score": float("nan"),
                                  "metadata": {"max": float("inf"), "nested": [float("-inf"), 1.5]}}])
    meta = animals_index.get_document("n")["metadata"]
    assert meta == {"max": None, "nested": [None, 1.5], "score": None}


def test_control_characters_from_documents_are_escaped_in_terminal_output(index):
    index.add_documents([{"id": "evil", "title": "Red \x1b[31mALERT\x07", "text": "kittens \x1b]0;pwned\x07 here"}])
    result = run("search", "kittens", "--index", index.path)
    assert result.exit_code == 0 and "\x1b" not in result.output and "\x07" not in result.output
    assert "\\x1b[31mALERT" in result.output
    assert printable("tab\tand\nnewline") == "tab\tand\nnewline"


# -- 16. messages --------------------------------------------------------------------------------

def test_a_fifo_and_a_symlink_loop_passed_directly_say_what_they_are(tmp_path, fake_index):
    index = fake_index
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    broken = tmp_path / "broken"
    broken.symlink_to(tmp_path / "nowhere")
    report = index.add_paths([fifo, loop, broken])
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert "FIFO" in reasons["pipe"] and "symlink loop" in reasons["loop"] and "broken symlink" in reasons["broken"]


def test_a_second_indexer_fails_before_loading_the_model(tmp_path, fake_animals_index, monkeypatch):
    animals_index = fake_animals_index
    from searcher.index import facade as index_module
    from searcher.index import opening as opening_module

    (tmp_path / "x.txt").write_text("text")
    loads = []
    for module in (index_module, opening_module):
        monkeypatch.setattr(module, "get_encoder", lambda *a, **k: loads.append(a) or pytest.fail("model loaded"))
    with exclusive_lock(animals_index.path):
        result = run("index", tmp_path / "x.txt", "--index", animals_index.path)
    assert result.exit_code == 1 and "another process is writing" in result.output and not loads
