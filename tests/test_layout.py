"""The layout holds: the stages' layers (import-linter's contract in pyproject.toml), a thin
client that loads no engine, a package list that names every package, and a docstring on each
stage saying what it owns."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = ("readers", "encoding", "sources", "storage", "search", "index", "cluster", "integrations", "quality", "cli", "web")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's `lint-imports` on the tree at `root` (its pyproject.toml's contracts)."""
    command = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(command), "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_layers_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_import_that_runs_back_up_breaks_the_contract(tmp_path):
    """The check can fail: a reader that imports the CLI is reported."""
    shutil.copytree(ROOT / "searcher", tmp_path / "searcher", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    reader = tmp_path / "searcher" / "readers" / "documents.py"
    reader.write_text(reader.read_text() + "\nimport searcher.cli  # noqa: E402,F401\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and "searcher.readers.documents -> searcher.cli" in result.stdout


def test_a_thin_client_loads_no_engine():
    """`import searcher.remote` and `searcher.connect` load no model, FAISS, tantivy or SQLite wrapper."""
    code = ("import sys, searcher, searcher.remote\n"
            "searcher.connect, searcher.RemoteIndex, searcher.Hit, searcher.Results, searcher.SearchableIndex\n"
            "heavy = ('torch', 'transformers', 'faiss', 'tantivy', 'sqlite_utils', 'numpy', 'flask', 'onnxruntime')\n"
            "print(','.join(name for name in heavy if name in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
    # and the engine is there when asked for
    code = "import sys, searcher\nsearcher.Index\nprint('faiss' in sys.modules and 'sqlite_utils' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.stdout.strip() == "True", result.stderr


def test_the_package_list_names_every_package():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "searcher").rglob("__init__.py")}
    assert found | {"searcher.web.ui"} == listed
    assert (ROOT / "web" / "templates").is_dir() and (ROOT / "web" / "static").is_dir()


def test_every_stage_says_what_it_owns():
    for stage in STAGES:
        doc = ast.get_docstring(ast.parse((ROOT / "searcher" / stage / "__init__.py").read_text()))
        assert doc and len(doc.split()) >= 5, f"searcher/{stage}/__init__.py has no docstring saying what it owns"


def test_the_readme_draws_the_stages_from_the_imports():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "layout.py")], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    readme = (ROOT / "README.md").read_text()
    drawn = readme.split("<!-- layout:start -->\n", 1)[1].split("<!-- layout:end -->", 1)[0]
    assert drawn.strip() == result.stdout.strip(), "README's drawing is stale: paste `python scripts/layout.py`"
