"""Make what users hand us storable: strings SQLite and the tokenizer accept, JSON that parses.

File names that are not valid UTF-8 reach Python as lone surrogates (PEP 383), and text built
from them carries them too; UTF-8 cannot encode those, so SQLite and the tokenizer refuse
them. Each one is replaced by a visible escape (`\\xff` for the raw byte 0xff, `\\ud800` for
other lone surrogates), the same way everywhere, so an id escaped at indexing is found again
by `get_document` and `delete`. Metadata is made valid JSON: NaN and infinities become null;
metadata that nests more than MAX_METADATA_DEPTH objects and lists is refused (a ValueError:
copying it, and SQLite's JSON functions over it, would recurse too deep).
"""

from __future__ import annotations

import math
import re

_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_METADATA_DEPTH = 100  # objects and lists inside one another in a document's metadata
_CONTAINERS = (dict, list, tuple, set, frozenset)


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a raw byte smuggled in by surrogateescape
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def clean_text(text: str) -> str:
    """`text` with every lone surrogate replaced by its visible escape (unchanged if it has none)."""
    return _SURROGATE.sub(_escape, text) if _SURROGATE.search(text) else text


def document_id(doc_id) -> str:
    """The one rule for ids: a string; any other value by str() (42 and "42" are one id)."""
    if isinstance(doc_id, bytes):
        doc_id = doc_id.decode("utf-8", "surrogateescape")
    return clean_text(doc_id if isinstance(doc_id, str) else str(doc_id))


def clean_metadata(value):
    """A JSON-safe copy of metadata: NaN/infinity -> None, strings cleaned, keys as strings,
    tuples and sets as lists, anything else as its str(). ValueError when it nests more than
    MAX_METADATA_DEPTH levels (checked without recursing)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, _CONTAINERS):
            if depth > MAX_METADATA_DEPTH:
                raise ValueError(f"metadata nests objects and lists more than {MAX_METADATA_DEPTH} levels deep")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return _clean(value)


def _clean(value):
    if isinstance(value, dict):
        return {clean_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return clean_text(str(value))


def is_blank(text: str) -> bool:
    """True for text with nothing a person could search for (whitespace, control chars)."""
    return not any(ch.isprintable() and not ch.isspace() for ch in text)


def one_of(value, choices, default, what: str):
    """A named choice (a mode, an engine, a sort...): `value`, or `default` for None; a
    ValueError saying "unknown <what>" and the choices otherwise."""
    if value is None:
        return default
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}: use one of {', '.join(choices)}")
    return value
