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
    {"to": {"$has": ["ann@example.org", "bob@x.org"]}} a list holding one of the values (or a value equal to one)
    {"$or": [{"type": "pdf"}, {"pages": {"$gt": 10}}]}, {"$and": [...]}, {"$not": {...}}

A malformed filter (an unknown operator, a value of the wrong type, one past the limits below)
is a ValueError that says what is wrong. Values are always bound parameters, never SQL text;
an integer beyond SQLite's 64 bits is compared as a floating-point number (as SQLite stores
such a number in the metadata; as its decimal text against `id`).

Every caller (web, CLI, MCP, Python) gets the same limits, which keep SQLite within its
expression depth and parameter count and Python within its recursion limit: `$and`/`$or`/
`$not` nest at most MAX_DEPTH levels, objects and lists at most MAX_NESTING (JSON text is
checked before it is parsed: json.loads would recurse until a RecursionError), and a filter
holds at most MAX_CONDITIONS field conditions and MAX_VALUES values.

Searches evaluate filters in memory (searcher/search/filter_columns.py) with the same rules as this
SQL, which a test holds them to; the SQL answers what that cannot.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

COLUMNS = {"title": "coalesce(d.title, '')", "source": "coalesce(d.source, '')", "id": "d.id"}
COMPARISONS = {"$eq": "=", "$ne": "!=", "$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = (*COMPARISONS, "$in", "$nin", "$under", "$has")
MAX_DEPTH = 16  # $and, $or, $not inside one another
MAX_NESTING = 64  # JSON objects and lists inside one another, in all
MAX_CONDITIONS = 256  # field conditions (a field with one operator) in one filter
MAX_VALUES = 10_000  # values compared in one filter ($in and $nin lists count each value)
INT64 = (-2 ** 63, 2 ** 63 - 1)  # the integers SQLite binds as they are
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)  # strings (skipped) and brackets


def _cut(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _show(value: Any) -> str:
    """A value for an error message, cut short (a filter may be long)."""
    return _cut(repr(value))


def _scalar(value: Any, where: str, text_column: bool = False) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        if text_column:  # SQLite compares a number with a TEXT column as the number's text
            return str(value)
        try:
            return float(value)
        except OverflowError:  # beyond every float: above (or below) every number SQLite holds
            return math.inf if value > 0 else -math.inf
    if value is None or isinstance(value, (str, int, float)):
        return value
    raise ValueError(f"{where}: a value must be a string, number, true, false or null, not {_show(value)}")


def _field(name: Any) -> str:
    if not isinstance(name, str) or not name or name.startswith("$"):
        raise ValueError(f"unknown filter operator or field {_show(name)}: fields are names like 'type'; "
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
        raise ValueError(f"a filter is a JSON object such as {{\"type\": \"pdf\"}}, not {_show(where)}")
    check_nesting(where)
    params: list = []
    sql = _clause(where, params, 0, [0, 0])
    return sql, params


def check_nesting(value: Any) -> None:
    """ValueError when objects and lists nest more than MAX_NESTING levels (without recursing,
    so a filter thousands of levels deep, or one that contains itself, is refused too)."""
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_NESTING:
                raise ValueError(f"the filter nests objects and lists more than {MAX_NESTING} levels deep")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def loads_where(text: str) -> Any:
    """A filter from its JSON text (`?where=`, `--where-json`): ValueError when it is not JSON
    or nests more than MAX_NESTING levels, checked before json.loads, which would recurse into
    thousands of brackets until a RecursionError."""
    depth = 0
    for token in _JSON_TOKENS.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth > MAX_NESTING:
                raise ValueError(f"the filter nests objects and lists more than {MAX_NESTING} levels deep")
        elif bracket in "]}":
            depth -= 1
    return json.loads(text)


def _count(tally: list, conditions: int, values: int) -> None:
    """Add to [conditions, values] so far; ValueError past MAX_CONDITIONS or MAX_VALUES."""
    tally[0] += conditions
    tally[1] += values
    if tally[0] > MAX_CONDITIONS:
        raise ValueError(f"the filter has more than {MAX_CONDITIONS} conditions (a field with one operator each)")
    if tally[1] > MAX_VALUES:
        raise ValueError(f"the filter has more than {MAX_VALUES:,} values ($in and $nin lists included)")


def _clause(where: dict, params: list, depth: int, tally: list) -> str:
    if depth > MAX_DEPTH:
        raise ValueError(f"the filter nests $and, $or and $not more than {MAX_DEPTH} levels")
    if not where:
        return "1"
    parts = []
    for key, value in where.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
                raise ValueError(f"{key} takes a non-empty list of filters, not {_show(value)}")
            joined = f" {key[1:].upper()} ".join(f"({_clause(v, params, depth + 1, tally)})" for v in value)
            parts.append(f"({joined})")
        elif key == "$not":
            if not isinstance(value, dict):
                raise ValueError(f"$not takes a filter, not {_show(value)}")
            parts.append(f"NOT ({_clause(value, params, depth + 1, tally)})")
        else:
            parts.append(_condition(key, value, params, tally))
    return " AND ".join(parts)


def _condition(name: str, value: Any, params: list, tally: list) -> str:
    column = _field(name)
    if isinstance(column, tuple):  # a metadata key: its JSON path is a parameter too
        expr, path = column
        column_params = ["$." + path]
    else:
        expr, column_params = column, []
    text_column = column == "d.id"  # a table column of TEXT affinity (the others are expressions)
    if not isinstance(value, dict):
        value = {"$eq": value}
    if not value:
        raise ValueError(f"{_cut(name)}: an empty operator object")
    parts = []
    for op, operand in value.items():
        where = _cut(f"{name}.{op}")
        if op in COMPARISONS:
            _count(tally, 1, 1)
            operand = _scalar(operand, where, text_column)
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
                raise ValueError(f"{where} takes a non-empty list of values, not {_show(operand)}")
            _count(tally, 1, len(operand))
            values = [_scalar(v, where, text_column) for v in operand]
            marks = ",".join("?" * len(values))
            parts.append(f"{expr} {'NOT ' if op == '$nin' else ''}IN ({marks})")
            params.extend([*column_params, *values])
        elif op == "$has":
            values = operand if isinstance(operand, list) else [operand]
            if not values:
                raise ValueError(f"{where} takes a value or a non-empty list of values, not {_show(operand)}")
            _count(tally, 1, len(values))
            values = [_scalar(v, where, text_column) for v in values]
            if any(v is None for v in values):
                raise ValueError(f"{where}: null cannot be looked for in a list")
            marks = ",".join("?" * len(values))
            if column_params:  # a metadata key: a list's items, else the value itself (never NULL)
                parts.append(f"coalesce(CASE json_type(d.metadata, ?) WHEN 'array' THEN EXISTS (SELECT 1 FROM "
                             f"json_each(d.metadata, ?) WHERE json_each.value IN ({marks})) "
                             f"ELSE {expr} IN ({marks}) END, 0)")
                params.extend([*column_params, *column_params, *values, *column_params, *values])
            else:
                parts.append(f"coalesce({expr} IN ({marks}), 0)")
                params.extend(values)
        elif op == "$under":
            _count(tally, 1, 1)
            prefix = under_prefix(operand, where)
            below = prefix.rstrip("/") + "/"
            parts.append(f"(typeof({expr}) = 'text' AND ({expr} = ? OR substr({expr}, 1, ?) = ?))")
            params.extend([*column_params, *column_params, prefix, *column_params, len(below), below])
        else:
            raise ValueError(f"unknown filter operator {_show(op)} on {_show(name)}: use one of {', '.join(OPERATORS)}")
    return " AND ".join(parts)


def under_prefix(operand: Any, where: str = "$under") -> str:
    """The folder a `$under` names (trailing slashes dropped; "/" is the root). A path matches
    when it is that folder or starts with it and a slash, case and all (a text value only)."""
    if not isinstance(operand, str) or not operand:
        raise ValueError(f"{where} takes a folder path (a string), not {_show(operand)}")
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
    raise ValueError(f"--where takes field=value (or != >= > <= <), not {_show(text)}")
