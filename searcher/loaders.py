"""Old path of searcher.readers.loaders, kept for code that imports it."""

from searcher.readers.loaders import *  # noqa: F401,F403
