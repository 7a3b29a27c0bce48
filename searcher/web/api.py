"""The JSON API: /api/search, /api/similar, /api/documents/<id>, /api/health, /api/stats;
each takes ?index=NAME (searcher/web/indexes.py), and /api/search and /api/health also index=*."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from searcher.errors import ShardUnavailable

from searcher.web import indexes
from searcher.web.errors import RETRY_AFTER, json_error
from searcher.web.indexes import current_service as service
from searcher.web.requests import DEFAULT_K, MAX_K, BadRequest, hit_json, int_arg, parse_search_args, parse_where
from searcher.web.service import IndexUnavailable

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.get("/search")
def search():
    """?q=...&k=10&offset=0[&index=NAME|*&mode=...&where=<JSON>&facets=type,folder,year&sort=modified
    &recency=DAYS] -> query, took_ms, results, has_more, next_offset[, facets]; with index=*
    every result also has `index` and `fused_score`."""
    indexes.resolve(allow_all=True)  # an unknown or forbidden index first, whatever else is wrong
    try:
        page = indexes.search(parse_search_args(request.args))
    except BadRequest as e:
        return json_error(400, str(e), "Bad Request")
    return jsonify(page.to_dict())


@bp.get("/similar")
def similar():
    """?id=...&k=10[&where=<JSON>] -> id, results: the documents nearest in meaning to that one
    (never itself), within the filter."""
    doc_id = request.args.get("id", "")
    if not doc_id:
        return json_error(400, "give a document id: /api/similar?id=<id>", "Bad Request")
    try:
        k = int_arg(request.args, "k", DEFAULT_K, 1, MAX_K)
        hits = service().similar(doc_id, k, parse_where(request.args), indexes.viewer())
    except BadRequest as e:
        return json_error(400, str(e), "Bad Request")
    except KeyError:
        return json_error(404, f"no document with id {doc_id[:200]!r}", "Not Found")
    return jsonify({"id": doc_id, "results": [hit_json(h) for h in hits]})


@bp.get("/documents", defaults={"doc_id": None})
@bp.get("/documents/<docid:doc_id>", merge_slashes=False)
def document(doc_id: str | None):
    """A stored document by id (in the path, or as ?id= for ids a URL path would mangle)."""
    doc_id = doc_id if doc_id is not None else request.args.get("id", "")
    if not doc_id:
        return json_error(400, "give a document id: /api/documents/<id> or /api/documents?id=<id>", "Bad Request")
    doc = service().document(doc_id, indexes.viewer())
    if doc is None:
        return json_error(404, f"no document with id {doc_id[:200]!r}", "Not Found")
    keys = ("id", "title", "source", "metadata", "text", "added_at")
    return jsonify({k: doc.get(k) for k in keys})


@bp.get("/health")
def health():
    """200 {"status": "ok", "documents": N} after a real read of the index; 503 with
    {"status": "error", "message": ...} while the index cannot be read. With several indexes
    and no ?index= (or index=*), every index the caller may read is probed: ok only if all
    read, `documents` their total, and `indexes` {name: {"status", "documents" or "message"}}."""
    names = indexes.resolve(allow_all=True)
    every = indexes.requested() == indexes.ALL or (indexes.requested() is None and len(indexes.registry()) > 1)
    if every:
        names = indexes.allowed_names()
    report, failed = {}, None
    for name in names:
        try:
            report[name] = {"status": "ok", "documents": indexes.registry()[name].health()}
        except IndexUnavailable as e:
            report[name] = {"status": "error", "message": str(e)}
            failed = failed or (name, str(e))
        except ShardUnavailable as e:  # a sharded index served on Ray with a shard down
            report[name] = {"status": "error", "message": f"a shard did not answer: {e}",
                            "missing_shards": list(e.shards)}
            failed = failed or (name, report[name]["message"])
    if failed:
        message = f"index {failed[0]}: {failed[1]}" if every else failed[1]
        body = {"status": "error", "message": message, **({"indexes": report} if every else {}),
                **({"missing_shards": report[failed[0]]["missing_shards"]}
                   if not every and "missing_shards" in report[failed[0]] else {})}
        response = jsonify(body)
        response.status_code = 503
        response.headers["Retry-After"] = RETRY_AFTER
        return response
    body = {"status": "ok", "documents": sum(r["documents"] for r in report.values())}
    if every:
        body["indexes"] = report
    return jsonify(body)


@bp.get("/stats")
def stats():
    return jsonify(service().stats())
