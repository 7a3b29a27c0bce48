"""API keys: the key file, the key ring that checks a key, the page's sign-in sessions, the
limit on failed sign-ins, and the request hook that asks every request for a key
(`create_app(keys=...)` installs it; without keys the app asks nothing, as before).

The key file, one key a line (`searcher keys add|list|remove --file FILE` writes it):

    # comment
    <id> sha256:<hex digest of the key> <scope> [<indexes>]

`id` is a short random name (it is also part of the key, so a key says which line is its
own); `scope` is `read` (searches, documents, the pages) or `admin` (also the write API). The
optional fourth field limits the key to some of the server's indexes (searcher/web/indexes.py):
comma-separated names (`notes,mail`), or `*` for every index (the same as leaving it out).
Such a key gets a 403 for any other index, `index=*` searches only its own, and
/api/indexes lists only those. A name the server does not serve is allowed (the limit
means "at most these"), so a key file can be shared by servers of different indexes.

A key is `srch_<id>_<secret>`, the secret `secrets.token_urlsafe(32)` (256 random bits).
Only its SHA-256 is stored. A slow, salted hash (scrypt, PBKDF2) is what passwords need,
because people choose guessable ones; a 256-bit random token has no guessable preimage,
salted or not, so it would only slow every request. The id in the key finds its line at
once, and the digests are compared with `hmac.compare_digest` (constant time). The server
reads the file again whenever it changes (one stat a request), so `searcher keys remove`
takes effect without a restart; a file that cannot be read then keeps the keys last read
(and logs why).

The page: a request without a key is redirected to /sign-in, a form that takes a key and sets
an HttpOnly, SameSite=Strict cookie (Secure over https) holding a random session token,
kept in this process's memory for SESSION_SECONDS. A signed-in page can read the API (its
cookie goes with same-site requests only), but never write: writes need the key itself
in an `Authorization: Bearer` header, which no other site can make a browser send, so no
page elsewhere can write through a signed-in person's browser (no CSRF). Failed attempts
(a wrong key in the form or in an Authorization header) are limited per client address:
FAILURE_LIMIT a FAILURE_WINDOW, then 429 with Retry-After; sign-ins with a good key too,
SIGN_IN_LIMIT a SIGN_IN_WINDOW. A key holds at most MAX_SESSIONS_PER_KEY sessions (its own
oldest ends first), so one key's holder cannot sign out anyone else.
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
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, url_for

from searcher.web.errors import error_response, wants_json
from searcher.web.indexes import check_index_name

log = logging.getLogger(__name__)

SCOPES = ("read", "admin")
KEY_PREFIX = "srch"
HASH_SCHEME = "sha256"
ALL_INDEXES = "*"
COOKIE = "searcher_session"
SESSION_SECONDS = 12 * 3600
MAX_SESSIONS = 10_000  # in all: past it, the oldest session of the key with the most ends
MAX_SESSIONS_PER_KEY = 100  # past it, the oldest session of that key ends (never another key's)
FAILURE_LIMIT = 5  # failed sign-ins a client may make per window...
FAILURE_WINDOW = 60.0  # ...seconds, before it gets 429
SIGN_IN_LIMIT = 20  # sign-ins (with a good key) a client may make per window...
SIGN_IN_WINDOW = 60.0  # ...seconds, before it gets 429
MAX_CLIENTS = 10_000  # addresses the limiter remembers
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")  # what a read key may do; anything else needs admin
FILE_HEADER = (
    "# searcher API keys: managed by `searcher keys add|list|remove --file FILE`.\n"
    "# <id> sha256:<digest of the key> <scope: read|admin> [<indexes: a,b or * for all>]\n"
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

    @property
    def index_limit(self) -> frozenset[str] | None:
        """The names of the indexes this key may use; None: every index."""
        return None if self.indexes == ALL_INDEXES else frozenset(self.indexes.split(","))

    def line(self) -> str:
        return f"{self.id} {HASH_SCHEME}:{self.digest} {self.scope}" + (
            "" if self.indexes == ALL_INDEXES else f" {self.indexes}")

    def allows(self, needed: str) -> bool:
        return self.scope == "admin" or needed == "read"


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


def new_key(scope: str, taken: Iterable[str] = (), indexes: str | Iterable[str] | None = None) -> tuple[ApiKey, str]:
    """A fresh key of `scope`, limited to `indexes` (None or `*`: all): (its line, the key
    itself, to show once)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    limit = check_indexes(indexes)
    taken = set(taken)
    while True:
        kid = secrets.token_hex(4)
        if kid not in taken:
            break
    key = f"{KEY_PREFIX}_{kid}_{secrets.token_urlsafe(32)}"
    return ApiKey(kid, digest(key), scope, limit), key


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
        if len(fields) not in (3, 4):
            raise KeyFileError(f"{where}: expected `<id> sha256:<digest> <scope> [<indexes>]`, "
                               f"found {len(fields)} fields")
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
        except ValueError as e:
            raise KeyFileError(f"{where}: {e}") from None
        seen.add(kid)
        keys.append(ApiKey(kid, hexdigest, scope, indexes))
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


def add_key(path: str | os.PathLike, scope: str, indexes: str | Iterable[str] | None = None) -> tuple[ApiKey, str]:
    """Add a new key of `scope` (limited to `indexes`, None: all) to the file (created if
    missing); returns its line and the key."""
    keys = read_key_file(path)
    entry, key = new_key(scope, (k.id for k in keys), indexes)
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


class Sessions:
    """Sign-in sessions of the page, in memory: a random token -> (key id, when it ends).

    Stored by the token's digest, so a lookup's timing says nothing about stored tokens.
    A session ends after `lifetime` seconds, on sign-out, or when its key is removed. A key
    holds at most `per_key` sessions (a new one ends that key's oldest), so no key holder can
    sign out the holders of other keys; past `limit` in all, the oldest session of the key
    that holds the most ends."""

    def __init__(self, lifetime: float = SESSION_SECONDS, limit: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic, per_key: int = MAX_SESSIONS_PER_KEY):
        self.lifetime = lifetime
        self.limit = limit
        self.per_key = per_key
        self.clock = clock
        self._sessions: OrderedDict[str, tuple[str, float]] = OrderedDict()  # oldest first
        self._by_key: dict[str, OrderedDict[str, None]] = {}  # key id -> its sessions' digests, oldest first
        self._lock = threading.Lock()

    def start(self, kid: str) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock()
            while self._sessions:  # the ended ones first (oldest first: they end in that order)
                oldest, (_, ends) = next(iter(self._sessions.items()))
                if ends > now:
                    break
                self._drop(oldest)
            hashed = digest(token)
            self._sessions[hashed] = (kid, now + self.lifetime)
            own = self._by_key.setdefault(kid, OrderedDict())
            own[hashed] = None
            while len(own) > self.per_key:
                self._drop(next(iter(own)))
            while len(self._sessions) > self.limit:
                most = max(len(v) for v in self._by_key.values())
                self._drop(next(h for h, (k, _) in self._sessions.items() if len(self._by_key[k]) == most))
        return token

    def count(self, kid: str) -> int:
        """How many sessions the key `kid` holds (ended ones included until they are dropped)."""
        with self._lock:
            return len(self._by_key.get(kid, ()))

    def _drop(self, hashed: str) -> None:
        found = self._sessions.pop(hashed, None)
        if found is None:
            return
        own = self._by_key.get(found[0])
        if own is not None:
            own.pop(hashed, None)
            if not own:
                del self._by_key[found[0]]

    def key_id(self, token: str | None) -> str | None:
        if not token:
            return None
        with self._lock:
            found = self._sessions.get(digest(token))
            if found is None:
                return None
            kid, ends = found
            if self.clock() >= ends:
                self._drop(digest(token))
                return None
            return kid

    def end(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._drop(digest(token))


class FailureLimiter:
    """At most `limit` failed attempts per client in any `window` seconds (also used for
    sign-ins that succeed: `Auth.sign_ins`)."""

    def __init__(self, limit: int = FAILURE_LIMIT, window: float = FAILURE_WINDOW,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = MAX_CLIENTS):
        self.limit, self.window, self.clock, self.max_clients = limit, window, clock, max_clients
        self._failures: OrderedDict[str, deque] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int:
        """0 when `client` may try now, else the seconds until it may (for Retry-After)."""
        with self._lock:
            times = self._recent(client)
            if times is None or len(times) < self.limit:
                return 0
            return max(1, int(times[0] + self.window - self.clock() + 0.999))

    def record(self, client: str) -> None:
        """Count an attempt that is limited though it succeeded (a sign-in: `Auth.sign_ins`)."""
        self.failed(client)

    def failed(self, client: str) -> None:
        with self._lock:
            times = self._recent(client)
            if times is None:
                times = self._failures[client] = deque()
            times.append(self.clock())
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)

    def _recent(self, client: str) -> deque | None:
        times = self._failures.get(client)
        if times is None:
            return None
        cutoff = self.clock() - self.window
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times


@dataclass
class Auth:
    """What create_app(keys=...) keeps in app.extensions["searcher.auth"]."""

    keys: KeyRing
    sessions: Sessions
    limiter: FailureLimiter
    sign_ins: FailureLimiter  # sign-ins that started a session, per client address


@dataclass(frozen=True)
class Access:
    """Who is asking: the key's id and scope, how it came (`key`: a Bearer header; `session`:
    the page's cookie), and the indexes it may use (None: all). In `g.access` for the request."""

    key_id: str
    scope: str
    via: str
    indexes: frozenset[str] | None = None


def auth() -> Auth | None:
    return current_app.extensions.get("searcher.auth")


def client_address() -> str:
    return request.remote_addr or "?"


def with_headers(response, **headers):
    response = current_app.make_response(response)
    for name, value in headers.items():
        response.headers[name.replace("_", "-")] = value
    return response


def unauthorized(message: str):
    return with_headers(error_response(401, "Unauthorized", message), WWW_Authenticate='Bearer realm="searcher"')


def too_many(wait: int):
    message = f"Too many failed attempts from this address; try again in {wait} seconds."
    return with_headers(error_response(429, "Too Many Requests", message), Retry_After=str(wait))


def forbidden(message: str):
    return error_response(403, "Forbidden", message)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never another host."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")) or \
            any(ord(c) < 32 or c == "\\" for c in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def here() -> str:
    """This request's path and query, for the sign-in page to come back to."""
    query = request.query_string.decode("latin-1")
    return request.path + (f"?{query}" if query else "")


def bearer_access(header: str):
    """Access from an Authorization header, or the error response to send."""
    limits = auth()
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return unauthorized("The Authorization header must be `Bearer KEY`.")
    wait = limits.limiter.retry_after(client_address())
    if wait:
        return too_many(wait)
    key = limits.keys.lookup(token)
    if key is None:
        limits.limiter.failed(client_address())
        return unauthorized("This API key is not valid (or has been removed).")
    return Access(key.id, key.scope, "key", key.index_limit)


def session_access() -> Access | None:
    limits = auth()
    kid = limits.sessions.key_id(request.cookies.get(COOKIE))
    key = limits.keys.get(kid) if kid else None
    return Access(key.id, key.scope, "session", key.index_limit) if key else None


def require_key():
    """The app's before_request hook when it has keys: every request but the sign-in page's
    and the static files' shows a key (header or session), with the scope it needs."""
    if request.blueprint == "auth" or request.endpoint == "static":
        return None
    header = request.headers.get("Authorization")
    if header is not None:
        access = bearer_access(header)
        if not isinstance(access, Access):
            return access
    else:
        access = session_access()
    if access is None:
        if wants_json():
            return unauthorized("This server needs an API key: send `Authorization: Bearer KEY`.")
        if request.method in ("GET", "HEAD"):
            return redirect(url_for("auth.sign_in", next=here()), 303)
        return unauthorized("Sign in first.")
    if request.method not in SAFE_METHODS:
        if access.scope != "admin":
            return forbidden("This needs an admin key; this key can only read.")
        if access.via != "key":
            return forbidden("Writes need an admin key in an `Authorization: Bearer KEY` header; "
                             "a signed-in page can only read.")
    g.access = access
    return None


def require_admin():
    """For the write API's blueprint: an admin key in a Bearer header, and with no keys at all
    (a server started without --api-keys) a 403 that says how to enable writes."""
    access = g.get("access")
    if auth() is None:
        return forbidden("The write API needs API keys: start the server with "
                         "`searcher serve --api-keys FILE` and send an admin key as `Authorization: Bearer KEY`.")
    if access is None or access.scope != "admin" or access.via != "key":
        return forbidden("This needs an admin key in an `Authorization: Bearer KEY` header.")
    return None


def same_origin() -> bool:
    """False when the browser says the form was posted from another site: its Sec-Fetch-Site
    header (current browsers), else its Origin. (With this app's no-referrer policy, browsers
    send `Origin: null` even from its own pages, so a null Origin decides nothing.)"""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.host and parts.scheme == request.scheme


bp = Blueprint("auth", __name__)


def no_store(response):
    response = current_app.make_response(response)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/sign-in")
def sign_in():
    target = safe_next(request.args.get("next"))
    if session_access() is not None:
        return redirect(target, 303)
    return no_store(render_template("sign_in.html", next=target))


@bp.post("/sign-in")
def sign_in_post():
    limits = auth()
    target = safe_next(request.form.get("next"))
    if not same_origin():
        return forbidden("This sign-in form was sent from another site.")
    failed_wait = limits.limiter.retry_after(client_address())
    wait = failed_wait or limits.sign_ins.retry_after(client_address())
    if wait:
        message = f"Too many {'failed ' if failed_wait else ''}sign-ins from this address; try again in {wait} seconds."
        return no_store(with_headers((render_template("sign_in.html", next=target, error=message), 429),
                                     Retry_After=str(wait)))
    key = limits.keys.lookup(request.form.get("key", "").strip())
    if key is None:
        limits.limiter.failed(client_address())
        return no_store((render_template("sign_in.html", next=target,
                                         error="That key is not valid (or has been removed)."), 401))
    limits.sign_ins.record(client_address())
    token = limits.sessions.start(key.id)
    response = redirect(target, 303)
    response.set_cookie(COOKIE, token, max_age=int(limits.sessions.lifetime), path="/", httponly=True,
                        samesite="Strict", secure=request.is_secure)
    return no_store(response)


@bp.post("/sign-out")
def sign_out():
    if not same_origin():
        return forbidden("This sign-out form was sent from another site.")
    auth().sessions.end(request.cookies.get(COOKIE))
    response = redirect(url_for("auth.sign_in"), 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=request.is_secure)
    return no_store(response)


def install(app: Flask, keys: KeyRing, sessions: Sessions | None = None,
            limiter: FailureLimiter | None = None, sign_ins: FailureLimiter | None = None) -> Auth:
    """Ask every request of `app` for one of `keys` (create_app calls this first, so the
    check runs before any other request hook but the Host check)."""
    state = Auth(keys, sessions or Sessions(), limiter or FailureLimiter(),
                 sign_ins or FailureLimiter(SIGN_IN_LIMIT, SIGN_IN_WINDOW))
    app.extensions["searcher.auth"] = state
    app.before_request(require_key)
    app.register_blueprint(bp)

    @app.context_processor
    def signed_in():
        return {"access": g.get("access")}

    @app.after_request
    def private(response):
        if g.get("access") is not None:  # what a key opened is for that key's holder: no shared caches
            response.headers.setdefault("Cache-Control", "private")
            response.vary.update(("Authorization", "Cookie"))
        return response

    return state
