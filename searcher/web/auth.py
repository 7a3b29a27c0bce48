"""Asking every request for an API key (searcher/web/keys.py: the key file and the key ring):
the request hook (`create_app(keys=...)` installs it; without keys the app asks nothing), the
page's sign-in sessions, and the limit on failed sign-ins.

A request shows its key in an `Authorization: Bearer KEY` header, or comes from a page signed
in with one. The page: a request without a key is redirected to /sign-in, a form that takes a
key and sets an HttpOnly, SameSite=Strict cookie (Secure over https) holding a random session
token, kept in this process's memory for SESSION_SECONDS. A signed-in page can read the API
(its cookie goes with same-site requests only), but never write: writes need the key itself
in an `Authorization: Bearer` header, which no other site can make a browser send, so no
page elsewhere can write through a signed-in person's browser (no CSRF). Failed attempts
(a wrong key in the form or in an Authorization header) are limited per client address (behind
a `--trusted-proxy`, the real client's: searcher/web/proxies.py):
FAILURE_LIMIT a FAILURE_WINDOW, then 429 with Retry-After; sign-ins with a good key too,
SIGN_IN_LIMIT a SIGN_IN_WINDOW. A key holds at most MAX_SESSIONS_PER_KEY sessions (its own
oldest ends first), so one key's holder cannot sign out anyone else.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, url_for

from searcher.web.errors import error_response, wants_json
from searcher.web.keys import Access, KeyRing, digest
# For searcher/cli, which imports them from here (searcher.web.keys is their home):

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
READING_POSTS = frozenset({"embeddings.embeddings"})  # POSTs that only read: POST /v1/embeddings encodes


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
        self.total = 0  # attempts counted since the start, every client's (/metrics)

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
            self.total += 1
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
    return Access.of(key, "key")


def session_access() -> Access | None:
    limits = auth()
    kid = limits.sessions.key_id(request.cookies.get(COOKIE))
    key = limits.keys.get(kid) if kid else None
    return Access.of(key, "session") if key else None


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
    if access.scope == "metrics" and request.blueprint != "metrics":
        return forbidden("A metrics key may read /metrics only.")
    if request.method not in SAFE_METHODS and request.endpoint not in READING_POSTS:
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
    if key.scope == "metrics":
        return no_store((render_template("sign_in.html", next=target,
                                         error="A metrics key reads /metrics only: it cannot sign in to the page."), 403))
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
