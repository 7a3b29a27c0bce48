"""The filter language of `Index.search(..., where=...)`, compiled to SQL over the documents.

A filter is a JSON object. Its keys are document fields ANDed together: `title`, `source`,
`id`, and any metadata key (every file document has `type`, `size`, `modified`, `folder`;
a PDF `pages`, `author`, `created`; mail `from`, `to`, `date`...; `metadata.<key>` names a
metadata key that shares a name with a field). A plain value means equality; an object
gives operators:

    {"type": "pdf"}                                   equality
    {"type": {"$in": ["pdf", "docx"]}}                $eq $ne $in $nin
    {"modified": {"$gte": "2024-01-01"}}              $gt $gte $lt $lte (dates: ISO 8601 strings)
    {"folder": {"$under": "/home/ann/docs/2024"}}     the folder or a folder below it
    {"$or": [{"type": "pdf"}, {"pages": {"$gt": 10}}]}, {"$and": [...]}, {"$not": {...}}

A malformed filter (an unknown operator, a value of the wrong type) is a ValueError that
says what is wrong. Values are always bound parameters, never SQL text. Searches evaluate
filters in memory (searcher/search/filter_columns.py) with the same rules as this SQL, which a test
holds them to; the SQL answers what that cannot.
"""

from __future__ import annotations

import json
from typing import Any

COLUMNS = {"title": "coalesce(d.title, '')", "source": "coalesce(d.source, '')", "id": "d.id"}
COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = (*COMPARISONS, "$in", "$nin", "$under")
MAX_DEPTH = 16


def _scalar(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, int, float)):
        return int(value) if isinstance(value, bool) else value
    raise ValueError(f"{where}: a value must be a string, number, true, false or null, not {value!r}")


def _field(name: Any) -> str:
    if not isinstance(name, str) or not name or name.startswith("$"):
        raise ValueError(f"unknown filter operator or field {name!r}: fields are names like 'type'; "
                         f"operators are $and, $or, $not at the top and {', '.join(OPERATORS)} on a field")
    if name in COLUMNS:
        return COLUMNS[name]
    key = name[len("metadata."):] if name.startswith("metadata.") else name
    if not key:
        raise ValueError("'metadata.' must be followed by a metadata key")
    return "json_extract(d.metadata, ?)", json.dumps(key)  # type: ignore[return-value]


def compile_where(where: Any) -> tuple[str, list]:
    """(SQL condition over `documents d`, its parameters) for a filter; ValueError when malformed."""
    if not isinstance(where, dict):
        raise ValueError(f"a filter is a JSON object such as {{\"type\": \"pdf\"}}, not {where!r}")
    params: list = []
    sql = _clause(where, params, 0)
    return sql, params


def _clause(where: dict, params: list, depth: int) -> str:
    if depth > MAX_DEPTH:
        raise ValueError(f"the filter nests more than {MAX_DEPTH} levels")
    if not where:
        return "1"
    parts = []
    for key, value in where.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
                raise ValueError(f"{key} takes a non-empty list of filters, not {value!r}")
            joined = f" {key[1:].upper()} ".join(f"({_clause(v, params, depth + 1)})" for v in value)
            parts.append(f"({joined})")
        elif key == "$not":
            if not isinstance(value, dict):
                raise ValueError(f"$not takes a filter, not {value!r}")
            parts.append(f"NOT ({_clause(value, params, depth + 1)})")
        else:
            parts.append(_condition(key, value, params))
    return " AND ".join(parts)


def _condition(name: str, value: Any, params: list) -> str:
    column = _field(name)
    if isinstance(column, tuple):  # a metadata key: its JSON path is a parameter too
        expr, path = column
        column_params = ["$." + path]
    else:
        expr, column_params = column, []
    if not isinstance(value, dict):
        value = {"$eq": value}
    if not value:
        raise ValueError(f"{name}: an empty operator object")
    parts = []
    for op, operand in value.items():
        where = f"{name}.{op}"
        if op in COMPARISONS:
            operand = _scalar(operand, where)
            if operand is None and op in ("$eq", "$ne"):
                parts.append(f"{expr} IS {'NOT ' if op == '$ne' else ''}NULL")
                params.extend(column_params)
                continue
            if operand is None:
                raise ValueError(f"{where}: null cannot be compared with {op}")
            parts.append(f"{expr} {COMPARISONS[op]} ?")
            params.extend([*column_params, operand])
        elif op in ("$in", "$nin"):
            if not isinstance(operand, list) or not operand:
                raise ValueError(f"{where} takes a non-empty list of values, not {operand!r}")
            values = [_scalar(v, where) for v in operand]
            marks = ",".join("?" * len(values))
            parts.append(f"{expr} {'NOT ' if op == '$nin' else ''}IN ({marks})")
            params.extend([*column_params, *values])
        elif op == "$under":
            prefix = under_prefix(operand, where)
            below = prefix.rstrip("/") + "/"
            parts.append(f"(typeof({expr}) = 'text' AND ({expr} = ? OR substr({expr}, 1, ?) = ?))")
            params.extend([*column_params, *column_params, prefix, *column_params, len(below), below])
        else:
            raise ValueError(f"unknown filter operator {op!r} on {name!r}: use one of {', '.join(OPERATORS)}")
    return " AND ".join(parts)


def under_prefix(operand: Any, where: str = "$under") -> str:
    """The folder a `$under` names (trailing slashes dropped; "/" is the root). A path matches
    when it is that folder or starts with it and a slash, case and all (a text value only)."""
    if not isinstance(operand, str) or not operand:
        raise ValueError(f"{where} takes a folder path (a string), not {operand!r}")
    return operand.rstrip("/") or "/"


def parse_where_option(text: str) -> dict:
    """A CLI `--where` condition: `field=value`, `field!=value`, `field>=value`, `field>value`,
    `field<=value`, `field<value` (numbers are numbers, anything else a string)."""
    for symbol, op in ((">=", "$gte"), ("<=", "$lte"), ("!=", "$ne"), (">", "$gt"), ("<", "$lt"), ("=", "$eq")):
        if symbol in text:
            name, _, raw = text.partition(symbol)
            name, raw = name.strip(), raw.strip()
            if not name:
                break
            try:
                value: Any = json.loads(raw) if raw and raw[0] in "-0123456789" else raw
                if not isinstance(value, (int, float)):
                    value = raw
            except ValueError:
                value = raw
            return {name: {op: value}}
    raise ValueError(f"--where takes field=value (or != >= > <= <), not {text!r}")
