"""Disk faults and damaged files (issue 14): what each injected fault does to an index.

Disk faults (tests/faults.py wraps the exact call of each step; `test_a_full_small_filesystem`
does it for real on a 2 MiB tmpfs). Each starts from an index with a committed generation
(the five ANIMALS documents), runs one write that hits the fault, then removes the fault:

| step (what fails)                                  | ENOSPC / EIO outcome |
| -------------------------------------------------- | -------------------- |
| vectors file write (faiss.write_index, half written) | IndexIOError (an OSError) with that errno, naming `vectors.<g>.faiss` and the last generation; temp file removed |
| vectors file write, as FAISS reports it (RuntimeError) | IndexIOError ENOSPC when the disk is full (statvfs), else EIO |
| fsync of the temporary vectors file                | IndexIOError; temp file removed |
| rename onto `vectors.<g>.faiss`                    | IndexIOError; temp file removed |
| fsync of the folder after the rename               | IndexIOError; the renamed (never live) file removed |
| the SQLite transaction (real SQLITE_FULL; SQLITE_FULL/IOERR raised inside it; fts5 and tantivy) | IndexIOError ENOSPC / EIO naming content.db; transaction rolled back; the new vectors file removed |
| manifest rewrite in a commit (index_factory change: write, fsync, rename) | IndexIOError naming manifest.json; nothing committed; manifest unchanged |
| manifest write of `set_search_params(persist=True)` | IndexIOError; the manifest on disk unchanged |
| tantivy's commit (after SQLite's)                  | the write succeeds (SQLite is the truth) with a logged warning; the changes wait in keyword_journal; keyword hits are checked against live chunks; the next open or write applies them |

After every failure: the same Index object and a fresh `Index.open` answer exactly as before
(same document ids, same dense/keyword/hybrid hits and scores), `check` is clean with no
leftover files, and the same write then completes once the fault is gone.

Damaged files (`test_damaged_file`, each case in a child process with a timeout, so a crash of
the interpreter or a hang fails the test): content.db, the live vectors file, manifest.json and
each kind of file of keywords.tantivy, truncated to 0, to half, or with seeded random bit flips.
Outcomes: open/search raise IndexCorruptError naming `searcher check` (or what repair cannot
do, for the manifest), or answer with real document ids only; `check` never raises, and
reports a problem whenever open or search refused; repair rebuilds vectors and the tantivy
index (checked clean afterwards), and says so when it cannot (content.db, manifest).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher import IndexCorruptError
from searcher import IndexIOError
from searcher.index.check import check_index
from searcher.cli import main
from searcher.storage.folder import read_manifest

from .conftest import ANIMALS
from .faults import ERRNOS, inject

REPO = Path(__file__).resolve().parent.parent
QUERIES = ("kittens chase mice", "zyzzyva tea leaves", "salt water coral reefs")
BIG = " ".join(f"Green tea zyzzyva leaves, steeping note {i}, in hot water." for i in range(300))  # ~20 kB
OPS = {
    "add": lambda idx: idx.add_documents([{"id": "tea", "title": "Tea", "text": BIG}]),
    "replace": lambda idx: idx.add_documents([{"id": "cat", "title": "Cats", "text": BIG}]),
    "delete": lambda idx: idx.delete(["cat"]),
}
EXPECTED_IDS = {"add": sorted([d["id"] for d in ANIMALS] + ["tea"]), "replace": sorted(d["id"] for d in ANIMALS),
                "delete": sorted(d["id"] for d in ANIMALS if d["id"] != "cat")}


def snapshot(index: Index) -> tuple:
    """Document ids and every mode's hits (ids and scores) for QUERIES."""
    hits = tuple((mode, q, tuple((h.doc_id, round(h.score, 5)) for h in index.search(q, k=5, mode=mode)))
                 for mode in ("dense", "keyword", "hybrid") for q in QUERIES)
    return tuple(index.store.document_ids()), hits


def leftovers(path: Path) -> list[str]:
    """Temporary files and vectors files other than the live one."""
    with sqlite3.connect(f"file:{path / 'content.db'}?mode=ro", uri=True) as conn:
        generation = conn.execute("select value from state where key = 'generation'").fetchone()[0]
    live = f"vectors.{generation}.faiss"
    conn.close()
    return sorted(p.name for p in path.iterdir()
                  if ".tmp-" in p.name or (p.name.startswith("vectors.") and p.name != live))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, fake_encoder) -> dict[str, Path]:
    """Committed indexes to copy: the ANIMALS with each keyword engine, and an ivf index one
    chunk short of its first re-plan (the next commit rewrites the manifest's index_factory)."""
    root = tmp_path_factory.mktemp("faults-pristine")
    out = {}
    for engine in ("tantivy", "fts5"):
        with Index.create(root / engine, encoder=fake_encoder, keyword_engine=engine) as idx:
            idx.add_documents(ANIMALS)
        out[engine] = root / engine
    with Index.create(root / "ivf", encoder=fake_encoder, index_type="ivf") as idx:
        idx.add_documents(ANIMALS + [{"id": f"n{i}", "text": f"note {i} on lanterns"} for i in range(72)])
        assert len(idx.vectors) == 77 and idx.vectors.describe() == "IVF1,Flat"
    out["ivf"] = root / "ivf"
    return out


@pytest.fixture
def copy_of(pristine, tmp_path, fake_encoder):
    opened = []

    def make(name: str) -> Index:
        shutil.copytree(pristine[name], tmp_path / name)
        opened.append(Index.open(tmp_path / name, encoder=fake_encoder))
        return opened[-1]

    yield make
    for idx in opened:
        idx.close()


def fail_then_recover(index: Index, monkeypatch, fake_encoder, step: str, code: int, op: str, words: str,
                      expect_errno: int | None = None) -> None:
    """The write `op` hits the fault: a clear IndexIOError, the last commit intact everywhere,
    check clean; without the fault the same write completes."""
    path, generation = index.path, index.store.generation
    before = snapshot(index)
    fault = inject(monkeypatch, step, code, index)
    with pytest.raises(IndexIOError) as failed:
        OPS[op](index)
    e = failed.value
    if step == "sqlite.full":  # SQLite's own error: nothing of ours to count
        assert "database or disk is full" in str(e), str(e)
    else:
        assert fault.fired, f"{step} was never reached"
    assert isinstance(e, OSError) and e.errno == (expect_errno or code), str(e)
    assert words in str(e) and f"generation {generation}" in str(e), str(e)
    assert snapshot(index) == before  # the writer's own object still answers from the last commit
    fault.clear()
    with Index.open(path, encoder=fake_encoder) as reopened:
        assert snapshot(reopened) == before
    report = check_index(path)
    assert report.ok and not report.notes, report.summary()
    assert leftovers(path) == []
    read_manifest(path)  # still whole
    OPS[op](index)  # with the disk well again, the same write completes
    assert index.store.document_ids() == EXPECTED_IDS[op]
    if op != "delete":
        assert index.search("zyzzyva", k=1, mode="keyword")[0].doc_id == ("tea" if op == "add" else "cat")
    else:
        assert "cat" not in [h.doc_id for h in index.search("kittens", k=5, mode="hybrid")]
    assert check_index(path).ok


VECTOR_STEPS = [("vectors.write", "vectors."), ("vectors.fsync", "vectors."), ("vectors.rename", "vectors."),
                ("vectors.dirsync", "vectors.")]


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("code", list(ERRNOS), ids=list(ERRNOS.values()))
@pytest.mark.parametrize("step, words", VECTOR_STEPS, ids=[s for s, _ in VECTOR_STEPS])
def test_a_fault_writing_the_vectors_file(copy_of, monkeypatch, fake_encoder, step, words, code, op):
    fail_then_recover(copy_of("tantivy"), monkeypatch, fake_encoder, step, code, op, words)


@pytest.mark.parametrize("op", list(OPS))
def test_faiss_own_write_error_becomes_an_oserror(copy_of, monkeypatch, fake_encoder, op):
    """FAISS loses the errno (RuntimeError "write error"); on a disk with room it is EIO."""
    fail_then_recover(copy_of("tantivy"), monkeypatch, fake_encoder, "vectors.faiss", errno.EIO, op, "FAISS")


@pytest.mark.parametrize("engine", ["tantivy", "fts5"])
@pytest.mark.parametrize("op", ["add", "replace"])
def test_sqlite_really_full(copy_of, monkeypatch, fake_encoder, engine, op):
    """SQLite's own SQLITE_FULL (content.db may not grow), rolled back inside its transaction."""
    fail_then_recover(copy_of(engine), monkeypatch, fake_encoder, "sqlite.full", errno.ENOSPC, op,
                      "SQLite transaction in content.db")


@pytest.mark.parametrize("engine", ["tantivy", "fts5"])
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("code", list(ERRNOS), ids=list(ERRNOS.values()))
def test_sqlite_error_inside_the_transaction(copy_of, monkeypatch, fake_encoder, code, op, engine):
    fail_then_recover(copy_of(engine), monkeypatch, fake_encoder, "sqlite.error", code, op,
                      "SQLite transaction in content.db")


@pytest.mark.parametrize("code", list(ERRNOS), ids=list(ERRNOS.values()))
@pytest.mark.parametrize("step", ["manifest.write", "manifest.fsync", "manifest.rename"])
def test_a_fault_rewriting_the_manifest_in_a_commit(copy_of, monkeypatch, fake_encoder, step, code):
    index = copy_of("ivf")
    path, generation = index.path, index.store.generation
    manifest = (path / "manifest.json").read_bytes()
    before = snapshot(index)
    fault = inject(monkeypatch, step, code, index)
    with pytest.raises(IndexIOError) as failed:
        OPS["add"](index)
    assert fault.fired and failed.value.errno == code
    assert "manifest.json" in str(failed.value) and f"generation {generation}" in str(failed.value)
    fault.clear()
    assert (path / "manifest.json").read_bytes() == manifest and snapshot(index) == before
    with Index.open(path, encoder=fake_encoder) as reopened:
        assert snapshot(reopened) == before
    report = check_index(path)
    assert report.ok and not report.notes and leftovers(path) == [], report.summary()
    OPS["add"](index)
    assert read_manifest(path)["index_factory"] == index.vectors.describe() == "IVF2,Flat"
    assert index.search("zyzzyva", k=1, mode="keyword")[0].doc_id == "tea" and check_index(path).ok


@pytest.mark.parametrize("code", list(ERRNOS), ids=list(ERRNOS.values()))
@pytest.mark.parametrize("step", ["manifest.write", "manifest.fsync", "manifest.rename"])
def test_a_fault_persisting_search_params(copy_of, monkeypatch, step, code):
    index = copy_of("ivf")
    manifest = (index.path / "manifest.json").read_bytes()
    fault = inject(monkeypatch, step, code, index)
    with pytest.raises(IndexIOError, match="manifest.json") as failed:
        index.set_search_params(nprobe=2, persist=True)
    assert failed.value.errno == code
    fault.clear()
    assert (index.path / "manifest.json").read_bytes() == manifest and check_index(index.path).ok
    index.set_search_params(nprobe=2, persist=True)
    assert read_manifest(index.path)["search_params"] == {"nprobe": 2}


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("code", list(ERRNOS), ids=list(ERRNOS.values()))
def test_a_fault_in_tantivys_commit_is_caught_up_later(copy_of, monkeypatch, fake_encoder, caplog, code, op):
    index = copy_of("tantivy")
    path = index.path
    fault = inject(monkeypatch, "tantivy.commit", code, index)
    with caplog.at_level(logging.WARNING):
        OPS[op](index)  # SQLite committed: the write stands, the keyword changes wait
    assert fault.fired and "keyword changes wait" in caplog.text and os.strerror(code) in caplog.text
    assert index.store.document_ids() == EXPECTED_IDS[op]
    keyword = [h.doc_id for h in index.search("kittens zyzzyva", k=5, mode="keyword")]
    assert op != "delete" or "cat" not in keyword  # a lagging engine never returns a removed chunk
    if op != "delete":
        assert index.search("zyzzyva", k=1, mode="dense")[0].doc_id == ("tea" if op == "add" else "cat")
    report = check_index(path)
    assert report.ok and any("not yet applied" in n for n in report.notes), report.summary()
    fault.clear()
    with Index.open(path, encoder=fake_encoder) as reopened:  # opening applies the waiting changes
        if op != "delete":
            assert reopened.search("zyzzyva", k=1, mode="keyword")[0].doc_id == ("tea" if op == "add" else "cat")
    report = check_index(path)
    assert report.ok and not report.notes, report.summary()


def test_the_cli_reports_a_full_disk_in_one_line(copy_of, monkeypatch):
    index = copy_of("tantivy")
    inject(monkeypatch, "vectors.write", errno.ENOSPC, index)
    result = CliRunner().invoke(main, ["delete", "cat", "--index", str(index.path)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "No space left on device" in result.output and "Free some space" in result.output


def test_a_manifest_value_changed_behind_its_checksum_is_detected(copy_of):
    """A flipped digit still reads as a valid manifest (chunk_tokens 256 -> 257): its checksum tells."""
    index = copy_of("tantivy")
    path = index.path / "manifest.json"
    manifest = json.loads(path.read_text())
    assert manifest["checksum"] and read_manifest(index.path)
    path.write_text(json.dumps({**manifest, "chunk_tokens": manifest["chunk_tokens"] + 1}, indent=2))
    with pytest.raises(IndexCorruptError, match="does not match its checksum.*cannot rebuild a manifest"):
        read_manifest(index.path)
    del manifest["checksum"]  # what the message says to do after an edit on purpose
    path.write_text(json.dumps(manifest, indent=2))
    assert read_manifest(index.path)["chunk_tokens"] == manifest["chunk_tokens"]


# -- a real full file system ---------------------------------------------------------------------

@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt: Path, leave: int) -> Path:
    """Fill the file system but `leave` bytes."""
    st = os.statvfs(mnt)
    filler = mnt / "filler"
    with open(filler, "wb") as fh:
        try:
            fh.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
        except OSError:
            pass
    return filler


def test_a_full_small_filesystem(small_fs, fake_encoder, caplog):
    """ENOSPC for real: each round fills the disk to leave a little more room, tries a write,
    and frees the space; whatever step runs out, the last commit holds and the next run completes."""
    path = small_fs / "idx"
    index = Index.create(path, encoder=fake_encoder)
    index.add_documents([{"id": f"seed{i}", "text": f"seed note {i} about kittens " * 20} for i in range(30)])
    outcomes = []
    try:
        for round_, leave in enumerate(range(0, 160 * 1024, 8 * 1024)):
            before = snapshot(index)
            filler = fill(small_fs, leave)
            docs = [{"id": f"r{round_}-{i}", "text": f"round {round_} document {i} " + "lorem ipsum " * 30}
                    for i in range(10)]
            try:
                with caplog.at_level(logging.WARNING):
                    index.add_documents(docs)
                outcomes.append("committed" + (" (keywords later)" if "keyword changes" in caplog.text else ""))
            except IndexIOError as e:
                assert e.errno == errno.ENOSPC and "Free some space" in str(e), str(e)
                outcomes.append("vectors" if "vectors file" in str(e) else "sqlite" if "SQLite" in str(e) else str(e))
                assert snapshot(index) == before
                with Index.open(path, encoder=fake_encoder) as reader:  # while the disk is still full
                    assert snapshot(reader) == before
            caplog.clear()
            report = check_index(path)  # read-only: works on the full disk
            assert report.ok and not any("leftover" in n for n in report.notes), report.summary()
            filler.unlink()
            index.add_documents(docs)  # with room again, the same write completes
            assert all(index.get_document(d["id"]) for d in docs)
            assert check_index(path).ok
    finally:
        index.close()
    assert {"vectors", "sqlite"} & set(outcomes), outcomes
    # A reader on the full disk, no writer open: it reads, or (when SQLite cannot create its
    # content.db-shm there) gets a clear IndexIOError, never a bare "disk I/O error".
    filler = fill(small_fs, 0)
    try:
        with Index.open(path, encoder=fake_encoder) as reader:
            assert reader.search("kittens", k=1)
    except IndexIOError as e:
        assert "content.db-shm" in str(e), str(e)
    finally:
        filler.unlink()
    with Index.open(path, encoder=fake_encoder) as reader:
        assert reader.search("kittens", k=1)
    print("\nrounds on a full 2 MiB tmpfs:", outcomes)


# -- damaged files ----------------------------------------------------------------------------------

TANTIVY_KINDS = ("meta.json", ".managed.json", "term", "idx", "pos", "fast", "fieldnorm", "store")
DAMAGE_CASES = [
    {"id": f"{target}/{damage}{'' if seed is None else seed}", "target": target,
     "damage": damage, "seed": seed or 0}
    for target, flips in [("content.db", range(12)), ("vectors", range(4)), ("manifest", range(12))]
    + [(f"tantivy:{k}", range(3)) for k in TANTIVY_KINDS]
    for damage, seed in [("truncate0", None), ("truncate_half", None)] + [("flip", s) for s in flips]
]
CASE_TIMEOUT = 20  # seconds a case may take in the child (they take well under one)


@pytest.fixture(scope="module")
def damage_results(pristine, tmp_path_factory) -> dict[str, dict]:
    """Every case's outcome from tests/damage_worker.py; a case during which the child died or
    hung is recorded as such, and the child is started again for the rest."""
    scratch = tmp_path_factory.mktemp("damage")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RUST_BACKTRACE": "0"}
    results: dict[str, dict] = {}
    todo = list(DAMAGE_CASES)
    while todo:
        cases = scratch / "cases.json"
        cases.write_text(json.dumps(todo))
        proc = subprocess.Popen([sys.executable, "-m", "tests.damage_worker", str(pristine["tantivy"]),
                                 str(scratch), str(cases)], env=env, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=CASE_TIMEOUT * len(todo) / 4 + 30)
            hung = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            hung = True
        running = None
        for line in out.splitlines():
            record = json.loads(line)
            if "start" in record:
                running = record["start"]
            else:
                results[record["result"]["id"]] = record["result"]
                running = None
        if running is not None:  # the child died (or hung) inside this case
            results[running] = {"id": running, "died": f"exit status {proc.returncode}, hung: {hung}",
                                "stderr": err[-2000:]}
        elif proc.returncode:
            pytest.fail(f"damage worker failed outside a case (exit {proc.returncode}): {err[-2000:]}")
        todo = [c for c in todo if c["id"] not in results]
    return results


def _all_hits(found: dict) -> list[str]:
    return [doc_id for per_query in found.values() for hits in per_query for doc_id in hits]


@pytest.mark.parametrize("case", [c["id"] for c in DAMAGE_CASES])
def test_damaged_file(damage_results, case):
    r = damage_results[case]
    assert "died" not in r, f"{case}: the interpreter died or hung: {r.get('died')}\n{r.get('stderr')}"
    real_ids = {d["id"] for d in ANIMALS}
    target = case.split("/")[0]
    opened = r["open"]
    if opened != "ok":
        assert opened["corrupt"], f"{case}: {opened['type']} escaped: {opened['message']}\n{opened['where']}"
        assert "searcher check" in opened["message"], opened["message"]
    assert set(_all_hits(r["hits"])) <= real_ids, f"{case}: a hit that is no document: {r['hits']}"
    check = r["check"]
    assert "error" not in check, f"{case}: check raised {check.get('error')}"
    if opened != "ok":
        assert not check["ok"], f"{case}: open refused ({opened['message']}) but check says OK"
    repair = r["repair"]
    assert "error" not in repair, f"{case}: repair raised {repair.get('error')}"
    if target == "vectors" or target.startswith("tantivy:"):  # rebuilt from content.db
        assert repair["ok"], f"{case}: {repair['problems']}"
    if target == "manifest" and opened != "ok":
        assert not repair["ok"] and any("cannot rebuild the manifest" in p for p in repair["problems"])
    if repair["ok"]:
        assert r["after_repair_check"]["ok"], r["after_repair_check"]
        assert set(_all_hits(r["after_repair"])) <= real_ids
        if target == "vectors" or target.startswith("tantivy:"):
            assert r["after_repair"]["keyword"][0][0] == "cat" and r["after_repair"]["dense"][0][0] == "cat"
