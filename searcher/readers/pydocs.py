"""The default corpus: documentation strings of the Python standard library.

Every Python installation carries it, so a fresh machine can build a real index offline.
The source files are parsed with `ast`, never imported, so nothing in them runs.
"""

from __future__ import annotations

import ast
import inspect
import sysconfig
from pathlib import Path
from typing import Iterator

from searcher.readers.documents import Document

SKIP_PARTS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__",
              "lib2to3", "idlelib", "turtledemo", "ensurepip", "venv"}
MIN_CHARS = 120  # shorter docstrings say too little to be worth a result


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    try:
        return f"({ast.unparse(node.args)})"
    except Exception:  # pragma: no cover - ast.unparse handles all valid syntax
        return "(...)"


def _documents_in(tree: ast.Module, module: str, path: Path) -> Iterator[Document]:
    doc = ast.get_docstring(tree)
    if doc and len(doc) >= MIN_CHARS:
        yield Document(f"python:{module}", doc, f"{module} (module)", f"{path}:1",
                       {"module": module, "kind": "module", "line": 1, "folder": str(path.parent)})

    def visit(body, prefix):
        for node in body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if node.name.startswith("_"):
                continue
            qualname = f"{prefix}{node.name}"
            doc = ast.get_docstring(node)
            if doc and len(doc) >= MIN_CHARS:
                kind = "class" if isinstance(node, ast.ClassDef) else ("method" if prefix != f"{module}." else "function")
                sig = "" if isinstance(node, ast.ClassDef) else _signature(node)
                yield Document(f"python:{qualname}", inspect.cleandoc(doc), f"{qualname}{sig}",
                               f"{path}:{node.lineno}",
                               {"module": module, "kind": kind, "line": node.lineno, "folder": str(path.parent)})
            if isinstance(node, ast.ClassDef):
                yield from visit(node.body, f"{qualname}.")

    yield from visit(tree.body, f"{module}.")


def python_docs(root: Path | None = None, limit: int | None = None) -> Iterator[Document]:
    """Documents for the public modules, classes and functions of the standard library."""
    root = root or stdlib_dir()
    count = 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(p in SKIP_PARTS or p.startswith("_") and p != "__init__.py" for p in rel):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        except (SyntaxError, UnicodeDecodeError, OSError, ValueError):
            continue
        for doc in _documents_in(tree, module_name(path, root), path):
            yield doc
            count += 1
            if limit is not None and count >= limit:
                return
