"""E-mail: .eml files and mbox mailboxes, a document a message, each attachment in a format
the readers read a document of its own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

from searcher.readers.documents import Document, Skipped, TooLarge
from searcher.readers.html_text import html_to_text

if TYPE_CHECKING:
    from searcher.readers.options import LoadOptions

# A reader of one format; `readers` maps an attachment's suffix to one (searcher/readers/formats.py)
Reader = Callable[[Path, bytes, "LoadOptions"], Iterator[Document | Skipped]]


def mail_date(value) -> str | None:
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return when.isoformat() if when.tzinfo else when.isoformat() + "+00:00"


def message_documents(message, doc_id: str, source: str, opts: LoadOptions,
                      readers: Mapping[str, Reader]) -> Iterator[Document | Skipped]:
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
        date = mail_date(message.get("Date")) if message.get("Date") else None
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
        reader = readers.get(Path(name).suffix.lower())
        if reader is None:
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


def read_eml(path: Path, data: bytes, opts: LoadOptions, readers: Mapping[str, Reader]) -> Iterator[Document | Skipped]:
    import email
    from email import policy

    yield from message_documents(email.message_from_bytes(data, policy=policy.default), str(path), str(path), opts, readers)


# The time is looked for in a lookahead, which never backtracks once it matched: as
# `[^\n]*\d{1,2}:\d{2}[^\n]*\r?\n`, a long last line full of times took quadratic time.
_MBOX_SEPARATOR = re.compile(rb"(?:\A|\n\n|\r\n\r\n)From \S+ (?=[^\n]*?\d{1,2}:\d{2})[^\n]*\n")


def read_mbox(path: Path, data: bytes, opts: LoadOptions, readers: Mapping[str, Reader]) -> Iterator[Document | Skipped]:
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
        yield from message_documents(message, f"{path}#{found}", str(path), opts, readers)
    if not found:
        yield Skipped(str(path), "no messages (an mbox starts each one with a 'From ' line)")
