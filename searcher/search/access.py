"""Per-document access: who may read which documents, as a filter of the filter language.

A document may carry readers, its metadata key `readers`: `user:NAME` and `group:NAME`
entries (searcher/readers/documents.py checks them). A `Viewer` is who is asking: a user and
the groups they belong to. A viewer may read a document that has no readers (every viewer
may), or one whose readers name the viewer's user or one of their groups.

`None` instead of a viewer means no restriction: the library and the command line, run by
whoever holds the index's files, read every document. A server decides each request's viewer
from its key (searcher/web/keys.py: a key's `user` and `groups`).

Every read (search, facets, similar, a document, the map, suggestions) of a viewer is
filtered before ranking by `viewer.where()`, ANDed with the search's own filter through
`scoped`: in memory over the generation's filter columns (searcher/search/filter_columns.py)
or in SQL (searcher/search/filters.py), both with `$has`. A hidden document is therefore no
candidate: it never appears, is never counted in a facet, and shapes no other document's
score, except through BM25's collection statistics (a term's document frequency counts the
chunks of every document).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from searcher.readers.documents import READERS, check_name, check_readers

__all__ = ["READERS", "Viewer", "can_read", "check_readers", "scoped", "viewer"]


@dataclass(frozen=True)
class Viewer:
    """Who is asking: `user` (None: no user of their own) and `groups` (names, without the
    `group:` prefix). Viewer() with neither reads only the documents that have no readers."""

    user: str | None = None
    groups: tuple[str, ...] = field(default=())

    def __post_init__(self):
        if self.user is not None:
            check_name(self.user, "user")
        groups = self.groups
        if isinstance(groups, str):
            groups = [g for g in (part.strip() for part in groups.split(",")) if g]
        object.__setattr__(self, "groups", tuple(sorted({check_name(g, "group") for g in groups})))

    @property
    def principals(self) -> tuple[str, ...]:
        """The reader entries that name this viewer: `user:NAME` and each `group:NAME`."""
        return ((f"user:{self.user}",) if self.user else ()) + tuple(f"group:{g}" for g in self.groups)

    def where(self) -> dict:
        """The filter that keeps what this viewer may read: no readers, or readers naming them."""
        public = {READERS: {"$eq": None}}
        if not self.principals:
            return public
        return {"$or": [public, {READERS: {"$has": list(self.principals)}}]}

    def can_read(self, metadata: dict | None) -> bool:
        """Whether this viewer may read a document with this metadata (what `where()` keeps)."""
        readers = (metadata or {}).get(READERS)
        if readers is None:
            return True
        entries = readers if isinstance(readers, list) else [readers]
        return any(isinstance(e, str) and e in self.principals for e in entries)

    def describe(self) -> str:
        return ", ".join(self.principals) or "no user or groups"


def can_read(viewer: Viewer | None, metadata: dict | None) -> bool:
    """Whether `viewer` (None: unrestricted) may read a document with this metadata."""
    return viewer is None or viewer.can_read(metadata)


def scoped(where: dict | None, viewer: Viewer | None) -> dict | None:
    """`where` ANDed with what `viewer` may read (None: `where` as it is)."""
    if viewer is None:
        return where
    if not isinstance(viewer, Viewer):
        raise TypeError(f"access is a Viewer (or None: every document), not {type(viewer).__name__}")
    own = viewer.where()
    return own if where is None else {"$and": [where, own]}


def viewer(user: str | None = None, groups: Iterable[str] | str = ()) -> Viewer:
    """A Viewer from a user and groups as a key file or a command line gives them."""
    return Viewer(user or None, tuple(groups) if not isinstance(groups, str) else groups)

