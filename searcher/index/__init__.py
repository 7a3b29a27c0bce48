"""Index: one searchable index folder (the `Index` facade and its parts: the write session, check and
repair, watched folders). `searcher.index.facade` keeps the names it always exported."""

from searcher.index.facade import *  # noqa: F401,F403
from searcher.index.facade import DEFAULT_INDEX_DIR, Index, PathRun
from searcher.index.facade import __all__ as _EXPORTED

__all__ = [*_EXPORTED, "DEFAULT_INDEX_DIR", "Index", "PathRun"]
