"""One access line a request (logger `searcher.web.access`, INFO; searcher/logs.py writes it as
JSON with `--log-format json`), and the request id every response carries as `X-Request-Id`.

The line holds what an operator needs and nothing a client could use to sign in: the request
id, method, path (never the query string, which may hold anything a client put there), status,
duration in ms, the client's address (the real client behind a trusted proxy:
searcher/web/proxies.py), the ?index= name when it names a served index, and the generation a
search answered from. Never a header, a cookie, a form field or a query value.

An incoming `X-Request-Id` is kept (a proxy's id then follows the request through both logs)
when it is a short safe token: at most 40 letters, digits, `.`, `_`, `-`, so a key
(`srch_...`, 50+ characters) or a session token (43) never is one; any other gets a new id.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, current_app, g, request

log = logging.getLogger("searcher.web.access")

REQUEST_ID_HEADER = "X-Request-Id"
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,40}")
MAX_PATH_CHARS = 500  # a longer path is cut in the log


def request_id(incoming: str | None) -> str:
    """The id of this request: `incoming` (the client's X-Request-Id) when it is a short safe
    token, else a new random one."""
    if incoming and _SAFE_ID.fullmatch(incoming) and not incoming.lower().startswith("srch_"):
        return incoming
    return uuid.uuid4().hex


def note(**fields) -> None:
    """Add `fields` to this request's access line (a search's `generation`)."""
    g.setdefault("access_fields", {}).update(fields)


def served_index() -> str | None:
    """The request's ?index= when it names a served index (or is `*`); a name nobody serves is
    not logged (it is the client's text)."""
    raw = (request.args.get("index") or "").strip()
    services = current_app.extensions.get("searcher.indexes")
    return raw if raw == "*" or (services is not None and raw in services) else None


def install(app: Flask) -> None:
    """Time, identify and log every request of `app` (create_app calls this first, so the
    clock starts before any other hook and the line comes after all of them)."""

    @app.before_request
    def start_request():
        g.request_started = time.perf_counter()
        g.request_id = request_id(request.headers.get(REQUEST_ID_HEADER))

    @app.after_request
    def log_request(response):
        rid = g.get("request_id") or request_id(None)
        response.headers[REQUEST_ID_HEADER] = rid
        if log.isEnabledFor(logging.INFO):
            started = g.get("request_started")
            ms = round((time.perf_counter() - started) * 1000, 1) if started is not None else None
            path = request.path[:MAX_PATH_CHARS]
            fields = {"request_id": rid, "method": request.method, "path": path, "status": response.status_code,
                      "duration_ms": ms, "client": request.remote_addr}
            index = served_index()
            if index is not None:
                fields["index"] = index
            fields.update(g.get("access_fields") or {})
            log.info("%s %s %d %s ms", request.method, path, response.status_code, ms, extra=fields)
        return response
