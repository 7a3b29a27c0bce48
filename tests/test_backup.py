"""Online backup and restore (searcher/index/backup.py, searcher/cluster/backup.py): one committed
generation copied while a writer commits, a killed backup that leaves nothing under its name,
restores that refuse what they must, sharded indexes, damaged backups. On the fake encoder:
what is tested is which rows and vectors are copied, not what they mean."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from searcher import Index
from searcher.cluster.backup import backup, restore
from searcher.cluster.sharded import ShardedIndex
from searcher.cluster.shards import check_sharded, split_index
from searcher.errors import BackupError, IndexExistsError, IndexLockedError, SearcherError
from searcher.index.backup import BACKUP_FILE, backup_index, read_backup, restore_index
from searcher.index.check import check_index
from searcher.storage.folder import exclusive_lock, vectors_path

from .conftest import ANIMALS

ROOT = Path(__file__).resolve().parent.parent
WORDS = ("river stone forest engine kitten bread ocean compiler garden winter music paper lamp cloud iron "
         "apple window harbour signal copper meadow thunder lantern velvet").split()
QUERIES = ("kitten bread", "engine river", "ocean compiler garden", "winter lamp", "copper signal meadow")
WAIT = 120  # seconds: a bound on every wait, never a timing assertion


def written(i: int) -> dict:
    """The i-th document the writer adds (the same in every process)."""
    rng = random.Random(i)
    return {"id": f"w{i:04d}", "title": f"Note {i}",
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(10, 40)))}


def hits(index, query: str, mode: str) -> list[tuple[float, str]]:
    """Every hit, best first; equal scores by id (an engine breaks ties by where it stored the
    chunk, which a rebuilt keyword index changes)."""
    return sorted((-round(h.score, 4), h.doc_id) for h in index.search(query, k=1000, mode=mode))


def same_hits(a, b, modes=("dense", "keyword", "hybrid")) -> None:
    for query in QUERIES:
        for mode in modes:
            assert hits(a, query, mode) == hits(b, query, mode), (query, mode)


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def source(tmp_path, fake_encoder):
    idx = Index.create(tmp_path / "src", encoder=fake_encoder)
    idx.add_documents(ANIMALS + [written(i) for i in range(10)])
    yield idx
    idx.close()


def test_a_backup_while_a_writer_commits_is_one_committed_generation(tmp_path, fake_encoder):
    """A writer thread commits one document at a time throughout. The backup holds the generation
    it pinned even though the writer commits after it and removes that generation's vectors file
    (the hook waits for that before content.db is copied); the restored index checks clean and
    answers exactly as an index built from the same documents."""
    src = Index.create(tmp_path / "src", encoder=fake_encoder)
    src.add_documents(ANIMALS)
    stop, added, errors = threading.Event(), [], []

    def writer():
        try:
            i = 0
            while not stop.is_set():
                src.add_documents([written(i)])
                added.append(i)
                i += 1
        except BaseException as e:  # reported by the test
            errors.append(e)

    def hook(message: str) -> None:
        if message.startswith("copying vectors."):  # pinned: wait until a commit has removed this file
            pinned = tmp_path / "src" / message.split()[1]
            wait_for(lambda: not pinned.exists() or errors, "the writer to commit past the pinned generation")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_for(lambda: len(added) >= 3 or errors, "the writer's first commits")
        report = backup_index(tmp_path / "src", tmp_path / "bk", progress=hook)
        wait_for(lambda: src.live.generation > report.generation + 1 or errors, "commits after the backup")
    finally:
        stop.set()
        thread.join(WAIT)
    assert not errors and not thread.is_alive()
    assert not vectors_path(tmp_path / "src", report.generation).exists()  # the writer removed it meanwhile
    assert len(ANIMALS) + 3 <= report.documents < len(src)
    info = read_backup(tmp_path / "bk")
    assert (info["generation"], info["documents"]) == (report.generation, report.documents)

    restored = restore_index(tmp_path / "bk", tmp_path / "restored")
    assert restored.generation == report.generation and restored.documents == report.documents
    assert check_index(tmp_path / "restored").ok
    copy = Index.open(tmp_path / "restored", encoder=fake_encoder)
    n = report.documents - len(ANIMALS)  # one document a commit: the generation holds the first n
    assert sorted(copy.store.document_ids()) == sorted([d["id"] for d in ANIMALS] + [written(i)["id"] for i in range(n)])
    reference = Index.create(tmp_path / "reference", encoder=fake_encoder)
    reference.add_documents(ANIMALS)
    for i in range(n):
        reference.add_documents([written(i)])
    same_hits(copy, reference)
    for idx in (copy, reference, src):
        idx.close()


@pytest.mark.parametrize("engine", ["fts5", "tantivy"])
def test_a_restored_index_answers_as_its_source(tmp_path, fake_encoder, engine):
    """The restored index answers as an index built afresh from the generation's documents, and
    as its source where the source's scores do not depend on its history: always for dense and
    FTS5; tantivy's idf counts deleted chunks until a merge drops them, and a restore (like
    `check --repair`) rebuilds it without them."""
    documents = ANIMALS + [written(i) for i in range(20)]
    src = Index.create(tmp_path / "src", encoder=fake_encoder, keyword_engine=engine)
    src.add_documents(documents)
    src.delete(["w0003", "cat"])  # a generation with removals
    report = backup(tmp_path / "src", tmp_path / "bk")
    assert sorted(p.name for p in (tmp_path / "bk").iterdir()) == sorted(
        [BACKUP_FILE, "content.db", "manifest.json", f"vectors.{report.generation}.faiss"])
    assert not list((tmp_path / "bk").glob("content.db-*"))  # one self-contained file
    restored = restore(tmp_path / "bk", tmp_path / "restored")
    assert restored.documents == len(src) == report.documents and not restored.replaced
    assert check_index(tmp_path / "restored").ok
    reference = Index.create(tmp_path / "reference", encoder=fake_encoder, keyword_engine=engine)
    reference.add_documents([d for d in documents if d["id"] not in ("w0003", "cat")])
    with Index.open(tmp_path / "restored", encoder=fake_encoder) as copy:
        same_hits(copy, reference)
        same_hits(copy, src, ("dense", "keyword", "hybrid") if engine == "fts5" else ("dense",))
        assert copy.get_document("w0001") == src.get_document("w0001")
        copy.add_documents([written(99)])  # a restored index takes writes
        assert len(copy) == len(src) + 1
    reference.close()
    src.close()


BACKUP_SCRIPT = """
import sys, time
from searcher.index.backup import backup_index

def hook(message):
    if message.startswith("copying content.db"):  # the vectors file is written: the backup has begun
        open(sys.argv[3], "w").close()
        time.sleep(600)

backup_index(sys.argv[1], sys.argv[2], progress=hook)
"""


def test_a_killed_backup_leaves_nothing_under_its_name(tmp_path, source):
    marker, dest = tmp_path / "started", tmp_path / "backups" / "monday"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", BACKUP_SCRIPT, str(source.path), str(dest), str(marker)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: marker.exists() or proc.poll() is not None, "the backup to start writing")
        assert proc.poll() is None, proc.stdout.read().decode()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(WAIT)
    assert not dest.exists()
    leftovers = list(dest.parent.glob(".monday.backup-tmp-*"))
    assert len(leftovers) == 1 and list(leftovers[0].glob("vectors.*.faiss"))  # it had begun writing
    with pytest.raises(BackupError, match="unfinished backup"):
        restore(leftovers[0], tmp_path / "restored")
    with pytest.raises(BackupError, match="not a complete backup"):  # under any other name too
        restore(leftovers[0].rename(tmp_path / "renamed"), tmp_path / "restored")
    (tmp_path / "renamed").rename(leftovers[0])

    report = backup(source.path, dest)  # the next backup succeeds and removes the leftover
    assert dest.is_dir() and not list(dest.parent.glob(".*-tmp-*"))
    restore(dest, tmp_path / "restored")
    assert check_index(tmp_path / "restored").ok and report.documents == len(source)


def test_a_restore_refuses_an_existing_index_unless_forced(tmp_path, source, fake_encoder):
    backup(source.path, tmp_path / "bk")
    other = Index.create(tmp_path / "other", encoder=fake_encoder)
    other.add_documents([written(500)])
    other.close()
    with pytest.raises(IndexExistsError, match="already exists.*--force"):
        restore(tmp_path / "bk", tmp_path / "other")
    with Index.open(tmp_path / "other", encoder=fake_encoder) as idx:
        assert idx.store.document_ids() == ["w0500"]  # untouched
    with exclusive_lock(tmp_path / "other"), pytest.raises(IndexLockedError):  # a writer at work there
        restore(tmp_path / "bk", tmp_path / "other", force=True)
    report = restore(tmp_path / "bk", tmp_path / "other", force=True)
    assert report.replaced and check_index(tmp_path / "other").ok
    with Index.open(tmp_path / "other", encoder=fake_encoder) as idx:
        same_hits(idx, source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bk", "other", "src"]  # nothing left beside it

    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "notes.txt").write_text("not an index")
    with pytest.raises(IndexExistsError, match="not an index"):
        restore(tmp_path / "bk", tmp_path / "papers", force=True)
    with pytest.raises(ValueError, match="outside the backup"):
        restore(tmp_path / "bk", tmp_path / "bk" / "inner")
    (tmp_path / "empty").mkdir()
    restore(tmp_path / "bk", tmp_path / "empty")  # an empty folder is a new one
    assert check_index(tmp_path / "empty").ok


def test_a_backup_never_writes_over_anything(tmp_path, source):
    (tmp_path / "taken").mkdir()
    with pytest.raises(IndexExistsError, match="new name"):
        backup(source.path, tmp_path / "taken")
    with pytest.raises(ValueError, match="outside the index"):
        backup(source.path, source.path / "bk")
    with pytest.raises(SearcherError, match="no index"):
        backup(tmp_path / "taken", tmp_path / "bk")


def test_a_sharded_index_backs_up_and_restores_with_every_shard(tmp_path, source, fake_encoder):
    split_index(source.path, tmp_path / "sharded", 3)
    with ShardedIndex.open(tmp_path / "sharded", encoder=fake_encoder) as sharded:
        sharded.add_documents([written(i) for i in range(100, 110)])  # shards at different generations
        report = backup(tmp_path / "sharded", tmp_path / "bk")
        assert report.sharded and [s["name"] for s in report.shards] == ["shard-0", "shard-1", "shard-2"]
        assert [s["generation"] for s in report.shards] == sharded.generations
        assert report.documents == len(sharded) == len(source) + 10
        with pytest.raises(SearcherError, match="sharded index"):
            backup_index(tmp_path / "sharded", tmp_path / "bk2")
        with pytest.raises(BackupError, match="sharded index"):
            restore_index(tmp_path / "bk", tmp_path / "one")

        restored = restore(tmp_path / "bk", tmp_path / "restored")
        assert restored.sharded and restored.documents == report.documents
        assert check_sharded(tmp_path / "restored").ok
        with ShardedIndex.open(tmp_path / "restored", encoder=fake_encoder) as copy:
            assert copy.generations == sharded.generations and len(copy) == len(sharded)
            same_hits(copy, sharded)
        with pytest.raises(IndexExistsError):
            restore(tmp_path / "bk", tmp_path / "sharded")
        with pytest.raises(IndexLockedError):  # a writer holds a shard's lock
            with exclusive_lock(tmp_path / "sharded" / "shard-1"):
                restore(tmp_path / "bk", tmp_path / "sharded", force=True)
    restore(tmp_path / "bk", tmp_path / "sharded", force=True)
    assert check_sharded(tmp_path / "sharded").ok


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def _edit_backup_file(path: Path) -> None:
    info = json.loads(path.read_text())
    info["generation"] += 1
    path.write_text(json.dumps(info))


DAMAGE = {
    "no backup.json": (lambda bk: (bk / BACKUP_FILE).unlink(), "not a complete backup"),
    "no content.db": (lambda bk: (bk / "content.db").unlink(), "its content.db is missing"),
    "flipped vectors": (lambda bk: _flip(next(bk.glob("vectors.*.faiss"))), "vectors.*does not match the checksum"),
    "flipped content.db": (lambda bk: _flip(bk / "content.db"), "content.db does not match the checksum"),
    "edited backup.json": (lambda bk: _edit_backup_file(bk / BACKUP_FILE), "backup.json does not match its checksum"),
    "not JSON": (lambda bk: (bk / BACKUP_FILE).write_text("{"), "cannot be read"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_backup_is_refused_with_the_reason(tmp_path, source, damage):
    backup(source.path, tmp_path / "bk")
    harm, reason = DAMAGE[damage]
    harm(tmp_path / "bk")
    with pytest.raises(BackupError, match=reason):
        restore(tmp_path / "bk", tmp_path / "restored")
    assert not (tmp_path / "restored").exists() and not list(tmp_path.glob(".*-tmp-*"))


def test_a_sharded_backup_missing_a_shard_is_refused(tmp_path, source):
    split_index(source.path, tmp_path / "sharded", 2)
    backup(tmp_path / "sharded", tmp_path / "bk")
    shutil.rmtree(tmp_path / "bk" / "shard-1")
    with pytest.raises(BackupError, match="shard-1 is not a backup"):
        restore(tmp_path / "bk", tmp_path / "restored")
    assert not (tmp_path / "restored").exists() and not list(tmp_path.glob(".*-tmp-*"))


def test_a_forced_restore_without_a_one_step_swap_renames_twice(tmp_path, source, fake_encoder, monkeypatch):
    """Where renameat2 cannot swap the folders, the old index is renamed aside, then the new one in."""
    import searcher.storage.files as files

    monkeypatch.setattr(files, "exchange", lambda a, b: False)
    backup(source.path, tmp_path / "bk")
    other = Index.create(tmp_path / "other", encoder=fake_encoder)
    other.close()
    assert restore(tmp_path / "bk", tmp_path / "other", force=True).replaced
    assert check_index(tmp_path / "other").ok and sorted(p.name for p in tmp_path.iterdir()) == ["bk", "other", "src"]
    with Index.open(tmp_path / "other", encoder=fake_encoder) as idx:
        assert len(idx) == len(source)


# -- the command line and the API ------------------------------------------------------------

def test_the_commands_back_up_and_restore_and_refuse_to_overwrite(tmp_path, fake_encoder):
    from click.testing import CliRunner

    from searcher.cli import main

    source = tmp_path / "notes"
    with Index.create(source, encoder=fake_encoder) as idx:
        idx.add_documents([{"id": f"d{i}", "text": f"note number {i} about herons"} for i in range(5)])
    runner = CliRunner()
    made = runner.invoke(main, ["backup", "--index", str(source), "--to", str(tmp_path / "b1"), "--json"])
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["documents"] == 5
    again = runner.invoke(main, ["backup", "--index", str(source), "--to", str(tmp_path / "b1")])
    assert again.exit_code == 1 and "b1" in again.output  # an existing backup is never written over
    back = runner.invoke(main, ["restore", str(tmp_path / "b1"), "--index", str(tmp_path / "copy")])
    assert back.exit_code == 0, back.output
    refused = runner.invoke(main, ["restore", str(tmp_path / "b1"), "--index", str(tmp_path / "copy")])
    assert refused.exit_code == 1 and "--force" in refused.output
    forced = runner.invoke(main, ["restore", str(tmp_path / "b1"), "--index", str(tmp_path / "copy"), "--force"])
    assert forced.exit_code == 0, forced.output
    assert check_index(tmp_path / "copy").ok
    with Index.open(tmp_path / "copy", encoder=fake_encoder) as copy:
        assert len(copy) == 5


def test_post_api_backup_is_for_admins_into_the_servers_backup_folder(tmp_path, fake_encoder):
    from searcher.web import create_app
    from searcher.web.keys import ApiKey, KeyRing, digest

    admin, reader = "srch_admin1_" + "a" * 43, "srch_reader1_" + "r" * 43
    keys = KeyRing([ApiKey("admin1", digest(admin), "admin"), ApiKey("reader1", digest(reader), "read")])
    idx = Index.create(tmp_path / "notes", encoder=fake_encoder)
    idx.add_documents([{"id": f"d{i}", "text": f"note number {i} about herons"} for i in range(3)])
    with idx:
        plain = create_app(idx, keys=keys).test_client()
        r = plain.post("/api/backup", headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 409 and "--backup-dir" in r.get_json()["message"]
        client = create_app(idx, keys=keys, backup_dir=tmp_path / "backups").test_client()
        assert client.post("/api/backup", headers={"Authorization": f"Bearer {reader}"}).status_code == 403
        r = client.post("/api/backup", json={"name": "nightly"}, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 201, r.get_json()
        body = r.get_json()
        assert body["name"] == "nightly" and body["documents"] == 3 and str(tmp_path) not in json.dumps(body)
        assert read_backup(tmp_path / "backups" / "nightly")["documents"] == 3
        r = client.post("/api/backup", json={"name": "nightly"}, headers={"Authorization": f"Bearer {admin}"})
        assert r.status_code == 409
        for bad in ("../escape", "a/b", "", ".hidden", 7):
            r = client.post("/api/backup", json={"name": bad}, headers={"Authorization": f"Bearer {admin}"})
            assert r.status_code == 400, bad
        assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == ["nightly"]
        r = client.post("/api/backup", headers={"Authorization": f"Bearer {admin}"})  # named by the index and time
        assert r.status_code == 201 and r.get_json()["name"].startswith("notes-")
