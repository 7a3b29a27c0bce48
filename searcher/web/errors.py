"""Error responses for the whole app: a JSON body under /api, the error page elsewhere, never a
stack trace. Used by the app factory (`register_error_handlers`) and by the API blueprint
(`json_error`); this module imports nothing from app, api or views, so neither imports the other."""

from __future__ import annotations

import errno
import os
import re
import traceback
from pathlib import Path

from flask import Flask, current_app, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from searcher.errors import IndexIOError, ShardUnavailable

from searcher.web.service import IndexUnavailable

FULL = (errno.ENOSPC, errno.EDQUOT)  # a disk (or quota) with no room: 507
RETRY_AFTER = "1"  # seconds: the service tries to reopen a broken index on the next request
LOGGED_FRAMES = 30  # a logged traceback keeps its innermost frames (a RecursionError has a thousand)
LOGGED_CHARS = 20_000  # and is cut to this many characters: a request never logs more than about this


def json_error(status: int, message: str, name: str | None = None):
    """{"error": "not_found", "message": ..., "status": 404} with that status."""
    code = (name or "").lower().replace(" ", "_") or "error"
    if openai_path():  # OpenAI's shape, which its clients read the reason from
        body = {"error": {"message": message, "type": code, "param": None, "code": status}}
    else:
        body = {"error": code, "message": message, "status": status}
    response = jsonify(body)
    response.status_code = status
    return response


def openai_path() -> bool:
    """Whether the request is for the OpenAI-compatible API (/v1: searcher/web/embeddings.py)."""
    path = re.sub("/{2,}", "/", request.path)
    return path == "/v1" or path.startswith("/v1/")


def wants_json() -> bool:
    """Whether the request is for the API, /v1 or /metrics (so its errors are JSON, and a
    request without a key gets 401, not the sign-in page)."""
    path = re.sub("/{2,}", "/", request.path)  # //api//x is an API path that is not found
    return path in ("/api", "/metrics") or path.startswith("/api/") or openai_path()


def error_response(status: int, name: str, message: str):
    """A JSON error under /api, the error page elsewhere; never a stack trace."""
    if wants_json():
        return json_error(status, message, name)
    return render_template("error.html", status=status, name=name, message=message), status


def without_index_paths(message: str) -> str:
    """`message` with the served indexes' folders left out: a file in one by its name in the
    folder, the folder itself by the index's name (clients are shown no server paths)."""
    for name, service in (current_app.extensions.get("searcher.indexes") or {}).items():
        path = service.index.path
        if path is None:
            continue
        for folder in sorted({str(path), str(Path(path).resolve())}, key=len, reverse=True):
            message = message.replace(folder + os.sep, "").replace(folder, f"{name!r}")
    return message


def disk_error_message(e: IndexIOError) -> str:
    """What a client is told of a write (or read) the disk refused: IndexIOError's reason, and
    what was written (`written`, set by SearchService on a write)."""
    reason = without_index_paths(e.strerror or str(e))
    full = "The server's disk is full"
    if not e.in_write:  # a read that needed room (SQLite's -shm file)
        return f"{full if e.errno in FULL else 'The disk failed'}: {reason}"
    refused = full if e.errno in FULL else "The disk refused the write"
    written = e.written
    if written is False:
        return f"{refused}, and nothing was written: {reason}"
    if written is True:
        return (f"{refused} after part of the write was committed (that part is searchable; sending the "
                f"same write again adds the rest): {reason}")
    return f"{refused}: {reason}"


def register_error_handlers(app: Flask) -> None:
    """Answer an unreadable index with a 503, a disk that refuses a write with a 507 (full) or
    503, HTTP errors with their status, anything else with a logged 500."""

    @app.errorhandler(IndexUnavailable)
    def index_unavailable(e: IndexUnavailable):
        response = app.make_response(error_response(503, "Service Unavailable", str(e)))
        response.headers["Retry-After"] = RETRY_AFTER
        return response

    @app.errorhandler(ShardUnavailable)
    def shard_unavailable(e: ShardUnavailable):
        """What only a shard that does not answer could give (a document of it, the count)."""
        response = app.make_response(error_response(503, "Service Unavailable", f"A shard of the index did not "
                                                    f"answer: {e}. Try again shortly."))
        response.headers["Retry-After"] = RETRY_AFTER
        return response

    @app.errorhandler(IndexIOError)
    def disk_error(e: IndexIOError):
        """A full disk is a 507 (freeing space is the fix), another disk error a 503 to retry;
        the index itself still holds its last commit."""
        app.logger.error("the disk refused %s %s: %s", request.method, request.path, e)
        full = e.errno in FULL
        status, name = (507, "Insufficient Storage") if full else (503, "Service Unavailable")
        response = app.make_response(error_response(status, name, disk_error_message(e)))
        if not full:
            response.headers["Retry-After"] = RETRY_AFTER
        return response

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return error_response(e.code or 500, e.name, e.description or "")

    @app.errorhandler(Exception)
    def unexpected_error(e: Exception):
        trace = "".join(traceback.format_exception(e, limit=-LOGGED_FRAMES))
        if len(trace) > LOGGED_CHARS:
            trace = trace[:LOGGED_CHARS // 2] + "\n[... cut ...]\n" + trace[-LOGGED_CHARS // 2:]
        app.logger.error("error while answering %s %s\n%s", request.method, request.path[:200], trace.rstrip())
        return error_response(500, "Internal Server Error", "Something went wrong on the server; it has been logged.")
