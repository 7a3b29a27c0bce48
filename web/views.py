"""The HTML pages: the search page (/) and the document view (/document?id=...)."""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, render_template, request, url_for

from searcher.documents import page_starts

from .highlight import document_html, snippet, valid_span
from .service import DEFAULT_K, BadRequest, SearchService, parse_search_args

bp = Blueprint("views", __name__)


def service() -> SearchService:
    return current_app.extensions["searcher"]


def page_url(req, offset: int) -> str:
    """The URL of another page of the same search (k and mode kept only when not the default)."""
    args = {"q": req.query}
    if req.k != DEFAULT_K:
        args["k"] = req.k
    if req.mode:
        args["mode"] = req.mode
    if req.where is not None:
        args["where"] = json.dumps(req.where, separators=(",", ":"))
    if offset:
        args["offset"] = offset
    return url_for("views.search", **args)


@bp.get("/")
def search():
    """The search box, and results when there is a query; the query lives in the URL."""
    q = request.args.get("q", "")
    context = {"q": q, "mode": request.args.get("mode", ""), "documents": service().count()}
    try:
        req = parse_search_args(request.args, require_query=False)
        page = service().search(req) if req else None
    except BadRequest as e:
        return render_template("search.html", error=str(e), **context), 400
    if req and req.k != DEFAULT_K:
        context["k"] = req.k  # a new search from the box keeps the page size
    if page is None:
        return render_template("search.html", **context)
    analyzer = service().analyzer()
    results = [
        {
            "hit": hit,
            "snippet": snippet(hit.passage, req.query, analyzer),
            "url": url_for("views.document", id=hit.doc_id, start=hit.start, end=hit.end, q=req.query, _anchor="hit"),
        }
        for hit in page.hits
    ]
    return render_template(
        "search.html", page=page, results=results,
        prev_url=page_url(req, max(0, req.offset - req.k)) if req.offset else None,
        next_url=page_url(req, req.offset + req.k) if page.has_more else None,
        first_url=page_url(req, 0), **context,
    )


def _opt_int(name: str) -> int | None:
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else None


@bp.get("/document")
def document():
    """A whole document, the passage [start:end] of a result in <mark id="hit">."""
    doc_id = request.args.get("id", "")
    doc = service().document(doc_id) if doc_id else None
    if doc is None:
        abort(404, description="There is no document with this id in the index.")
    q = request.args.get("q", "")[:1000]
    start, end = _opt_int("start"), _opt_int("end")
    body = document_html(doc["text"], start, end, q, service().analyzer(), page_starts(doc.get("metadata") or {}))
    return render_template(
        "document.html", doc=doc, body=body, q=q, has_hit=valid_span(doc["text"], start, end),
        back_url=url_for("views.search", q=q) if q.strip() else None,
    )
