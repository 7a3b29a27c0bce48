"""The source interface: one small Protocol, one implementation a URL scheme, a registry.

A source lists its items and reads one on demand; the index decides what to read:

    source = open_source("s3://bucket/docs", {"endpoint_url": "http://127.0.0.1:9000"})
    for item in source.items():       # Item | Skipped, never raises for one bad item
        ...                           # Item.key, Item.version decide unchanged/changed
    data = source.read(item)          # bytes, read as a file called item.name would be

The rules every source keeps (tests/source_contract.py checks them against each one):

- `url` is canonical and holds no credentials; every item's `key` is stable across runs
  and unique within the source (it becomes the documents' `source`, and the id of a single
  document item): `s3://bucket/a/b.pdf`.
- `version` changes whenever the item's bytes may have changed (S3: ETag and size), and
  stays the same when they have not: an item whose key and version are stored is not read.
- `name` ends with the suffix that picks the reader (`b.pdf`); the bytes of `read` go
  through searcher/readers/ exactly as a file's.
- `items()` raises SourceError when the listing as a whole fails (bad bucket, no
  credentials, unreachable endpoint): the index is then left as it was, nothing pruned. One
  item that cannot be listed is yielded as a Skipped with its reason, and listing goes on.
- `read(item)` raises SourceError (or OSError) for that item alone; the run goes on.
- Messages never carry a secret: credentials come from the environment or a file of mode
  0600 (`check_secret_file`), never from the URL or the options that are recorded.

Plugging in another kind: a module with a class that has `scheme`, `url`, `options` (what
is recorded: no secrets), `items`, `read` and `close`, built as `Class(url, **options)`, and
one line in SCHEMES below (or `register(scheme, factory)` at run time).
"""

from __future__ import annotations

import importlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Protocol, runtime_checkable

from searcher.errors import SearcherError
from searcher.readers.documents import Skipped


class SourceError(SearcherError):
    """A source cannot be listed or one of its items read: the message says why and what to
    do, and never holds a secret."""


@dataclass(frozen=True)
class Item:
    """One thing a source lists: a file-like object to read.

    key: stable, unique name; the documents' `source` (`s3://bucket/a/b.pdf`).
    version: decides changed/unchanged (`etag:size`); opaque to the index.
    name: a file name whose suffix picks the reader (`b.pdf`).
    size: bytes, when the listing knows it (an item over --max-file-mb is not read).
    modified: ISO 8601 UTC time, when known (the documents' `modified`).
    folder: where it sits (`s3://bucket/a`), the documents' `folder`.
    """

    key: str
    version: str
    name: str
    size: int | None = None
    modified: str | None = None
    folder: str = ""
    metadata: dict = field(default_factory=dict, compare=False)  # more facts for its documents


@runtime_checkable
class Source(Protocol):
    """A place documents come from, one kind a URL scheme (see the module's docstring)."""

    scheme: ClassVar[str]
    url: str  # canonical, without credentials
    options: dict  # what is recorded with the index and given back to re-open it: no secrets
    # Optional: `readers`, who may read its items when a run names none (an IMAP mailbox: its
    # owner, `user:LOGIN`; docs/access.md). A source without it gives none.

    def items(self) -> Iterator[Item | Skipped]: ...

    def read(self, item: Item) -> bytes: ...

    def close(self) -> None: ...


# scheme -> "module:Class", imported when first used (a source's client library is optional).
SCHEMES: dict[str, str] = {
    "s3": "searcher.sources.s3:S3Source",
    "http": "searcher.sources.web:WebSite",
    "https": "searcher.sources.web:WebSite",
    "imap": "searcher.sources.imap:Mailbox",
    "imaps": "searcher.sources.imap:Mailbox",
}
_FACTORIES: dict[str, Callable[..., Source]] = {}

_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def register(scheme: str, factory: Callable[..., Source]) -> None:
    """Make `open_source` build `factory(url, **options)` for URLs of `scheme`."""
    _FACTORIES[scheme.lower()] = factory


def schemes() -> list[str]:
    return sorted(set(SCHEMES) | set(_FACTORIES))


def scheme_of(text: str) -> str | None:
    match = _URL.match(str(text))
    return match.group(1).lower() if match else None


def is_source_url(text: str) -> bool:
    """Whether `text` is a URL (`scheme://...`) rather than a path."""
    return scheme_of(text) is not None


def canonical_url(url: str) -> str:
    """`url` as its source records it (`open_source(url).url`), or `url` when no source takes it."""
    try:
        return open_source(url).url
    except SourceError:
        return url


def open_source(url: str, options: dict | None = None) -> Source:
    """The source for `url`, built with `options` (its keyword arguments). SourceError for a
    scheme no source reads, or a URL or option the source refuses."""
    scheme = scheme_of(url)
    if scheme is None:
        raise SourceError(f"{url!r} is not a source URL (scheme://...)")
    factory = _FACTORIES.get(scheme)
    if factory is None and scheme in SCHEMES:
        module, name = SCHEMES[scheme].split(":")
        try:
            factory = getattr(importlib.import_module(module), name)
        except ImportError as e:
            raise SourceError(f"{scheme}:// sources need a library that is not installed ({e.name or e}); "
                              f"pip install -e '.[{scheme}]'") from None
    if factory is None:
        raise SourceError(f"no source reads {scheme}:// URLs (known: {', '.join(s + '://' for s in schemes())})")
    options = {k: v for k, v in (options or {}).items() if v is not None}
    try:
        return factory(url, **options)
    except TypeError as e:
        raise SourceError(f"{scheme}:// sources do not take these options: {e}") from None


def without_userinfo(url: str) -> str:
    """SourceError when `url` holds a user name or password (`s3://key:secret@bucket`):
    secrets go in the environment or a file of mode 0600, never in a URL that is recorded
    and printed. The message does not repeat the URL."""
    rest = url.split("://", 1)[1] if "://" in url else url
    if "@" in rest.split("/", 1)[0]:
        raise SourceError("a source URL may not hold credentials (user:password@); give them in the environment "
                          "or a credentials file of mode 0600 (docs/indexing.md, \"Credentials\")")
    return url


def check_secret_file(path: str | os.PathLike, what: str = "credentials file") -> Path:
    """`path` if it is a regular file that only its owner can read or write (mode 0600 or
    stricter), else SourceError saying so (never what the file holds)."""
    path = Path(os.path.expanduser(str(path)))
    try:
        st = path.stat()
    except OSError as e:
        raise SourceError(f"cannot read the {what} {path} ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"the {what} {path} is not a regular file")
    if st.st_mode & 0o077:
        raise SourceError(f"the {what} {path} can be read or written by others (mode "
                          f"{stat.S_IMODE(st.st_mode):04o}); it holds secrets: chmod 600 {path}")
    return path
