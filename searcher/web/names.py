"""The names a server gives its indexes (in URLs as ?index=NAME, in the key file's
comma-separated lists): what a valid name is, and the name an index gets from its folder.
No Flask here, so the key file (searcher/web/keys.py) and the CLI can check names cheaply."""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_NAME = "default"  # the name of an index that has no folder to be named after
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"


def check_index_name(name: str) -> str:
    """`name` if it can name an index (in URLs, the key file's comma-separated lists); else ValueError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"an index name is {NAME_RULE}, not {str(name)[:80]!r}")
    return name


def folder_name(path: str | Path | None) -> str:
    """The name an index gets from its folder (`indexes/notes` -> notes), made valid."""
    if path is None:
        return DEFAULT_NAME
    path = Path(path)
    name = path.name or path.resolve().name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).lstrip(".-_")[:64]
    return name or DEFAULT_NAME
