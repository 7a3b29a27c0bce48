"""The Flask app factory: one open index or several named ones (searcher/web/indexes.py), the page,
the JSON API and safe error responses (those from `errors`)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import math
import os
from typing import Iterable, Mapping
from urllib.parse import unquote_to_bytes, urlsplit, urlunsplit

from flask import Flask, abort, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.routing import BaseConverter

from searcher.search.facets import DEFAULT_FACETS
from searcher.hosts import HostRule

from searcher.web.about import bp as about_bp
from searcher.web import access_log
from searcher.web.api import bp as api_bp
from searcher.web.auth import install as install_auth
from searcher.web.corpus_map import bp as map_bp
from searcher.web.embeddings import bp as embeddings_bp
from searcher.web.errors import error_response, register_error_handlers
from searcher.web.keys import KeyRing
from searcher.web.indexes import ALL, Services, allowed_names, default_for, link_index, requested
from searcher.web.indexes import bp as indexes_bp
from searcher.web.limits import MAX_BODY_BYTES, MAX_EMBED_BYTES, MAX_WRITE_BYTES
from searcher.web.metrics import Metrics
from searcher.web.names import folder_name
from searcher.web.proxies import TrustedProxies, parse_trusted_proxies
from searcher.web.service import SearchService
from searcher.web.suggest import bp as suggest_bp
from searcher.web.views import bp as views_bp
from searcher.web.writes import bp as writes_bp

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


def finite(value):
    """`value` with every NaN and infinity, however deeply nested, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


class FiniteJSONProvider(DefaultJSONProvider):
    """JSON as the standard defines it: NaN and infinities (which Python's json writes as the
    invalid tokens NaN and Infinity, e.g. from stored metadata) become null."""

    def dumps(self, obj, **kwargs):
        kwargs.setdefault("allow_nan", False)  # anything missed fails loudly, never invalid JSON
        return super().dumps(finite(obj), **kwargs)


def relative_location(location: str) -> str:
    """A redirect target without scheme and host: Werkzeug builds redirect URLs from the Host
    header, which the client chooses. Leading slashes are merged, so it cannot become a
    scheme-relative //other.host URL either."""
    parts = urlsplit(location)
    path = "/" + parts.path.lstrip("/")
    return urlunsplit(("", "", path, parts.query, parts.fragment))


def url_not_utf8() -> str | None:
    """Why the request's path or query string is not UTF-8 once percent-decoded, or None.

    Werkzeug would decode such bytes with replacement characters (or keep %E9 as text), and
    search for something nobody typed. The WSGI environ holds the raw bytes as latin-1.
    """
    env = request.environ
    for name, raw in (("path", env.get("PATH_INFO", "")), ("query string", env.get("QUERY_STRING", ""))):
        try:
            data = raw.encode("latin-1")
            if name == "query string":
                data = unquote_to_bytes(data)
            data.decode("utf-8")
        except UnicodeError:
            return (f"the URL's {name} is not valid UTF-8: percent-encode its text as UTF-8 "
                    f"(é is %C3%A9)")
    return None


def body_limit(max_write_bytes: int) -> int:
    """The largest body this request may have: `max_write_bytes` for POST /api/documents (the
    write API), MAX_EMBED_BYTES for POST /v1/embeddings, MAX_BODY_BYTES for everything else."""
    if request.method == "POST" and request.path == "/api/documents":
        return max_write_bytes
    if request.method == "POST" and request.path == "/v1/embeddings":
        return MAX_EMBED_BYTES
    return MAX_BODY_BYTES


def ui_folder() -> Path:
    """The page's templates and static files: web/ in the checkout, installed as searcher.web.ui."""
    return Path(str(importlib.resources.files("searcher.web.ui")))


def create_app(index=None, index_dir: str | os.PathLike | None = None, device: str = "auto",
               precision: str = "auto", facets: tuple[str, ...] = DEFAULT_FACETS,
               keys: KeyRing | None = None, max_write_bytes: int = MAX_WRITE_BYTES,
               indexes: Mapping[str, object] | None = None,
               allowed_hosts: HostRule | Iterable[str] = (), backup_dir: str | os.PathLike | None = None,
               trusted_proxies: Iterable[str] = (), batch_wait_ms: float | None = None) -> Flask:
    """Build the app around `index`, or open the index in `index_dir` (model loaded once, here),
    or serve several: `indexes` {name: open Index}, the first the default (searcher/web/indexes.py).
    A single index is named after its folder (`default` without one). `facets`: the fields
    the page lists beside its results. `keys`: the API keys every request must show
    (searcher/web/keys.py); None serves without keys, and refuses every write.
    `max_write_bytes`: the largest body of a POST /api/documents. `allowed_hosts`: the Host
    names answered besides the localhost forms and IP addresses (searcher/hosts.py; a HostRule
    as `searcher serve` makes it, with the address it listens on), against DNS rebinding.
    `backup_dir`: where POST /api/backup writes (None: the server takes no backups).
    `trusted_proxies`: addresses or networks of reverse proxies whose X-Forwarded-For names the
    client (searcher/web/proxies.py); from anyone else the header is ignored. `batch_wait_ms`:
    how long an encoder pass that is not full waits for more requests (searcher/encoding/queries.py;
    None leaves each model's queue as it is)."""
    if indexes is not None:
        if index is not None or index_dir is not None:
            raise ValueError("give `indexes` or one index (`index`, `index_dir`), not both")
        indexes = dict(indexes)
    else:
        if index is None:
            from searcher.index.facade import DEFAULT_INDEX_DIR
            from searcher.cluster.sharded import open_index

            index = open_index(index_dir or DEFAULT_INDEX_DIR, device=device, precision=precision)
        indexes = {folder_name(index.path): index}
    if batch_wait_ms is not None:
        from searcher.encoding.queries import get_encode_queue

        for idx in indexes.values():
            if getattr(idx, "encoder", None) is not None:
                get_encode_queue(idx.encoder, max_wait_ms=batch_wait_ms)
    metrics = Metrics()  # this app's own registry (searcher/web/metrics.py)
    services = Services({name: SearchService(idx, observer=metrics.observer(name))
                         for name, idx in indexes.items()})  # checks the names
    if len(services) > 1:
        for name, service in services.items():
            service.name = name
    ui = ui_folder()
    app = Flask(__name__, template_folder=str(ui / "templates"), static_folder=str(ui / "static"))
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, DEBUG=False, PROPAGATE_EXCEPTIONS=False,
                      SEARCHER_FACETS=tuple(facets), SEARCHER_MAX_WRITE_BYTES=int(max_write_bytes),
                      SEARCHER_BACKUP_DIR=Path(backup_dir) if backup_dir is not None else None)
    app.json = FiniteJSONProvider(app)
    app.json.sort_keys = False
    proxies = parse_trusted_proxies(trusted_proxies)
    app.config["SEARCHER_TRUSTED_PROXIES"] = proxies
    app.wsgi_app = TrustedProxies(app.wsgi_app, proxies)
    access_log.install(app)  # first of the request hooks: the clock starts before the others
    # Werkzeug answers //api//health with a redirect to the merged path, an absolute URL on
    # the Host header's host; without merging, such a path is just not found.
    app.url_map.merge_slashes = False
    app.jinja_env.autoescape = True  # every template, whatever its name
    app.extensions["searcher.indexes"] = services
    app.extensions["searcher"] = services[services.default]  # the default index's service
    app.url_map.converters["docid"] = DocIdConverter

    hosts = allowed_hosts if isinstance(allowed_hosts, HostRule) else HostRule(allowed=allowed_hosts)
    app.extensions["searcher.hosts"] = hosts

    @app.before_request
    def refuse_foreign_hosts():
        """First of all hooks, on every route (sign-in and static files too), keys or not."""
        refused = hosts.refusal(request.environ.get("HTTP_HOST"), request.headers.get("Origin"))
        if refused:
            status, reason = refused
            return error_response(status, "Misdirected Request" if status == 421 else "Forbidden", reason)
        return None

    if keys is not None:
        install_auth(app, keys)  # its check runs before the other request hooks but the one above
    app.register_blueprint(api_bp)
    app.register_blueprint(suggest_bp)
    app.register_blueprint(writes_bp)
    app.register_blueprint(views_bp)
    app.register_blueprint(about_bp)
    app.register_blueprint(map_bp)
    app.register_blueprint(indexes_bp)
    app.register_blueprint(embeddings_bp)
    metrics.install(app)  # GET /metrics, and the count of every request

    @app.context_processor
    def index_choices():
        """The page's index selector (shown with 2+ indexes the caller may read) and the
        ?index= its links keep."""
        allowed = allowed_names()
        raw = requested()
        return {"index_names": allowed if len(allowed) > 1 else [],
                "index_value": raw if raw == ALL or raw in allowed else default_for(allowed),
                "link_index": link_index()}

    @app.before_request
    def refuse_large_bodies():
        limit = body_limit(app.config["SEARCHER_MAX_WRITE_BYTES"])
        if (request.content_length or 0) > limit:
            abort(413, description=f"The body is larger than this request's limit of {limit:,} bytes.")
        request.max_content_length = limit  # also for a body without Content-Length (chunked)

    @app.before_request
    def refuse_urls_not_utf8():
        reason = url_not_utf8()
        if reason:
            abort(400, description=reason)

    @app.after_request
    def security_headers(response):
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if "Location" in response.headers:  # this app only ever redirects to itself
            response.headers["Location"] = relative_location(response.headers["Location"])
        return response

    register_error_handlers(app)
    return app

