"""Hardening, second round (issue 30), the watcher's share: a name that is not UTF-8 does not
end live watching (item 3), a folder moved in is reported true (item 15), and every install
hint names what really installs the extra (item 20). Fake encoder, real file events."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import tomllib
from functools import partial
from pathlib import Path

import pytest

from searcher.quality import corpus_map
from searcher.readers.options import LoadOptions
from searcher.index.watch import Watcher
from tests import test_watch as watch_tests

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kept.txt").write_text("Kestrels hover above the motorway verge.")
    return folder


index = watch_tests.index  # the watcher tests' empty index on the fake encoder (a fixture)


# -- item 20: install hints ------------------------------------------------------------------
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def extras() -> set[str]:
    return set(PROJECT["optional-dependencies"])


def test_every_install_hint_names_an_extra_of_this_checkout():
    """`pip install 'searcher[x]'` installs an unrelated project of that name from PyPI: a hint
    installs an extra of this checkout (`pip install -e '.[x]'`) or of this distribution
    (`pip install 'searcher-engine[x]'`, the name in pyproject.toml), or names real packages."""
    known = extras()
    assert PROJECT["name"] != "searcher"  # that name on PyPI is another project
    distribution = re.escape(PROJECT["name"])
    hints = 0
    for path in [*sorted((ROOT / "searcher").rglob("*.py")),
                 ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:  # the site's pages too
        text = path.read_text()
        where = path.relative_to(ROOT)
        assert not re.search(r"searcher\[", text), f"{where} tells people to install 'searcher[...]' from PyPI"
        assert not re.search(r"pip install\s+['\"]?searcher(?![\w-])", text), f"{where} installs 'searcher' from PyPI"
        named = re.findall(r"pip install -e\s+['\"]?\.\[([^\]]*)\]", text)
        named += re.findall(rf"pip install\s+['\"]?{distribution}\[([^\]]*)\]", text)
        named += re.findall(r"install_hint\([^,()]+,\s*['\"](\w+)['\"]", text)  # the integrations' hint, filled in
        for extra in (e for e in named if not e.startswith("{")):
            hints += 1
            assert extra in known, f"{where}: {extra!r} is not an extra of pyproject.toml ({sorted(known)})"
    assert hints >= 10  # the scan sees the hints (watch, map, ray, mcp, ocr, train, the integrations...)


def test_the_watch_and_map_hints_say_what_installs_them(index, docs, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles: ImportError
    watcher = Watcher(index, [docs], LoadOptions(workers=0), reconcile_every=None)
    with caplog.at_level(logging.WARNING, logger="searcher.index.watch"):
        watcher.start()
        try:
            assert watcher.ready.wait(30)
        finally:
            watcher.stop()
    assert watcher.events is False
    assert "pip install -e '.[watch]'" in caplog.text, caplog.text
    monkeypatch.setattr(corpus_map, "umap_available", lambda: False)
    with pytest.raises(ValueError, match=re.escape("pip install -e '.[map]'")):
        corpus_map.choose_method(100, "umap")


# -- the watcher ----------------------------------------------------------------------------
DEADLINE = 30.0  # seconds; generous: what happens takes well under one on an idle machine
FAST = {"debounce": 0.1, "settle": 0.3, "reconcile_every": None}


eventually = partial(watch_tests.eventually, timeout=DEADLINE)  # its waits, with this file's deadline


def age(path: Path, seconds: float = 60) -> None:
    """Set a file's times `seconds` into the past (it has long been quiet)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def watching(index, docs):
    """Start a watcher over `docs` (keywords: Watcher's), recording its runs' reports; stopped at the end."""
    pytest.importorskip("watchfiles")
    started = []

    def start(**settings) -> Watcher:
        runs: list[tuple[str, object]] = []
        watcher = Watcher(index, [docs], LoadOptions(workers=0), on_run=lambda kind, report: runs.append((kind, report)),
                          **{**FAST, **settings})
        watcher.reports = runs
        started.append(watcher.start())
        assert watcher.ready.wait(DEADLINE), "the first reconcile did not finish"
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


def test_a_folder_moved_in_is_read_once_and_reported_true(watching, index, docs, tmp_path):
    """Item 15: the folder and the files in it both have events; each file is read once, and no
    file is reported a duplicate of itself."""
    watcher = watching()
    outside = tmp_path / "elsewhere"
    (outside / "deeper").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "deeper/c.txt"):
        (outside / name).write_text(f"Notes {name} about lichens on old walls.")
        age(outside / name)
    outside.rename(docs / "lichens")
    eventually(lambda: len(index) == 4)
    (docs / "lichens" / "a.txt").write_text("Mosses and lichens on the north side of the wall.")  # an event inside
    (docs / "lichens" / "deeper" / "c.txt").unlink()
    eventually(lambda: len(index) == 3 and "Mosses" in index.get_document(str(docs / "lichens" / "a.txt"))["text"])
    skipped = [s for _, report in watcher.reports for s in report.skipped]
    assert not skipped, skipped
    assert watcher.index_changes([docs / "lichens", docs / "lichens" / "b.txt", docs / "lichens" / "b.txt",
                                  docs / "lichens" / "deeper" / "c.txt"]).skipped == []


def bytes_file(folder: Path, name: bytes, text: str) -> None:
    with open(os.path.join(os.fsencode(folder), name), "wb") as f:
        f.write(text.encode())


def ids_ending(index, tail: str) -> list[str]:
    return [h.doc_id for h in index.search("otters muddy bank", k=5, mode="keyword") if h.doc_id.endswith(tail)]


def test_a_name_that_is_not_utf8_does_not_end_the_watch(watching, index, docs, caplog):
    """Item 3: watchfiles raises on a name it cannot decode (even when the file is only read);
    the watcher leaves it out, watches on, and indexes what comes after (and the file, its
    name escaped)."""
    caplog.set_level(logging.WARNING, logger="searcher.index.watch")
    watcher = watching()
    bytes_file(docs, b"bad\xff.txt", "Otters slide down the muddy bank.")
    eventually(lambda: "not UTF-8" in caplog.text)
    (docs / "after.txt").write_text("Swifts scream round the church tower at dusk.")
    assert eventually(lambda: index.get_document(str(docs / "after.txt")))
    assert eventually(lambda: ids_ending(index, "bad\\xff.txt"))  # read by the catch-up run, its name escaped
    (docs / "after.txt").unlink()
    eventually(lambda: index.get_document(str(docs / "after.txt")) is None)
    assert watcher.events is True
    assert "refused" not in caplog.text and "no file events" not in caplog.text, caplog.text
    assert "bad\\xFF.txt" in caplog.text  # the log names it


def test_what_changed_beside_a_name_that_is_not_utf8_is_not_lost(watching, index, docs):
    """The batch in which watchfiles met the name is lost with it: what changed meanwhile is read."""
    watching()
    beside = docs / "sub" / "beside.txt"
    beside.parent.mkdir()
    beside.write_text("Herons wait in the shallows.")
    age(beside)  # settled at once: nothing but its event would bring it in
    bytes_file(docs / "sub", b"bad\xfe.txt", "Otters slide down the muddy bank.")
    assert eventually(lambda: index.get_document(str(beside)))
    (docs / "later.txt").write_text("Swifts scream round the church tower at dusk.")
    assert eventually(lambda: index.get_document(str(docs / "later.txt")))


def test_a_folder_whose_name_is_not_utf8_is_watched_by_polling(index, docs, watching, caplog):
    """Setting an inotify watch up reads every folder, so watchfiles stops at once on such a
    folder: the watcher watches by polling, which sees changes, not reads."""
    caplog.set_level(logging.WARNING, logger="searcher.index.watch")
    os.mkdir(os.path.join(os.fsencode(docs), b"odd\xff"))
    bytes_file(docs / os.fsdecode(b"odd\xff"), b"inside.txt", "Otters slide down the muddy bank.")
    watcher = watching()
    assert eventually(lambda: ids_ending(index, "odd\\xff/inside.txt"))  # the first reconcile
    eventually(lambda: "polling" in caplog.text)
    (docs / "after.txt").write_text("Swifts scream round the church tower at dusk.")
    assert eventually(lambda: index.get_document(str(docs / "after.txt")))  # by an event or the catch-up run
    (docs / "later.txt").write_text("Kingfishers dive from the alder branch.")  # the polling watch is up by now
    assert eventually(lambda: index.get_document(str(docs / "later.txt")))
    assert watcher.events is True and "no file events" not in caplog.text, caplog.text
