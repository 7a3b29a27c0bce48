"""Facets and date order over a search's documents: counts of each value of a field among the
documents a query ranks, the filter that keeps one value, and re-ordering by date.

A semantic search ranks every document, so "the documents that match" are the best `depth`
of the ranking (FACET_DEPTH, 100, by default: as deep as hybrid search fuses, so a
page with facets ranks as one without), within the search's filter: the counts describe the
top of the ranking, where the results are. A field is a metadata key (`type`, `folder`,
`author`, ...), or `year`, the year of `modified` (a file's modification time). A list value
(an e-mail's `to`) is not counted (no filter could keep its items).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Iterable

from searcher.search.filters import COLUMNS
from searcher.sanitize import one_of

DEFAULT_FACETS = ("type", "folder", "year")
FACET_DEPTH = 100  # documents of the ranking that facets count and sort/recency re-order (hybrid's fusion depth)
MAX_VALUES = 20  # values listed per field, the most frequent first
MAX_FIELDS = 10
SORTS = ("relevance", "modified")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_YEAR = re.compile(r"[0-9]{4}")


def check_facet_fields(fields: Iterable[str]) -> tuple[str, ...]:
    """The facet fields asked for, checked (names like `type` or `author`); ValueError otherwise."""
    out = []
    for name in fields:
        name = name.strip() if isinstance(name, str) else name
        if not isinstance(name, str) or not _FIELD.fullmatch(name):
            raise ValueError(f"a facet is a field name such as 'type', 'folder' or 'year', not {name!r}")
        if name not in out:
            out.append(name)
    if len(out) > MAX_FIELDS:
        raise ValueError(f"at most {MAX_FIELDS} facets at once, not {len(out)}")
    return tuple(out)


def check_sort(sort: str | None) -> str:
    return one_of(sort, SORTS, "relevance", "sort")


def check_recency(half_life_days) -> float | None:
    """The recency boost's half-life in days (a positive number), or None for no boost."""
    if half_life_days is None:
        return None
    if isinstance(half_life_days, bool) or not isinstance(half_life_days, (int, float)) \
            or not math.isfinite(half_life_days) or half_life_days <= 0:
        raise ValueError(f"recency is a half-life in days, a positive number, not {half_life_days!r}")
    return float(half_life_days)


def field_values(metadata: dict, name: str) -> list:
    """The values document `metadata` has for facet `name` (none, one, or a list's items)."""
    if name == "year":
        modified = metadata.get("modified")
        return [modified[:4]] if isinstance(modified, str) and _YEAR.fullmatch(modified[:4]) else []
    value = metadata.get(name[len("metadata."):] if name.startswith("metadata.") else name)
    # A list (an e-mail's `to`) is not counted: the filter language has no "contains", so a
    # count of its items could not be clicked into a filter that keeps them.
    ok = isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != ""
    return [value] if ok else []


def count_facets(metadatas: Iterable[dict], fields: Iterable[str]) -> dict[str, dict]:
    """{field: {value: count}} over the documents' metadata, each field's MAX_VALUES most
    frequent values, most frequent first (ties by value)."""
    fields = tuple(fields)
    counts: dict[str, dict] = {name: {} for name in fields}
    for metadata in metadatas:
        for name in fields:
            for value in dict.fromkeys(field_values(metadata, name)):  # a value once per document
                counts[name][value] = counts[name].get(value, 0) + 1
    return {name: dict(sorted(values.items(), key=lambda kv: (-kv[1], str(kv[0])))[:MAX_VALUES])
            for name, values in counts.items()}


def facet_filter(name: str, value) -> dict:
    """The filter (searcher/search/filters.py) that keeps the documents with `value` for facet `name`."""
    if name == "year":
        year = str(value)
        if not _YEAR.fullmatch(year):
            raise ValueError(f"a year is four digits, not {value!r}")
        return {"modified": {"$gte": year, "$lt": f"{int(year) + 1:04d}"}}
    return {f"metadata.{name}" if name in COLUMNS else name: value}  # facets count metadata, not the columns


def add_filter(where: dict | None, condition: dict) -> dict:
    """`where` with `condition` ANDed to it, as one more top-level entry where its field is
    free (so each entry stays removable on its own), else under $and."""
    where = dict(where or {})
    (key, value), = condition.items()
    if key not in where:
        where[key] = value
    elif where[key] != value:
        where = {"$and": [where, condition]}
    return where


def modified_time(metadata: dict) -> datetime | None:
    """A document's `modified` time as an aware datetime (UTC when the text has no zone)."""
    text = metadata.get("modified")
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def reorder(scored: dict, metadatas: dict, sort: str, half_life_days: float | None,
            now: datetime) -> dict:
    """Re-rank {doc_id: (score, chunk id)}: by `modified`, newest first (documents without a
    date last, in relevance order), or with each score weighted by recency: halved for every
    `half_life_days` of age, for the part of the score that is above zero (a document without
    a date counts as old as the oldest)."""
    dates = {d: modified_time(metadatas.get(d, {})) for d in scored}
    if half_life_days is not None:
        known = [t for t in dates.values() if t is not None]
        oldest = min(known) if known else now
        boosted = {}
        for doc_id, (score, cid) in scored.items():
            age_days = max(0.0, (now - (dates[doc_id] or oldest)).total_seconds() / 86400)
            weight = 0.5 ** (age_days / half_life_days)
            boosted[doc_id] = (score * weight if score > 0 else score, cid)
        scored = dict(sorted(boosted.items(), key=lambda kv: -kv[1][0]))
    if sort == "modified":
        order = sorted(scored, key=lambda d: (dates[d] is None, -(dates[d].timestamp() if dates[d] else 0)))
        scored = {d: scored[d] for d in order}
    return scored
