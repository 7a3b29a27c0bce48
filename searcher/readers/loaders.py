"""Turn files into documents.

One reader per format. A reader never raises on bad input: it yields the documents it can
and reports what it had to skip (with a reason a person can act on), so that one broken
file never stops a run.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from searcher.readers.documents import Document, Skipped, TooLarge, check_chars
from searcher.readers.html_text import html_to_text
from searcher.readers.office import read_docx, read_epub, read_pptx
from searcher.readers.pdf import read_pdf
from searcher.sanitize import clean_metadata, clean_text, is_blank

DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024
TEXT_COLUMNS = ("text", "body", "content", "abstract", "passage")
ID_COLUMNS = ("id", "_id", "doc_id", "docid")


DEFAULT_FILE_TIMEOUT = 60.0  # seconds one file's extraction may take before it is skipped
# Per-file bounds, checked while a file is read (in its worker, under --file-timeout) and
# before any of its text is chunked: chunking and encoding cost grows with the text, and a
# 1.2 MB PDF whose page tree lists one page 200,000 times made 141k chunks. A file over one
# is skipped with the reason. Characters: by default as many as --max-file-mb allows bytes,
# so that no text file under the size limit is refused, but a PDF or zip-packaged document
# cannot unpack to more.
DEFAULT_MAX_PAGES = 10_000  # PDF pages, PPTX slides, EPUB chapters


class LoadOptions:
    """Knobs for the readers (CSV columns, size, page and character limits), for walking folders (symlinks) and for
    reading in worker processes: `workers` processes (0: in this process, with no time limit)
    and `file_timeout` seconds a file may take."""

    def __init__(
        self,
        csv_text_column: str | None = None,
        csv_id_column: str | None = None,
        csv_title_column: str | None = None,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        workers: int | None = None,
        file_timeout: float = DEFAULT_FILE_TIMEOUT,
        ocr: bool = False,
        follow_links: bool = False,
        within: Iterable[str | os.PathLike] | None = None,
        max_pages: int = DEFAULT_MAX_PAGES,
        max_chars: int | None = None,
    ):
        self.csv_text_column = csv_text_column
        self.csv_id_column = csv_id_column
        self.csv_title_column = csv_title_column
        self.max_file_bytes = max_file_bytes
        self.max_pages = max_pages
        self.max_chars = max_file_bytes if max_chars is None else max_chars  # a file's text, all its documents
        self.workers = min(4, os.cpu_count() or 1) if workers is None else max(0, int(workers))
        self.file_timeout = float(file_timeout)
        self.ocr = ocr  # PDF pages without a text layer go through OCRmyPDF (searcher/readers/pdf.py)
        # Symlinks out of the tree walked are not followed unless follow_links; `within`: the
        # folders a path given may not lead out of (a watcher's), see walk_paths.
        self.follow_links = follow_links
        self.within = list(within) if within else None


def decode_bytes(data: bytes) -> str:
    """Decode file contents: UTF-8 (with or without BOM), UTF-16 with BOM, else Latin-1-ish.

    Raises ValueError for data that looks binary, so the caller can skip it with a reason.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:8192]:
        raise ValueError("binary file (contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    # Not UTF-8: cp1252 covers most legacy Western text; fall back to latin-1 which never fails.
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    control = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\t\n\r\f")
    if control > max(8, len(text[:8192]) // 100):
        raise ValueError("binary file (not valid text in UTF-8 or a legacy encoding)")
    return text


def markdown_title(text: str) -> str:
    """The first ATX heading of a Markdown text, or '': up to 3 spaces, 1-6 '#', a space, the
    title, then optional closing '#'s. Parsed with string methods, in time linear in the line:
    the regular expression it replaces (`^\\s{0,3}#{1,6}\\s+(.*?)\\s*#*\\s*$`) took cubic time
    on a long line of spaces."""
    for line in text.splitlines():
        rest = line.lstrip()
        if len(line) - len(rest) > 3:
            continue
        hashes = len(rest) - len(rest.lstrip("#"))
        rest = rest[hashes:]
        if not 1 <= hashes <= 6 or not rest[:1].isspace():
            continue
        title = rest.strip().rstrip("#").rstrip()
        if title:
            return title
    return ""


def _read_plain(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
    text = decode_bytes(data)
    title = markdown_title(text) if path.suffix.lower() in (".md", ".markdown") else ""
    yield Document(id=str(path), text=text, title=title or path.name, source=str(path))


def _read_html(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
    title, text = html_to_text(decode_bytes(data))
    if is_blank(text):
        yield Skipped(str(path), "HTML page has no visible text")
        return
    yield Document(id=str(path), text=text, title=title or path.name, source=str(path))


def _split_record(record: dict, id_fallback: str, source: str, id_keys, text_keys, title_key="title"):
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


def _read_jsonl(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
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
        doc = _split_record(record, where, str(path), ("id", "_id"), ("text",))
        if doc is None:
            yield Skipped(where, "no 'text' field")
            continue
        doc.metadata.setdefault("line", lineno)
        yield doc


# Metadata keys that say where a row sits in its file (JSON Lines line, CSV row). They are
# kept with the document but are not its content: a row that moves is not a changed row.
LOCATION_KEYS = ("line", "row")
# What every file document gets in its metadata (a reader's own key of the same name wins):
# type (the extension), size in bytes, modified (ISO 8601, UTC) and folder. They describe
# the file, not its content: a change to them alone costs no encoding (searcher/index/writer.py).
FILE_KEYS = ("type", "size", "modified", "folder")


def file_facts(path: Path, size: int, mtime: float) -> dict:
    return {"type": path.suffix.lower().lstrip("."), "size": size,
            "modified": datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds"),
            "folder": str(path.parent)}


def _read_csv(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
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
        doc = _split_record(row, f"{path}:{rowno}", str(path), id_cols, (text_col,), title_col)
        doc.metadata.setdefault("row", rowno)
        yield doc


def _mail_date(value) -> str | None:
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return when.isoformat() if when.tzinfo else when.isoformat() + "+00:00"


def _message_documents(message, doc_id: str, source: str, opts: LoadOptions) -> Iterator[Document | Skipped]:
    """One e-mail: the message itself (subject as title; from, to, cc, date, message_id as
    metadata), then each attachment in a supported format (other than e-mail) as a document of
    its own, `<message id>/<n>-<file name>`, with the message as its `parent`. A message that
    cannot be read is skipped alone: the other messages of its mailbox are still read."""
    try:
        body = message.get_body(preferencelist=("plain", "html"))
        text = ""
        if body is not None:
            text = body.get_content()
            if body.get_content_subtype() == "html":
                text = html_to_text(text)[1]
        metadata = {}
        for header, key in (("From", "from"), ("To", "to"), ("Cc", "cc"), ("Message-ID", "message_id")):
            if message.get(header):
                metadata[key] = str(message.get(header))
        date = _mail_date(message.get("Date")) if message.get("Date") else None
        if date:
            metadata["date"] = date
        subject = str(message.get("Subject") or "").strip()
        attachments = list(message.iter_attachments())
    except Exception as e:  # the email package raises many kinds on broken headers and parts
        yield Skipped(f"{source} [{doc_id}]", f"unreadable message ({type(e).__name__}: {e})")
        return
    yield Document(id=doc_id, text=text, title=subject or "(no subject)", source=source, metadata=metadata)
    for number, part in enumerate(attachments, 1):
        name = part.get_filename() or f"attachment-{number}"
        reader = READERS.get(Path(name).suffix.lower())
        if reader is None or reader in (_read_eml, _read_mbox):
            continue
        part_id = f"{doc_id}/{number}-{name}"
        try:
            data = part.get_payload(decode=True) or b""
            for item in reader(Path(name), data, opts):
                if isinstance(item, Document):
                    own = "" if item.id == name else f"#{item.id}"  # a row of a CSV or JSON Lines attachment
                    item.id, item.source = part_id + own, source
                    item.metadata = {**item.metadata, "parent": doc_id, "attachment": name,
                                     "type": Path(name).suffix.lower().lstrip(".")}
                else:
                    item = Skipped(f"{source} [{part_id}]", item.reason)
                yield item
        except TooLarge as e:
            yield Skipped(f"{source} [{part_id}]", str(e))
        except Exception as e:
            yield Skipped(f"{source} [{part_id}]", f"unreadable attachment ({type(e).__name__}: {e})")


def _read_eml(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
    import email
    from email import policy

    yield from _message_documents(email.message_from_bytes(data, policy=policy.default), str(path), str(path), opts)


# The time is looked for in a lookahead, which never backtracks once it matched: as
# `[^\n]*\d{1,2}:\d{2}[^\n]*\r?\n`, a long last line full of times took quadratic time.
_MBOX_SEPARATOR = re.compile(rb"(?:\A|\n\n|\r\n\r\n)From \S+ (?=[^\n]*?\d{1,2}:\d{2})[^\n]*\n")


def _read_mbox(path: Path, data: bytes, opts: LoadOptions) -> Iterator[Document | Skipped]:
    """One document per message, in the file's order: `<path>#<n>` (n from 1)."""
    import email
    from email import policy

    if not data.startswith(b"From "):
        yield Skipped(str(path), "not an mbox file (an mbox starts each message with a 'From ' line)")
        return
    # mailbox.mbox wants a file; the bytes are split on its separator lines instead: "From "
    # at the start of the file or after a blank line, with an address and a time (a body line
    # that begins with "From " is not one; mbox writers escape those as ">From ").
    messages = _MBOX_SEPARATOR.split(data)
    found = 0
    for raw in messages:
        if not raw.strip():
            continue
        found += 1
        message = email.message_from_bytes(re.sub(rb"(?m)^>(>*From )", rb"\1", raw), policy=policy.default)
        yield from _message_documents(message, f"{path}#{found}", str(path), opts)
    if not found:
        yield Skipped(str(path), "no messages (an mbox starts each one with a 'From ' line)")


READERS: dict[str, Callable[[Path, bytes, LoadOptions], Iterator[Document | Skipped]]] = {
    ".txt": _read_plain,
    ".text": _read_plain,
    ".md": _read_plain,
    ".markdown": _read_plain,
    ".html": _read_html,
    ".htm": _read_html,
    ".jsonl": _read_jsonl,
    ".ndjson": _read_jsonl,
    ".csv": _read_csv,
    ".tsv": _read_csv,
    ".pdf": read_pdf,
    ".docx": read_docx,
    ".pptx": read_pptx,
    ".epub": read_epub,
    ".eml": _read_eml,
    ".mbox": _read_mbox,
}


def _inside(path: str, folder: str) -> bool:
    """Whether real path `path` is `folder` (a real path) or lies under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def walk_paths(paths: Iterable[str | os.PathLike], follow_links: bool = False,
               within: Iterable[str | os.PathLike] | None = None) -> Iterator[Path | Skipped]:
    """Yield files under the given files/folders, recursively, in a stable order.

    A symlink is followed while it stays inside the tree being walked: the folder given, or
    the one of `within` that holds the path given (a watcher's folders, whose events name
    paths inside them). One that leads out of it is reported, and nothing beyond it is read
    or listed, unless `follow_links`. A folder reached twice (a symlink loop) is reported,
    not followed.
    """
    trees = [Path(os.path.abspath(w)) for w in within] if within else []
    for raw in paths:
        root = Path(raw)
        try:
            root.stat()
        except OSError as e:
            if root.is_symlink():
                reason = "symlink loop" if e.errno == errno.ELOOP else "broken symlink (its target is missing)"
            else:
                reason = "no such file or folder" if e.errno == errno.ENOENT else f"cannot read ({e.strerror or e})"
            yield Skipped(str(root), reason)
            continue
        top, bound = root, None
        if not follow_links:
            absolute = Path(os.path.abspath(root))
            top = next((t for t in trees if t == absolute or t in absolute.parents), root)
            bound = os.path.realpath(top)
            if not _inside(os.path.realpath(root), bound):
                yield Skipped(str(root), _out_of_tree(top))
                continue
        if root.is_file():
            yield root
            continue
        if not root.is_dir():
            yield Skipped(str(root), "not a regular file or folder (a FIFO, socket or device)")
            continue
        seen: set[tuple[int, int]] = set()
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                st = folder.stat()
            except OSError as e:
                yield Skipped(str(folder), f"cannot read folder ({e.strerror or e})")
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                yield Skipped(str(folder), "symlink loop (folder already visited)")
                continue
            seen.add(key)
            try:
                entries = sorted(folder.iterdir(), key=lambda p: p.name)
            except OSError as e:
                yield Skipped(str(folder), f"cannot read folder ({e.strerror or e})")
                continue
            subfolders = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if (bound is not None and entry.is_symlink() and (entry.is_dir() or entry.is_file())
                            and not _inside(os.path.realpath(entry), bound)):
                        yield Skipped(str(entry), _out_of_tree(top))
                    elif entry.is_dir():
                        subfolders.append(entry)
                    elif entry.is_file():
                        yield entry
                    else:
                        yield Skipped(str(entry), "not a regular file (broken link or special file)")
                except OSError as e:
                    yield Skipped(str(entry), f"cannot read ({e.strerror or e})")
            stack.extend(reversed(subfolders))


def _out_of_tree(top: Path) -> str:
    return f"symlink that leads out of {top}; not followed (--follow-links follows it)"


def load_file(path: Path, opts: LoadOptions | None = None) -> Iterator[Document | Skipped]:
    """Read one file into documents; every failure becomes a Skipped with its reason."""
    opts = opts or LoadOptions()
    path = Path(os.path.abspath(path))  # a file's document id is its absolute path
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        yield Skipped(str(path), f"unsupported file type '{path.suffix or '(none)'}'")
        return
    try:
        stat = path.stat()
        size = stat.st_size
        if size > opts.max_file_bytes:
            yield Skipped(str(path), f"file is {size:,} bytes, over the {opts.max_file_bytes:,}-byte limit")
            return
        data = path.read_bytes()
    except OSError as e:
        yield Skipped(str(path), f"cannot read ({e.strerror or e})")
        return
    if not data.strip():
        yield Skipped(str(path), "empty file")
        return
    chars = kept = 0
    try:
        facts = file_facts(path, size, stat.st_mtime)
        for item in reader(path, data, opts):
            if isinstance(item, Document):
                chars += len(item.text)
                check_chars(chars, opts)
                kept += 1
                item.metadata = {**facts, **item.metadata}
                item = clean_document(item)
            if isinstance(item, Document) and is_blank(item.text):
                yield Skipped(item.source if item.id == item.source else f"{item.source} [{item.id}]",
                              "no text (only whitespace or control characters)")
            else:
                yield item
    except TooLarge as e:  # the documents of the file before it were yielded
        yield Skipped(str(path), f"{e}{f'; the {kept:,} documents before that point were kept' if kept else ''}")
    except (ValueError, UnicodeError, RecursionError) as e:
        yield Skipped(str(path), str(e))
    except Exception as e:  # a reader's bug on one odd file must not stop the run
        yield Skipped(str(path), f"cannot read ({type(e).__name__}: {e})")


def clean_document(doc: Document) -> Document:
    """The document with its strings cleaned and metadata JSON-safe (searcher/sanitize.py)."""
    return Document(id=clean_text(doc.id), text=clean_text(doc.text), title=clean_text(doc.title),
                    source=clean_text(doc.source), metadata=clean_metadata(doc.metadata))


def _read_in_worker(path: Path, opts: LoadOptions) -> list[Document | Skipped]:
    """What a worker sends back: plain documents and skips, never an exception (one the parent
    could not rebuild would break the pool)."""
    try:
        return list(load_file(path, opts))
    except BaseException as e:
        return [Skipped(str(path), f"cannot read ({type(e).__name__}: {e})")]


def load_paths(paths: Iterable[str | os.PathLike], opts: LoadOptions | None = None) -> Iterator[Document | Skipped]:
    """Documents from every supported file under `paths`, with Skipped entries for the rest, in
    the order the files are found.

    Files are read by `opts.workers` worker processes (pebble's ProcessPool), a few files ahead
    of what is yielded, so extraction runs beside encoding and on every core; a file whose
    reader runs past `opts.file_timeout` seconds (a PDF that makes the parser loop) or kills its
    process is skipped with that reason, and the worker is replaced."""
    opts = opts or LoadOptions()
    if opts.workers == 0:
        for item in walk_paths(paths, opts.follow_links, opts.within):
            if isinstance(item, Skipped):
                yield item
            else:
                yield from load_file(item, opts)
        return
    import multiprocessing
    from collections import deque
    from concurrent.futures import TimeoutError as Timeout

    import pebble

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the workers never tokenize
    window: deque = deque()  # (path or None, future or [items]) in the order found
    with pebble.ProcessPool(max_workers=opts.workers, context=multiprocessing.get_context("fork")) as pool:
        def drain(keep: int):
            while len(window) > keep:
                path, work = window.popleft()
                if isinstance(work, list):
                    yield from work
                    continue
                try:
                    # The oldest file in the window is being read, or done: bound the wait anyway.
                    yield from work.result(timeout=opts.file_timeout + 60)
                except Timeout:
                    yield Skipped(str(path), f"reading took over {opts.file_timeout:g} s (--file-timeout); skipped")
                except pebble.ProcessExpired as e:
                    yield Skipped(str(path), f"the reader's process died ({e}); skipped")
                except Exception as e:  # a reader's own failure, raised in the worker
                    yield Skipped(str(path), f"cannot read ({type(e).__name__}: {e})")

        try:
            for item in walk_paths(paths, opts.follow_links, opts.within):
                if isinstance(item, Skipped):
                    window.append((None, [item]))
                else:
                    try:
                        work = pool.schedule(_read_in_worker, (item, opts), timeout=opts.file_timeout)
                    except RuntimeError:  # the pool broke: read this file here
                        work = list(load_file(item, opts))
                    window.append((item, work))
                yield from drain(keep=4 * opts.workers)
            yield from drain(keep=0)
        except BaseException:  # the consumer failed or stopped: do not wait for the files ahead
            pool.stop()
            raise
