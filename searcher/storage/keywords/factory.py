"""Which keyword engine an index uses: the manifest's "keyword_engine" (FTS5 when absent:
indexes made before engines were a choice)."""

from __future__ import annotations

from pathlib import Path

from searcher.storage.keywords.base import Analyzer, KeywordEngine
from searcher.storage.keywords.fts5 import Fts5Engine, PorterAnalyzer
from searcher.storage.keywords.tantivy_engine import TantivyAnalyzer, TantivyEngine
from searcher.sanitize import one_of

ENGINES: dict[str, type[KeywordEngine]] = {"fts5": Fts5Engine, "tantivy": TantivyEngine}
ANALYZERS: dict[str, type[Analyzer]] = {"fts5": PorterAnalyzer, "tantivy": TantivyAnalyzer}
KEYWORD_ENGINES = tuple(ENGINES)
DEFAULT_KEYWORD_ENGINE = "tantivy"  # faster at every size, same nDCG@10: benchmarks/README.md, "Keyword engines"


def check_keyword_engine(name: str | None) -> str:
    return one_of(name, ENGINES, DEFAULT_KEYWORD_ENGINE, "keyword engine")


def open_keywords(folder: Path, manifest: dict) -> KeywordEngine:
    return ENGINES[check_keyword_engine(manifest.get("keyword_engine", "fts5"))](folder)


def analyzer_for(name: str | None = None) -> Analyzer:
    """The query analysis of engine `name` (the default engine's for None), without an index."""
    return ANALYZERS[check_keyword_engine(name)]()
