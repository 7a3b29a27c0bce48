"""One `add_paths` run's reading: which documents it read, so that a prune can tell which
stored documents are gone. Shared by a single index and a sharded one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, Iterator

from searcher.readers.documents import Document, Skipped
from searcher.readers.loaders import load_paths
from searcher.readers.options import LoadOptions
from searcher.sanitize import clean_text


def _under(source: str, roots: set[str]) -> bool:
    """Whether path `source` is one of `roots` (absolute paths) or lies under one: its
    ancestors are looked up, so many roots (a watcher's batch of files) cost no more."""
    path = source
    while True:
        if path in roots:
            return True
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent


class PathRun:
    """The documents under `paths` (the files `accept` takes, asked once per file), and what
    was read, so that `gone` can tell which stored documents a prune removes."""

    def __init__(self, paths: Iterable[str | os.PathLike], options: LoadOptions | None = None,
                 accept: Callable[[str], bool] | None = None):
        self.paths = [Path(os.path.abspath(p)) for p in paths]
        self.options = options
        self.accept = accept
        self.seen_ids: set[str] = set()
        self.read_sources: set[str] = set()
        self._decided: dict[str, bool] = {}

    def documents(self) -> Iterator[Document | Skipped]:
        for item in load_paths(self.paths, self.options):
            if isinstance(item, Document):
                if self.accept is not None:
                    if item.source not in self._decided:
                        self._decided[item.source] = bool(self.accept(item.source))
                    if not self._decided[item.source]:
                        continue
                self.seen_ids.add(item.id)
                self.read_sources.add(item.source)
            yield item

    def gone(self, stored: Iterable[tuple[str, str]]) -> list[str]:
        """The ids among `stored` (id, source) that came from under the run's paths but were not
        read again: their file was removed, or a row left a file that was read in full. A file
        that could not be read this time keeps its documents."""
        roots = {clean_text(str(p)) for p in self.paths}
        return [doc_id for doc_id, source in stored
                if doc_id not in self.seen_ids and source and _under(source, roots)
                and (source in self.read_sources or not Path(source).exists())]
