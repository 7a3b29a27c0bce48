"""The HTML pages: the search page (/), the document view (/document?id=...) and the
documents like one (/similar?id=...); each takes ?index= (searcher/web/indexes.py), the search page
also index=* (every index), and their links keep it."""

from __future__ import annotations

import json

from flask import Blueprint, abort, current_app, render_template, request, url_for

from searcher.readers.documents import page_starts
from searcher.errors import ShardUnavailable
from searcher.search.facets import add_filter, facet_filter

from searcher.web import indexes
from searcher.web.highlight import document_html, snippet, valid_span
from searcher.web.indexes import current_service as service, link_index
from searcher.web.requests import DEFAULT_K, BadRequest, parse_search_args, parse_where

bp = Blueprint("views", __name__)


def search_url(req, offset: int = 0, **changes) -> str:
    """The URL of this search with `changes` (where, sort...) and page `offset`; k, mode, sort
    and recency kept only when not the default."""
    where = changes.get("where", req.where)
    sort = changes.get("sort", req.sort)
    args = {"q": changes.get("q", req.query)}
    if req.index:
        args["index"] = req.index
    if req.k != DEFAULT_K:
        args["k"] = req.k
    if req.mode:
        args["mode"] = req.mode
    if where:
        args["where"] = json.dumps(where, separators=(",", ":"), ensure_ascii=False)
    if sort and sort != "relevance":
        args["sort"] = sort
    if req.recency is not None:
        args["recency"] = f"{req.recency:.15g}"
    if offset:
        args["offset"] = offset
    return url_for("views.search", **args)


def filter_label(key: str, value) -> str:
    """How one top-level entry of a filter reads on the page: `type: pdf`, `year 2024`."""
    if key == "modified" and isinstance(value, dict) and set(value) == {"$gte", "$lt"}:
        low, high = str(value["$gte"]), str(value["$lt"])
        if low.isdigit() and high.isdigit() and len(low) == 4 and int(high) == int(low) + 1:
            return f"year {low}"
    if key.startswith("$"):  # $and, $or, $not: the whole entry
        return json.dumps({key: value}, ensure_ascii=False)
    if isinstance(value, (dict, list)):
        return f"{key}: {json.dumps(value, ensure_ascii=False)}"
    return f"{key}: {value}"


def facet_label(field: str, value) -> str:
    """A facet value as listed: a folder by its last two parts (the full path is its tooltip)."""
    text = str(value)
    if field == "folder":
        parts = [p for p in text.split("/") if p]
        return ("…/" if len(parts) > 2 else "/") + "/".join(parts[-2:]) if parts else text
    return text


def narrowing(req, facets: dict | None) -> dict:
    """The page's filters in force (each with a link that removes it), the facets' values (each
    a link that adds it as a filter) and the sort choices, all as URLs of this search."""
    where = req.where or {}
    active = [{"label": filter_label(key, value),
               "remove_url": search_url(req, where={k: v for k, v in where.items() if k != key})}
              for key, value in where.items()]
    groups = []
    for field, values in (facets or {}).items():
        items = []
        for value, count in values.items():
            condition = facet_filter(field, value)
            (key, wanted), = condition.items()
            items.append({"label": facet_label(field, value), "title": str(value), "count": count,
                          "active": where.get(key) == wanted,
                          "url": search_url(req, where=add_filter(where, condition))})
        if items:
            groups.append({"field": field, "entries": items})
    sorts = [{"label": label, "active": (req.sort or "relevance") == name, "url": search_url(req, sort=name)}
             for name, label in (("relevance", "Relevance"), ("modified", "Newest first"))]
    return {"active": active, "groups": groups, "sorts": sorts}


def result_rows(hits, query: str | None, names: list[str] | None = None) -> list[dict]:
    """What the page shows of each hit: its snippet, a link to it in the document, and a link
    to the documents like it. `names`: each hit's index (index=*); else the request's index,
    kept in the links when the request named it."""
    merged = names is not None
    if merged:
        analyzers = {name: indexes.registry()[name].analyzer() for name in set(names)}
    else:
        names = [link_index()] * len(hits)
        analyzers = {names[0]: service().analyzer()} if hits else {}
    return [
        {
            "hit": hit,
            "index": name if merged else None,  # shown beside the source
            "snippet": snippet(hit.passage, query or "", analyzers[name]),
            "url": url_for("views.document", id=hit.doc_id, start=hit.start, end=hit.end, q=query or None,
                           index=name, _anchor="hit"),
            "similar_url": url_for("views.similar", id=hit.doc_id, index=name),
        }
        for hit, name in zip(hits, names)
    ]


def exactly(query: str, corrected: str) -> str:
    """`query` with each word its correction changed in quotes: a quoted word is searched as
    typed, never corrected (searcher/search/spelling.py), so this link searches what was typed."""
    typed, fixed = query.split(), corrected.split()
    if len(typed) != len(fixed):
        return query
    return " ".join(f'"{t}"' if t != f and '"' not in t else t for t, f in zip(typed, fixed))


def document_count(names: list[str]) -> int | None:
    """The documents the page searches; None when a shard cannot say (its results are marked partial)."""
    try:
        return indexes.count(names)
    except ShardUnavailable:
        return None


@bp.get("/")
def search():
    """The search box, and results when there is a query; the query lives in the URL."""
    q = request.args.get("q", "")
    names = indexes.resolve(allow_all=True)
    context = {"q": q, "mode": request.args.get("mode", ""), "documents": document_count(names)}
    try:
        req = parse_search_args(request.args, require_query=False)
        if req is not None and not req.facets:
            req.facets = current_app.config["SEARCHER_FACETS"]  # the page always lists its facets
        page = indexes.search(req) if req else None
    except BadRequest as e:
        return render_template("search.html", error=str(e), **context), 400
    if req and req.k != DEFAULT_K:
        context["k"] = req.k  # a new search from the box keeps the page size
    if page is None:
        return render_template("search.html", **context)
    if req.where:
        context["where"] = json.dumps(req.where, separators=(",", ":"), ensure_ascii=False)
    if page.suggestion:
        context["suggestion_url"] = search_url(req, 0, q=page.suggestion)
        context["exact_url"] = search_url(req, 0, q=exactly(req.query, page.suggestion))
    return render_template(
        "search.html", page=page, results=result_rows(page.hits, page.suggestion or req.query, page.indexes),
        narrow=narrowing(req, page.facets),
        prev_url=search_url(req, max(0, req.offset - req.k)) if req.offset else None,
        next_url=search_url(req, req.offset + req.k) if page.has_more else None,
        first_url=search_url(req, 0), **context,
    )


@bp.get("/similar")
def similar():
    """The documents nearest in meaning to one (/similar?id=...), never the document itself."""
    doc_id, doc = requested_document()
    try:
        where = parse_where(request.args)
        hits = service().similar(doc_id, DEFAULT_K, where, indexes.viewer())
    except BadRequest as e:
        abort(400, description=str(e))
    return render_template("similar.html", doc=doc, results=result_rows(hits, None), q="",
                           documents=service().count(indexes.viewer()))


def requested_document() -> tuple[str, dict]:
    """(id, stored document) of ?id=...; a 404 page when there is no such document."""
    doc_id = request.args.get("id", "")
    doc = service().document(doc_id, indexes.viewer()) if doc_id else None
    if doc is None:
        abort(404, description="There is no document with this id in the index.")
    return doc_id, doc


def _opt_int(name: str) -> int | None:
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else None


@bp.get("/document")
def document():
    """A whole document, the passage [start:end] of a result in <mark id="hit">."""
    _, doc = requested_document()
    q = request.args.get("q", "")[:1000]
    start, end = _opt_int("start"), _opt_int("end")
    body = document_html(doc["text"], start, end, q, service().analyzer(),
                         page_starts(doc.get("metadata") or {}, len(doc["text"])))
    return render_template(
        "document.html", doc=doc, body=body, q=q, has_hit=valid_span(doc["text"], start, end),
        back_url=url_for("views.search", q=q, index=link_index()) if q.strip() else None,
        similar_url=url_for("views.similar", id=doc["id"], index=link_index()),
    )
