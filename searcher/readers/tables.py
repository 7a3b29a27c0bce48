"""JSON Lines and CSV files: one document a line or row (BEIR's corpus.jsonl reads as it is)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from searcher.readers.documents import Document, Skipped
from searcher.readers.text import decode_bytes

if TYPE_CHECKING:
    from searcher.readers.options import LoadOptions


TEXT_COLUMNS = ("text", "body", "content", "abstract", "passage")


ID_COLUMNS = ("id", "_id", "doc_id", "docid")


def split_record(record: dict, id_fallback: str, source: str, id_keys, text_keys, title_key="title"):
    """Build a Document from a row/record: pick id, title and text; keep the rest as metadata."""
    rid = next((record[k] for k in id_keys if k in record and str(record[k]).strip()), None)
    text_key = next((k for k in text_keys if k in record), None)
    if text_key is None:
        return None
    doc_id = str(rid).strip() if rid is not None else id_fallback
    text = record.get(text_key)
    text = "" if text is None else str(text)
    title = record.get(title_key) or ""
    used = {text_key, title_key, *id_keys}
    metadata = {k: v for k, v in record.items() if k not in used}
    return Document(id=doc_id, text=text, title=str(title), source=source, metadata=metadata)


def read_jsonl(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
    text = decode_bytes(data)
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            yield Skipped(where, f"malformed JSON ({e.msg})")
            continue
        if not isinstance(record, dict):
            yield Skipped(where, "line is not a JSON object")
            continue
        doc = split_record(record, where, str(path), ("id", "_id"), ("text",))
        if doc is None:
            yield Skipped(where, "no 'text' field")
            continue
        doc.metadata.setdefault("line", lineno)
        yield doc


def read_csv(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
    text = decode_bytes(data)
    # csv refuses fields over 128 KiB by default; no field is longer than its file, which the
    # file size bound (--max-file-mb) already limits.
    csv.field_size_limit(max(csv.field_size_limit(), min(len(text) + 1, 2**31 - 1)))
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    header = reader.fieldnames or []
    text_col = opts.csv_text_column or next((c for c in TEXT_COLUMNS if c in header), None)
    if text_col is None or text_col not in header:
        wanted = opts.csv_text_column or " or ".join(TEXT_COLUMNS)
        yield Skipped(str(path), f"CSV has no text column ({wanted}); header is {header}")
        return
    id_cols = (opts.csv_id_column,) if opts.csv_id_column else ID_COLUMNS
    title_col = opts.csv_title_column or "title"
    rowno = 1
    while True:
        line = reader.reader.line_num  # the csv reader's own: DictReader's is not moved by an error
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            rowno += 1
            # The reader starts again on the next line: only this row is lost.
            yield Skipped(f"{path}:{rowno}", f"malformed CSV row ({e}); skipped, the other rows are read")
            if reader.reader.line_num == line:
                return
            continue
        rowno += 1
        row = {k: v for k, v in row.items() if k is not None}
        doc = split_record(row, f"{path}:{rowno}", str(path), id_cols, (text_col,), title_col)
        doc.metadata.setdefault("row", rowno)
        yield doc
