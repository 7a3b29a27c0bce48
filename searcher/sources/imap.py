"""IMAP mailboxes: `searcher index imaps://user@host/INBOX`, each message a document as a `.eml`
file is (its attachments in a format the readers read documents of their own).

The password never travels in the URL or on the command line: it comes from a file only its
owner can read (`credentials_file`, the CLI's --credentials-file: mode 0600 or stricter, any
other is refused) or from an environment variable (`SEARCHER_IMAP_PASSWORD` unless
`credentials_env` names another). It is kept out of the stored URL, of
`repr`, and of every error message.

What is new is decided by UIDVALIDITY and UIDs (RFC 3501): a message's key is its IMAP URL
(RFC 5092: `imaps://user@host/INBOX;UIDVALIDITY=v/;UID=n`) and its version `v:n`; a message
never changes under a UID, so a key seen before is unchanged, and a mailbox whose UIDVALIDITY
changed has only new keys (the old ones absent: every message new). Messages are fetched with
BODY.PEEK[], which leaves them unread.

imaps:// is TLS from the first byte (port 993); imap:// upgrades with STARTTLS (port 143), and
talks in the clear only when told to (`starttls=False`, for a server on loopback).
"""

from __future__ import annotations

import imaplib
import os
import re
import socket
import ssl
from datetime import datetime, timezone
from typing import Iterator
from urllib.parse import quote, unquote, urlsplit

from searcher.readers.documents import Skipped, check_readers
from searcher.sources.base import Item, SourceError, check_secret_file

PASSWORD_ENV = "SEARCHER_IMAP_PASSWORD"  # where the password is, unless credentials_env names another
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
FETCH_BATCH = 500  # messages listed a FETCH command


class MailboxError(SourceError):
    """The mailbox cannot be listed (no password, a refused login, no such mailbox, a server
    without TLS), or one message cannot be read (MessageGone); the message never holds the
    password."""


class MessageGone(MailboxError):
    """read(item) of a message that is no longer there: expunged, or the mailbox's
    UIDVALIDITY changed since the listing."""


class _Secret:
    """A password held so that neither repr nor vars() shows it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<password>"


def read_password_file(path: str | os.PathLike) -> str:
    """The password in `path` (its first line), refused unless the file is a regular file only
    its owner may read or write (mode 0600 or 0400: `check_secret_file`)."""
    try:
        path = check_secret_file(path, "password file")
    except SourceError as e:
        raise MailboxError(str(e)) from None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as e:
        raise MailboxError(f"cannot read the password file {path} ({type(e).__name__})") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise MailboxError(f"the password file {path} is empty")
    return password


def imap_utf7(name: str) -> str:
    """A mailbox name in IMAP's modified UTF-7 (RFC 3501 5.1.3): ASCII as is, '&' as '&-',
    other characters as '&' + modified base64 of UTF-16 + '-'."""
    import base64

    out, pending = [], []

    def flush():
        if pending:
            encoded = base64.b64encode("".join(pending).encode("utf-16-be")).decode().rstrip("=").replace("/", ",")
            out.append(f"&{encoded}-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    flush()
    return "".join(out)


def _quoted(mailbox: str) -> str:
    return '"' + imap_utf7(mailbox).replace("\\", "\\\\").replace('"', '\\"') + '"'


_FETCH_LINE = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_DATE = re.compile(rb'INTERNALDATE "([^"]+)"')


class Mailbox:
    """One IMAP mailbox, as a source (`scheme`, `url`, `options`, `items`, `read`, `close`):
    items() lists its messages (Item, or Skipped for one over `max_bytes`), read(item)
    gives a message's bytes (RFC 822, as a .eml file holds them).

    `url`: `imaps://user@host[:port]/MAILBOX` or `imap://...` (MAILBOX percent-encoded, INBOX
    when left out); the user stays in `url` and the keys (two users' INBOXes on one server are
    two mailboxes). The password: `password` (from Python only), else the first line of
    `credentials_file` when given (mode 0600; the CLI's --credentials-file), else the
    environment variable `credentials_env` (SEARCHER_IMAP_PASSWORD). `ca_file`: the
    certificates to trust (a server with a certificate of its own making); `starttls`: for
    imap://, False talks in the clear."""

    scheme = "imaps"  # or "imap", as the URL says

    def __init__(self, url: str, *, password: str | None = None, credentials_env: str = PASSWORD_ENV,
                 credentials_file: str | os.PathLike | None = None, starttls: bool = True,
                 ca_file: str | os.PathLike | None = None, timeout: float = 60.0,
                 max_bytes: int = DEFAULT_MAX_BYTES):
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            raise MailboxError("the URL's port is not a number: imaps://user@host[:port]/MAILBOX") from None
        if self.scheme not in ("imap", "imaps"):
            raise MailboxError("an IMAP mailbox's URL is imaps://user@host/MAILBOX (or imap://)")
        if parts.password is not None:
            raise MailboxError("the URL holds a password: give it in the environment variable "
                               f"{credentials_env} or a credentials file (mode 0600) instead, never in the URL")
        if not parts.username or not parts.hostname:
            raise MailboxError(f"the URL names no user or no host: {self.scheme}://user@host/MAILBOX")
        self.user = unquote(parts.username)
        # Its messages are its owner's (docs/access.md): `user:LOGIN`, unless `--readers` says
        # otherwise; a login that is no reader name (a space, a backslash) gives none.
        try:
            self.readers = check_readers([f"user:{self.user}"])
        except ValueError:
            self.readers = None
        self.host = parts.hostname
        self.port = port or (993 if self.scheme == "imaps" else 143)
        path = unquote(parts.path.lstrip("/")).split(";", 1)[0].rstrip("/")
        self.mailbox = path or "INBOX"
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = f"{quote(self.user, safe='')}@{host}" + (f":{port}" if port else "")
        self.url = f"{self.scheme}://{netloc}/{quote(self.mailbox, safe='/')}"
        self.starttls, self.timeout, self.max_bytes = starttls, timeout, max_bytes
        self.ca_file = str(ca_file) if ca_file else None
        self.credentials_env, self.credentials_file = credentials_env, credentials_file
        # What may be recorded with an index to open the mailbox again: no secret in it.
        self.options = {k: v for k, v in (
            ("credentials_env", credentials_env if credentials_env != PASSWORD_ENV else None),
            ("credentials_file", str(credentials_file) if credentials_file is not None else None),
            ("starttls", None if starttls else False), ("ca_file", self.ca_file),
            ("timeout", timeout if timeout != 60.0 else None),
            ("max_bytes", max_bytes if max_bytes != DEFAULT_MAX_BYTES else None)) if v is not None}
        self._password = _Secret(password) if password is not None else None
        self._client: imaplib.IMAP4 | None = None
        self._exists = 0
        self.uidvalidity: int | None = None

    def __repr__(self) -> str:
        return f"Mailbox({self.url!r})"

    # -- the connection ----------------------------------------------------------------------

    def _secret(self) -> str:
        if self._password is not None:
            return self._password.get()
        if self.credentials_file is not None:
            return read_password_file(self.credentials_file)
        value = os.environ.get(self.credentials_env)
        if value:
            return value
        raise MailboxError(f"no password for {self.url}: set the environment variable {self.credentials_env} "
                           "or give a password file (mode 0600)")

    def _scrub(self, text: str, secret: str) -> str:
        return text.replace(secret, "<password>") if secret else text

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def connect(self) -> imaplib.IMAP4:
        """Log in and select the mailbox read-only (EXAMINE); kept open until close()."""
        if self._client is not None:
            return self._client
        secret = self._secret()
        client = None
        try:
            if self.scheme == "imaps":
                client = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=self._context(), timeout=self.timeout)
            else:
                client = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    if "STARTTLS" not in client.capabilities:
                        raise MailboxError(f"{self.host} offers no STARTTLS: use imaps://, or starttls=False to send "
                                           "the password in the clear (a server on loopback only)")
                    client.starttls(ssl_context=self._context())
            client.login(self.user, secret)
            self._exists = self._examine(client)
        except MailboxError as e:
            self._drop(client)
            raise MailboxError(self._scrub(str(e), secret)) from None
        except (imaplib.IMAP4.error, OSError, ssl.SSLError, socket.timeout, ValueError, EOFError) as e:
            self._drop(client)
            detail = self._scrub(f"{type(e).__name__}: {e}", secret)
            raise MailboxError(f"cannot read {self.url} ({detail})") from None
        self._client = client
        return client

    def _examine(self, client: imaplib.IMAP4) -> int:
        """Select the mailbox read-only (EXAMINE): its UIDVALIDITY kept, its message count returned."""
        status, data = client.select(_quoted(self.mailbox), readonly=True)
        if status != "OK":
            raise MailboxError(f"no mailbox {self.mailbox!r} on {self.host} "
                               f"({(data[0] or b'').decode('utf-8', 'replace') if data else status})")
        validity = client.response("UIDVALIDITY")[1]
        if not validity or not validity[0]:
            raise MailboxError(f"{self.host} sent no UIDVALIDITY for {self.mailbox!r}")
        self.uidvalidity = int(validity[0])
        try:
            return int(data[0])
        except (TypeError, ValueError, IndexError):
            raise MailboxError(f"{self.host} sent no message count for {self.mailbox!r}") from None

    @staticmethod
    def _drop(client) -> None:
        if client is None:
            return
        try:
            client.logout()
        except Exception:
            pass

    def close(self) -> None:
        client, self._client = self._client, None
        self._drop(client)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the source ----------------------------------------------------------------------------

    def key(self, uid: int) -> str:
        return f"{self.url};UIDVALIDITY={self.uidvalidity}/;UID={uid}"

    def items(self) -> Iterator[Item | Skipped]:
        """Every message in the mailbox, by UID (the mailbox as it is when the listing starts),
        listed FETCH_BATCH messages a command (by sequence number: no answer line grows with
        the mailbox, which imaplib would refuse past a megabyte)."""
        fresh = self._client is None
        client = self.connect()
        try:
            exists = self._exists if fresh else self._examine(client)
        except (imaplib.IMAP4.error, OSError) as e:
            raise MailboxError(f"cannot list {self.url} ({type(e).__name__}: {e})") from None
        for low in range(1, exists + 1, FETCH_BATCH):
            high = min(exists, low + FETCH_BATCH - 1)
            try:
                status, data = client.fetch(f"{low}:{high}", "(UID RFC822.SIZE INTERNALDATE)")
            except (imaplib.IMAP4.error, OSError) as e:
                raise MailboxError(f"cannot list {self.url} ({type(e).__name__}: {e})") from None
            if status != "OK":
                raise MailboxError(f"cannot list {self.url} (FETCH: {status})")
            facts = {}
            for line in data:
                line = line[0] if isinstance(line, tuple) else line
                if not line:
                    continue
                uid = _FETCH_LINE.search(line)
                if uid:
                    size = _SIZE.search(line)
                    date = _DATE.search(line)
                    facts[int(uid.group(1))] = (int(size.group(1)) if size else None,
                                                date.group(1).decode() if date else None)
            for uid in sorted(facts):
                size, date = facts[uid]
                key = self.key(uid)
                if size is not None and size > self.max_bytes:
                    yield Skipped(key, f"message is {size:,} bytes, over the {self.max_bytes:,}-byte limit")
                    continue
                metadata = {"mailbox": self.mailbox, "uid": uid, "uidvalidity": self.uidvalidity}
                yield Item(key, f"{self.uidvalidity}:{uid}", f"{uid}.eml", size=size,
                               modified=_internaldate(date), folder=self.url, metadata=metadata)

    def read(self, item: Item) -> bytes:
        """The message's bytes (BODY.PEEK[]: it stays unread). MessageGone when the message is
        gone (expunged) or the mailbox's UIDVALIDITY is no longer the item's. A connection the
        server closed meanwhile is opened again, once."""
        validity, _, uid = item.version.partition(":")
        for attempt in (1, 2):
            client = self.connect()
            if validity != str(self.uidvalidity):
                raise MessageGone(f"{item.key}: the mailbox's UIDVALIDITY changed (now {self.uidvalidity}); "
                                  "list it again")
            try:
                status, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
                break
            except (imaplib.IMAP4.abort, OSError):  # the server closed an idle connection: once more
                self._client = None
                self._drop(client)
                if attempt == 2:
                    raise
        if status != "OK":
            raise MailboxError(f"{item.key}: cannot fetch ({status})")
        for part in data:
            if isinstance(part, tuple) and len(part) == 2 and isinstance(part[1], bytes):
                return part[1]
        raise MessageGone(f"{item.key}: no such message (expunged)")


def _internaldate(value: str | None) -> str | None:
    if not value:
        return None
    try:
        when = datetime.strptime(value.strip(), "%d-%b-%Y %H:%M:%S %z")
        return when.astimezone(timezone.utc).isoformat(timespec="seconds")
    except ValueError:
        return None
