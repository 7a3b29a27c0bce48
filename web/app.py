"""The Flask app factory: one open index, the page, the JSON API and safe error responses."""

from __future__ import annotations

import os

from flask import Flask, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from .server import MAX_BODY_BYTES
from .service import SearchService

SECURITY_HEADERS = {
    # Defence in depth behind Jinja's escaping: no inline script, nothing from elsewhere.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class DocIdConverter(BaseConverter):
    """Matches any document id, slashes included (file ids are absolute paths)."""

    regex = ".+"
    part_isolating = False


def create_app(index=None, index_dir: str | os.PathLike | None = None, device: str = "auto",
               precision: str = "auto") -> Flask:
    """Build the app around `index`, or open the index in `index_dir` (model loaded once, here)."""
    if index is None:
        from searcher.index import DEFAULT_INDEX_DIR, Index

        index = Index.open(index_dir or DEFAULT_INDEX_DIR, device=device, precision=precision)
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, DEBUG=False, PROPAGATE_EXCEPTIONS=False)
    app.json.sort_keys = False
    app.jinja_env.autoescape = True  # every template, whatever its name
    app.extensions["searcher"] = SearchService(index)
    app.url_map.converters["docid"] = DocIdConverter

    from .api import bp as api_bp
    from .views import bp as views_bp

    app.register_blueprint(api_bp)
    app.register_blueprint(views_bp)

    @app.before_request
    def refuse_large_bodies():
        if (request.content_length or 0) > MAX_BODY_BYTES:
            abort(413)

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        return error_response(e.code or 500, e.name, e.description or "")

    @app.errorhandler(Exception)
    def unexpected_error(e: Exception):
        app.logger.exception("error while answering %s %s", request.method, request.path)
        return error_response(500, "Internal Server Error", "Something went wrong on the server; it has been logged.")

    return app


def wants_json() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


def error_response(status: int, name: str, message: str):
    """A JSON error under /api, the error page elsewhere; never a stack trace."""
    if wants_json():
        return json_error(status, message, name)
    return render_template("error.html", status=status, name=name, message=message), status


def json_error(status: int, message: str, name: str | None = None):
    code = (name or "").lower().replace(" ", "_") or "error"
    response = jsonify({"error": code, "message": message, "status": status})
    response.status_code = status
    return response
