"""Keyword engines: the interface and query analysis (base.py), FTS5 (fts5.py), tantivy
(tantivy_engine.py) and the factory keyed by the manifest (factory.py)."""

from searcher.storage.keywords.base import STOP_WORDS, Analyzer, KeywordEngine, KeywordStats, bm25_idf
from searcher.storage.keywords.factory import (DEFAULT_KEYWORD_ENGINE, ENGINES, KEYWORD_ENGINES, analyzer_for, check_keyword_engine,
                      open_keywords)

__all__ = ["DEFAULT_KEYWORD_ENGINE", "ENGINES", "KEYWORD_ENGINES", "STOP_WORDS", "Analyzer", "KeywordEngine",
           "KeywordStats", "analyzer_for", "bm25_idf", "check_keyword_engine", "open_keywords"]
