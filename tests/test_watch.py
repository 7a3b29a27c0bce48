"""Watched folders (searcher/index/watch.py, `searcher watch`, `searcher serve --watch`, POST
/api/index): new, changed, deleted and renamed files reach the index within seconds, a file
caught mid-write is only ever indexed whole, the periodic reconcile catches what events
missed. Fake encoder (no model), real file events (watchfiles), short debounce and settle;
each check polls with a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.storage.folder import exclusive_lock
from searcher.readers.options import LoadOptions
from searcher.index.watch import Watcher
from searcher.web import create_app
from searcher.web.writes import watch_folders

from .test_writes import ADMIN, KEYS, READ

pytest.importorskip("watchfiles")

AUTH = {"Authorization": f"Bearer {ADMIN}"}
DEADLINE = 8.0  # seconds; what happens takes well under one
FAST = {"debounce": 0.1, "settle": 0.3}


def eventually(check, timeout: float = DEADLINE, every: float = 0.05):
    """check()'s first truthy value within `timeout` seconds; fails the test otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check.__doc__ or check}")
        time.sleep(every)


def text_of(index, path: Path) -> str | None:
    doc = index.get_document(str(path))
    return doc["text"] if doc else None


def age(path: Path, seconds: float = 60) -> None:
    """Set a file's times `seconds` into the past (it has long been quiet)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kept.txt").write_text("Kestrels hover above the motorway verge.")
    age(folder / "kept.txt")
    return folder


@pytest.fixture
def index(tmp_path, fake_encoder):
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    yield idx
    idx.close()


@pytest.fixture
def watching(index, docs):
    """Start a watcher over `docs` (keywords: Watcher's); stopped at the end."""
    started = []

    def start(**settings) -> Watcher:
        watcher = Watcher(index, [docs], LoadOptions(workers=0), **{"reconcile_every": None, **FAST, **settings})
        started.append(watcher.start())
        assert watcher.ready.wait(DEADLINE), "the first reconcile did not finish"
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


def test_the_first_reconcile_indexes_what_is_there(watching, index, docs):
    watcher = watching()
    assert text_of(index, docs / "kept.txt") == "Kestrels hover above the motorway verge."
    assert watcher.runs >= 1 and watcher.last_report.added == 1 and watcher.events is True


def test_a_new_file_is_indexed(watching, index, docs):
    watching()
    (docs / "new.md").write_text("# Herons\n\nA grey heron waits in the shallows.")
    assert eventually(lambda: text_of(index, docs / "new.md")) == "# Herons\n\nA grey heron waits in the shallows."
    assert index.get_document(str(docs / "new.md"))["title"] == "Herons"
    # (the keyword engine applies a commit just after SQLite has it: searches catch up at once)
    assert eventually(lambda: [h.doc_id for h in index.search("grey heron shallows", k=1, mode="keyword")]) == [
        str(docs / "new.md")]


def test_a_changed_file_replaces_its_old_text(watching, index, docs):
    watching()
    (docs / "kept.txt").write_text("Swifts scream round the church tower at dusk.")
    assert eventually(lambda: text_of(index, docs / "kept.txt") == "Swifts scream round the church tower at dusk.")
    assert eventually(lambda: index.search("kestrels motorway", k=5, mode="keyword") == [])
    assert len(index) == 1


def test_a_deleted_file_is_removed(watching, index, docs):
    watching()
    (docs / "kept.txt").unlink()
    assert eventually(lambda: len(index) == 0)
    assert index.get_document(str(docs / "kept.txt")) is None


def test_a_renamed_file_moves_to_its_new_id(watching, index, docs):
    watcher = watching()
    (docs / "kept.txt").rename(docs / "moved.txt")
    assert eventually(lambda: text_of(index, docs / "moved.txt")) == "Kestrels hover above the motorway verge."
    assert eventually(lambda: index.get_document(str(docs / "kept.txt")) is None)
    assert len(index) == 1
    assert not [s for s in watcher.last_report.skipped], watcher.last_report.skipped  # the gone name is no skip


def test_a_folder_moved_in_and_out(watching, index, docs, tmp_path):
    watching()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name in ("a.txt", "b.txt"):
        (outside / name).write_text(f"Notes {name} about lichens on old walls.")
        age(outside / name)
    outside.rename(docs / "lichens")
    assert eventually(lambda: len(index) == 3)
    (docs / "lichens").rename(tmp_path / "gone")
    assert eventually(lambda: len(index) == 1)
    assert index.get_document(str(docs / "kept.txt")) is not None


def record_texts(index, monkeypatch) -> list[tuple[str, str]]:
    """Every (source, text) the index is given to store, from now on (what its write session
    is given: add_paths and add_documents both end there)."""
    seen: list[tuple[str, str]] = []
    add_documents = index.writes.add_documents

    def spy(documents, *args, **kwargs):
        def passing():
            for doc in documents:
                if hasattr(doc, "text"):
                    seen.append((doc.source, doc.text))
                yield doc
        return add_documents(passing(), *args, **kwargs)

    monkeypatch.setattr(index.writes, "add_documents", spy)
    return seen


def test_a_file_written_slowly_is_only_indexed_whole(watching, index, docs, monkeypatch):
    seen = record_texts(index, monkeypatch)
    deferred = []
    pend = Watcher._pend
    monkeypatch.setattr(Watcher, "_pend", lambda self, path, after: (deferred.append(path), pend(self, path, after)))
    watching()
    path = docs / "slow.txt"
    with path.open("w") as f:  # keeps growing for well over `settle`, with pauses shorter than it
        for n in range(12):
            f.write(f"part {n} of the field notes on dragonflies.\n")
            f.flush()
            time.sleep(0.1)
        f.write("THE END\n")
    whole = path.read_text()
    assert eventually(lambda: (text_of(index, path) or "").strip() == whole.strip()), (text_of(index, path), seen)
    versions = [text for source, text in seen if source == str(path)]
    assert versions and all(text.strip().endswith("THE END") for text in versions), versions
    assert path in deferred  # a run came while it was being written, and left it for later


def test_a_file_that_changes_while_it_is_read_is_left_for_later(index, docs, monkeypatch):
    """The signature taken before reading no longer matches after: the file's documents are
    left out of the run (its stored version stays) and it is read again once quiet."""
    watcher = Watcher(index, [docs], LoadOptions(workers=0), reconcile_every=None, **FAST)
    watcher.reconcile()
    path = docs / "kept.txt"
    add_paths = index.add_paths

    def writer_strikes_during_the_read(paths, *args, **kwargs):
        with path.open("a") as f:
            f.write(" And then a second half.")
        age(path)  # an old time, even: the size gives it away
        return add_paths(paths, *args, **kwargs)

    monkeypatch.setattr(index, "add_paths", writer_strikes_during_the_read)
    (path.parent / "other.txt").write_text("Whinchats perch on bracken.")
    age(path.parent / "other.txt")
    report = watcher.index_changes([path, path.parent / "other.txt"])
    assert (report.added, report.updated, report.skipped) == (1, 0, [])
    assert text_of(index, path) == "Kestrels hover above the motorway verge."  # the old version, whole
    assert path in watcher.pending
    monkeypatch.setattr(index, "add_paths", add_paths)
    time.sleep(FAST["settle"] + 0.1)
    watcher._run_due()
    assert text_of(index, path) == "Kestrels hover above the motorway verge. And then a second half."
    assert watcher.pending == []


def test_the_periodic_reconcile_catches_missed_events(watching, index, docs, monkeypatch):
    monkeypatch.setattr(Watcher, "_events", lambda self: self._ticks())  # no file events at all
    watching(reconcile_every=0.5)
    (docs / "missed.txt").write_text("Nobody told the watcher about the nightjar.")
    (docs / "kept.txt").unlink()
    assert eventually(lambda: text_of(index, docs / "missed.txt"))
    assert eventually(lambda: index.get_document(str(docs / "kept.txt")) is None)


def test_a_failed_run_is_tried_again(watching, index, docs, monkeypatch):
    monkeypatch.setattr("searcher.index.watch.RETRY_AFTER", 0.2)
    watcher = watching()
    with exclusive_lock(index.path):  # another process writing: the run fails, the watcher carries on
        (docs / "later.txt").write_text("Redstarts flick their tails.")
        assert eventually(lambda: watcher.last_error and "IndexLockedError" in watcher.last_error)
        assert text_of(index, docs / "later.txt") is None
    assert eventually(lambda: text_of(index, docs / "later.txt"))
    assert eventually(lambda: watcher.last_error is None)


def test_hidden_files_and_the_index_folder_are_not_watched(index, docs, tmp_path):
    with pytest.raises(ValueError, match="index folder"):
        Watcher(index, [index.path])
    with pytest.raises(ValueError, match="no such file"):
        Watcher(index, [tmp_path / "missing"])
    watcher = Watcher(index, [docs])
    watcher._default_filter = __import__("watchfiles").DefaultFilter()
    watcher._deleted, watcher._added = __import__("watchfiles").Change.deleted, __import__("watchfiles").Change.added
    (docs / "photo.jpg").write_bytes(b"\xff\xd8")
    assert not watcher._wanted(watcher._added, str(docs / ".draft.txt"))
    assert not watcher._wanted(watcher._added, str(docs / ".git" / "HEAD.txt"))
    assert not watcher._wanted(watcher._added, str(docs / "photo.jpg"))
    assert not watcher._wanted(watcher._added, str(docs / "notes.txt~"))
    assert watcher._wanted(watcher._deleted, str(docs / "old.txt"))
    assert watcher._wanted(watcher._added, str(docs / "kept.txt"))


# -- the server: POST /api/index -------------------------------------------------------
def test_post_api_index_runs_a_reconcile(index, docs):
    app = create_app(index, keys=KEYS)
    watcher = watch_folders(app, [docs], LoadOptions(workers=0), reconcile_every=None, settle=0)  # not started
    client = app.test_client()
    r = client.post("/api/index", headers=AUTH)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert (r.get_json()["added"], r.get_json()["watched"]) == (1, 1)
    (docs / "kept.txt").unlink()
    (docs / "fresh.txt").write_text("Goldcrests in the yew.")
    body = client.post("/api/index", headers=AUTH).get_json()
    assert (body["added"], body["removed"], body["skipped"]) == (1, 1, [])
    assert [d for d in (index.get_document(str(docs / "fresh.txt")),) if d] and len(index) == 1
    assert watcher.runs == 2
    assert client.post("/api/index", headers={"Authorization": f"Bearer {READ}"}).status_code == 403


def test_post_api_index_without_watched_folders_is_a_conflict(index):
    r = create_app(index, keys=KEYS).test_client().post("/api/index", headers=AUTH)
    assert r.status_code == 409 and "--watch" in r.get_json()["message"]


def test_the_watcher_and_the_write_api_take_turns(index, docs):
    app = create_app(index, keys=KEYS)
    service = app.extensions["searcher"]
    watcher = watch_folders(app, [docs], LoadOptions(workers=0), reconcile_every=None, settle=0)
    service.write_wait = 0.2
    held = threading.Event()
    release = threading.Event()

    def slow(index):
        held.set()
        release.wait(DEADLINE)
        return 0

    thread = threading.Thread(target=service.write, args=(slow,))
    thread.start()
    try:
        assert held.wait(DEADLINE)
        r = app.test_client().post("/api/index", headers=AUTH)  # waits write_wait for the other write
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert watcher.runs == 0
    finally:
        release.set()
        thread.join()
    assert app.test_client().post("/api/index", headers=AUTH).status_code == 200


# -- the command line ------------------------------------------------------------------
def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_watch_options_are_checked(tmp_path, docs):
    assert run("watch", "--index", tmp_path / "idx").exit_code == 2  # no paths
    result = run("watch", tmp_path / "missing", "--index", tmp_path / "idx")
    assert result.exit_code == 2 and "does not exist" in result.output
    for option in (("--debounce", "-5"), ("--reconcile", "-1"), ("--settle", "x")):
        result = run("watch", docs, "--index", tmp_path / "idx", *option)
        assert result.exit_code == 2 and option[0] in result.output, result.output
    (tmp_path / "idx").mkdir()
    result = run("watch", tmp_path / "idx", "--index", tmp_path / "idx")
    assert result.exit_code == 1 and "index folder" in result.output and "Traceback" not in result.output


def test_serve_watch_options_are_checked(tmp_path, docs):
    result = run("serve", "--index", tmp_path / "idx", "--reconcile", "5")
    assert result.exit_code == 2 and "--watch" in result.output
    result = run("serve", "--index", tmp_path / "idx", "--watch", tmp_path / "missing")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = run("serve", "--index", docs, "--watch", docs / "kept.txt")
    assert result.exit_code == 1 and "index folder" in result.output


def test_watch_command_runs_a_watcher_and_prints_its_runs(tmp_path, docs, index, monkeypatch):
    made = {}

    def fake_run(self):
        made.update(watcher=self)
        self.reconcile()

    monkeypatch.setattr("searcher.cli.indexing.Index.open_or_create", lambda *a, **k: index)
    monkeypatch.setattr(Watcher, "run", fake_run)
    result = run("watch", docs, "--index", index.path, "--debounce", "250", "--reconcile", "0", "--settle", "0",
                 "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    watcher = made["watcher"]
    assert (watcher.debounce, watcher.reconcile_every, watcher.settle, watcher.options.workers) == (0.25, None, 0, 0)
    line = [x for x in result.output.splitlines() if x.startswith("{")][0]
    assert '"run": "reconcile"' in line and '"added": 1' in line
