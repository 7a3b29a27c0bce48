"""API keys without the web: the key file, the key ring a server checks keys against, and
`Access` (who a checked key says is asking). searcher/web/auth.py asks requests for them;
`searcher keys add|list|remove --file FILE` writes the file.

The key file, one key a line:

    # comment
    <id> sha256:<hex digest of the key> <scope> [<indexes>] [user=NAME] [groups=NAME,NAME]

`id` is a short random name (it is also part of the key, so a key says which line is its
own); `scope` is `read` (searches, documents, the pages), `admin` (also the write API and
/metrics) or `metrics` (/metrics only, for a Prometheus server: searcher/web/metrics.py). The
optional fourth field limits the key to some of the server's indexes (searcher/web/indexes.py):
comma-separated names (`notes,mail`), or `*` for every index (the same as leaving it out).
Such a key gets a 403 for any other index, `index=*` searches only its own, and
/api/indexes lists only those. A name the server does not serve is allowed (the limit
means "at most these"), so a key file can be shared by servers of different indexes.

`user=` and `groups=` say who holds a key, for documents that name their readers
(searcher/search/access.py, docs/access.md): a read key sees the documents without readers
and those whose readers name its user or one of its groups; a read key with neither sees only
documents without readers; an admin key sees every document (it can write and delete any).

A key is `srch_<id>_<secret>`, the secret `secrets.token_urlsafe(32)` (256 random bits).
Only its SHA-256 is stored. A slow, salted hash (scrypt, PBKDF2) is what passwords need,
because people choose guessable ones; a 256-bit random token has no guessable preimage,
salted or not, so it would only slow every request. The id in the key finds its line at
once, and the digests are compared with `hmac.compare_digest` (constant time). The server
reads the file again whenever it changes (one stat a request), so `searcher keys remove`
takes effect without a restart; a file that cannot be read then keeps the keys last read
(and logs why).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from searcher.search.access import Viewer

from searcher.web.names import check_index_name

log = logging.getLogger(__name__)

SCOPES = ("read", "admin", "metrics")
KEY_PREFIX = "srch"
HASH_SCHEME = "sha256"
ALL_INDEXES = "*"
FILE_HEADER = (
    "# searcher API keys: managed by `searcher keys add|list|remove --file FILE`.\n"
    "# <id> sha256:<digest of the key> <scope: read|admin|metrics> [<indexes: a,b or * for all>]"
    " [user=NAME] [groups=NAME,NAME]\n"
)
_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_DIGEST = re.compile(r"[0-9a-f]{64}")


class KeyFileError(ValueError):
    """The key file cannot be used; the message names the line and what is wrong."""


@dataclass(frozen=True)
class ApiKey:
    """One line of the key file: never the key itself, only its digest."""

    id: str
    digest: str  # hex SHA-256 of the whole key
    scope: str
    indexes: str = ALL_INDEXES  # `*`, or the comma-separated names of the only indexes it may use
    user: str | None = None  # who holds it (documents' `user:NAME` readers)
    groups: tuple[str, ...] = ()  # the groups they are in (documents' `group:NAME` readers)

    @property
    def index_limit(self) -> frozenset[str] | None:
        """The names of the indexes this key may use; None: every index."""
        return None if self.indexes == ALL_INDEXES else frozenset(self.indexes.split(","))

    def line(self) -> str:
        return f"{self.id} {HASH_SCHEME}:{self.digest} {self.scope}" + (
            "" if self.indexes == ALL_INDEXES and not (self.user or self.groups) else f" {self.indexes}") + (
            f" user={self.user}" if self.user else "") + (f" groups={','.join(self.groups)}" if self.groups else "")

    @property
    def viewer(self) -> Viewer | None:
        """Who this key reads documents as (searcher/search/access.py): None, every document,
        for an admin key; else its user and groups."""
        return None if self.scope == "admin" else Viewer(self.user, self.groups)

    def allows(self, needed: str) -> bool:
        """Whether this key may do what needs `needed` (a scope): admin may do all, the others their own."""
        return self.scope == "admin" or needed == self.scope


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def key_id(key: str) -> str | None:
    """The id a key carries (`srch_<id>_<secret>`), or None for anything else."""
    parts = key.split("_", 2)
    if len(parts) == 3 and parts[0] == KEY_PREFIX and _ID.fullmatch(parts[1]) and parts[2]:
        return parts[1]
    return None


def check_indexes(field: str | Iterable[str] | None) -> str:
    """A key's index limit as the key file writes it: `*`, or comma-separated index names
    (each as searcher/web/indexes.py names them, each once, in the order given); ValueError otherwise."""
    if field is None:
        return ALL_INDEXES
    names = field.split(",") if isinstance(field, str) else list(field)
    names = [n.strip() for n in names]
    if names == [ALL_INDEXES]:
        return ALL_INDEXES
    if not names or ALL_INDEXES in names:
        raise ValueError(f"the indexes are {ALL_INDEXES} (all) or comma-separated names, not {str(field)[:80]!r}")
    for name in names:
        check_index_name(name)
    return ",".join(dict.fromkeys(names))


def check_holder(user: str | None, groups: str | Iterable[str] | None) -> tuple[str | None, tuple[str, ...]]:
    """(user, groups) of a key as the key file writes them (checked names, groups sorted,
    each once); ValueError otherwise."""
    holder = Viewer(user or None, groups or ())
    return holder.user, holder.groups


def new_key(scope: str, taken: Iterable[str] = (), indexes: str | Iterable[str] | None = None,
            user: str | None = None, groups: str | Iterable[str] | None = None) -> tuple[ApiKey, str]:
    """A fresh key of `scope`, limited to `indexes` (None or `*`: all), held by `user` in
    `groups`: (its line, the key itself, to show once)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    limit = check_indexes(indexes)
    user, groups = check_holder(user, groups)
    if scope == "metrics" and limit != ALL_INDEXES:
        raise ValueError("a metrics key reads /metrics, which covers every index of the server: it takes no index limit")
    taken = set(taken)
    while True:
        kid = secrets.token_hex(4)
        if kid not in taken:
            break
    key = f"{KEY_PREFIX}_{kid}_{secrets.token_urlsafe(32)}"
    return ApiKey(kid, digest(key), scope, limit, user, groups), key


def parse_key_file(text: str, name: str = "the key file") -> list[ApiKey]:
    """The keys in a key file's text; KeyFileError names the first bad line."""
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        where = f"{name}:{number}"
        named = {}
        while len(fields) > 3 and fields[-1].startswith(("user=", "groups=")):
            key_name, _, value = fields.pop().partition("=")
            if key_name in named:
                raise KeyFileError(f"{where}: {key_name}= is given twice")
            named[key_name] = value
        if len(fields) not in (3, 4):
            raise KeyFileError(f"{where}: expected `<id> sha256:<digest> <scope> [<indexes>] [user=NAME] "
                               f"[groups=NAME,NAME]`, found {len(fields)} fields")
        kid, hashed, scope = fields[:3]
        indexes = fields[3] if len(fields) == 4 else ALL_INDEXES
        scheme, _, hexdigest = hashed.partition(":")
        if not _ID.fullmatch(kid):
            raise KeyFileError(f"{where}: the id must be 1 to 32 letters and digits, not {kid[:40]!r}")
        if kid in seen:
            raise KeyFileError(f"{where}: the id {kid} is used twice")
        if scheme != HASH_SCHEME or not _DIGEST.fullmatch(hexdigest):
            raise KeyFileError(f"{where}: the hash must be sha256:<64 hex digits>")
        if scope not in SCOPES:
            raise KeyFileError(f"{where}: the scope must be one of {', '.join(SCOPES)}, not {scope[:40]!r}")
        try:
            indexes = check_indexes(indexes)
            user, groups = check_holder(named.get("user"), named.get("groups"))
        except ValueError as e:
            raise KeyFileError(f"{where}: {e}") from None
        seen.add(kid)
        keys.append(ApiKey(kid, hexdigest, scope, indexes, user, groups))
    return keys


def read_key_file(path: str | os.PathLike) -> list[ApiKey]:
    """The keys in `path`; a missing file has none."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise KeyFileError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    return parse_key_file(text, str(path))


def write_key_file(path: str | os.PathLike, keys: Iterable[ApiKey]) -> None:
    """Replace `path` with these keys atomically (temp file, fsync, rename), readable by its owner only."""
    path = Path(path)
    body = FILE_HEADER + "".join(k.line() + "\n" for k in keys)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def add_key(path: str | os.PathLike, scope: str, indexes: str | Iterable[str] | None = None,
            user: str | None = None, groups: str | Iterable[str] | None = None) -> tuple[ApiKey, str]:
    """Add a new key of `scope` (limited to `indexes`, None: all; held by `user` in `groups`)
    to the file (created if missing); returns its line and the key."""
    keys = read_key_file(path)
    entry, key = new_key(scope, (k.id for k in keys), indexes, user, groups)
    write_key_file(path, [*keys, entry])
    return entry, key


def remove_key(path: str | os.PathLike, kid: str) -> bool:
    """Remove the key with id `kid` (a whole key is accepted too); whether it was there."""
    kid = key_id(kid) or kid
    keys = read_key_file(path)
    kept = [k for k in keys if k.id != kid]
    if len(kept) == len(keys):
        return False
    write_key_file(path, kept)
    return True


def file_identity(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


class KeyRing:
    """The keys a server accepts: `lookup(key)` -> its ApiKey or None, `check(key)` -> its scope.

    Made from a file (`KeyRing.from_file`), it reads the file again when it changes; made
    from a list (tests), it keeps that list."""

    def __init__(self, keys: Iterable[ApiKey], path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        self._keys = {k.id: k for k in keys}
        self._identity = file_identity(self.path) if self.path is not None else None
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "KeyRing":
        path = Path(path)
        return cls(read_key_file(path), path)

    def __len__(self) -> int:
        return len(self._current())

    def _current(self) -> dict[str, ApiKey]:
        if self.path is None or file_identity(self.path) == self._identity:
            return self._keys
        with self._lock:
            identity = file_identity(self.path)
            if identity != self._identity:
                try:
                    self._keys = {k.id: k for k in read_key_file(self.path)} if identity is not None else {}
                    log.warning("read the API keys again from %s: %d keys", self.path, len(self._keys))
                except KeyFileError as e:
                    log.error("keeping the API keys read before: %s", e)
                self._identity = identity
            return self._keys

    def lookup(self, key: str) -> ApiKey | None:
        kid = key_id(key)
        entry = self._current().get(kid) if kid else None
        if entry is None:
            hmac.compare_digest(digest(key), "0" * 64)  # the same work either way
            return None
        return entry if hmac.compare_digest(digest(key), entry.digest) else None

    def check(self, key: str) -> str | None:
        entry = self.lookup(key)
        return entry.scope if entry else None

    def get(self, kid: str) -> ApiKey | None:
        """The key with this id, if it is still in the ring (sessions check it on every request)."""
        return self._current().get(kid)


@dataclass(frozen=True)
class Access:
    """Who is asking: the key's id and scope, how it came (`key`: a Bearer header; `session`:
    the page's cookie), the indexes it may use (None: all) and whom it reads documents as
    (`viewer`: searcher/search/access.py; None: every document). In `g.access` for the request."""

    key_id: str
    scope: str
    via: str
    indexes: frozenset[str] | None = None
    viewer: Viewer | None = None

    @classmethod
    def of(cls, key: ApiKey, via: str) -> "Access":
        return cls(key.id, key.scope, via, key.index_limit, key.viewer)
