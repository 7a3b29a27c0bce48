"""Hardening, second round (issue 30), the watcher's share: a name that is not UTF-8 does not
end live watching (item 3), a folder moved in is reported true (item 15), and every install
hint names what really installs the extra (item 20). Fake encoder, real file events."""

from __future__ import annotations

import logging
import re
import sys
import tomllib
from pathlib import Path

import pytest

from searcher import Index, corpus_map
from searcher.loaders import LoadOptions
from searcher.watch import Watcher

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "kept.txt").write_text("Kestrels hover above the motorway verge.")
    return folder


@pytest.fixture
def index(tmp_path, fake_encoder):
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    yield idx
    idx.close()


# -- item 20: install hints ------------------------------------------------------------------
def extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def test_every_install_hint_names_an_extra_of_this_checkout():
    """`pip install 'searcher[x]'` installs an unrelated project of that name from PyPI: a hint
    installs an extra of this checkout (`pip install -e '.[x]'`), or names real packages."""
    known = extras()
    hints = 0
    for path in [*sorted((ROOT / "searcher").rglob("*.py")), *sorted((ROOT / "web").rglob("*.py")),
                 ROOT / "README.md"]:
        text = path.read_text()
        where = path.relative_to(ROOT)
        assert not re.search(r"searcher\[", text), f"{where} tells people to install 'searcher[...]' from PyPI"
        assert not re.search(r"pip install\s+['\"]?searcher\b", text), f"{where} installs 'searcher' from PyPI"
        named = re.findall(r"pip install -e\s+['\"]?\.\[([^\]]*)\]", text)
        named += re.findall(r"install_hint\([^,()]+,\s*['\"](\w+)['\"]", text)  # the integrations' hint, filled in
        for extra in (e for e in named if not e.startswith("{")):
            hints += 1
            assert extra in known, f"{where}: {extra!r} is not an extra of pyproject.toml ({sorted(known)})"
    assert hints >= 10  # the scan sees the hints (watch, map, ray, mcp, ocr, train, the integrations...)


def test_the_watch_and_map_hints_say_what_installs_them(index, docs, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles: ImportError
    watcher = Watcher(index, [docs], LoadOptions(workers=0), reconcile_every=None)
    with caplog.at_level(logging.WARNING, logger="searcher.watch"):
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
