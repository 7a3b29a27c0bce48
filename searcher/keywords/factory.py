"""Which keyword engine an index uses: the manifest's "keyword_engine" (FTS5 when absent:
indexes made before engines were a choice)."""

from __future__ import annotations

from pathlib import Path

from .base import KeywordEngine
from .fts5 import Fts5Engine
from .tantivy_engine import TantivyEngine

ENGINES: dict[str, type[KeywordEngine]] = {"fts5": Fts5Engine, "tantivy": TantivyEngine}
KEYWORD_ENGINES = tuple(ENGINES)
DEFAULT_KEYWORD_ENGINE = "fts5"


def check_keyword_engine(name: str | None) -> str:
    if name is None:
        return DEFAULT_KEYWORD_ENGINE
    if name not in ENGINES:
        raise ValueError(f"unknown keyword engine {name!r}: use one of {', '.join(ENGINES)}")
    return name


def open_keywords(folder: Path, manifest: dict) -> KeywordEngine:
    return ENGINES[check_keyword_engine(manifest.get("keyword_engine", "fts5"))](folder)
