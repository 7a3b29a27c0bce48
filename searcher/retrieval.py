"""Old path of searcher.search.retrieval, kept for code that imports it."""

from searcher.search.retrieval import *  # noqa: F401,F403
