"""Error responses for the whole app: a JSON body under /api, the error page elsewhere, never a
stack trace. Used by the app factory (`register_error_handlers`) and by the API blueprint
(`json_error`); this module imports nothing from app, api or views, so neither imports the other."""

from __future__ import annotations

import re
import traceback

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from searcher.errors import ShardUnavailable

from .service import IndexUnavailable

RETRY_AFTER = "1"  # seconds: the service tries to reopen a broken index on the next request
LOGGED_FRAMES = 30  # a logged traceback keeps its innermost frames (a RecursionError has a thousand)
LOGGED_CHARS = 20_000  # and is cut to this many characters: a request never logs more than about this


def json_error(status: int, message: str, name: str | None = None):
    """{"error": "not_found", "message": ..., "status": 404} with that status."""
    code = (name or "").lower().replace(" ", "_") or "error"
    response = jsonify({"error": code, "message": message, "status": status})
    response.status_code = status
    return response


def wants_json() -> bool:
    """Whether the request is for the API (so its errors are JSON)."""
    path = re.sub("/{2,}", "/", request.path)  # //api//x is an API path that is not found
    return path == "/api" or path.startswith("/api/")


def error_response(status: int, name: str, message: str):
    """A JSON error under /api, the error page elsewhere; never a stack trace."""
    if wants_json():
        return json_error(status, message, name)
    return render_template("error.html", status=status, name=name, message=message), status


def register_error_handlers(app: Flask) -> None:
    """Answer an unreadable index with a 503, HTTP errors with their status, anything else
    with a logged 500."""

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
