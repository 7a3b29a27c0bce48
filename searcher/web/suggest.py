"""GET /api/suggest?q=PREFIX[&k=10&index=NAME]: titles and the index's words that start with
the prefix, most frequent first (searcher/search/suggest.py), for the page's search box.
Read like /api/search: the same keys, and ?index= (one index; not `*`)."""

from __future__ import annotations

import time

from flask import Blueprint, jsonify, request

from searcher.search.suggest import MAX_SUGGESTIONS

from searcher.web.errors import json_error
from searcher.web.indexes import current_service as service, viewer
from searcher.web.requests import BadRequest, int_arg
from searcher.web.service import SuggestUnavailable

bp = Blueprint("suggest", __name__, url_prefix="/api")


@bp.get("/suggest")
def suggest():
    """-> query, suggestions (each text, kind "title" or "term", count), took_ms; 400 for a
    missing, blank, too long or control-character prefix, or a k outside 1..10."""
    index = service()  # an unknown or forbidden index first, whatever else is wrong
    started = time.perf_counter()
    try:
        k = int_arg(request.args, "k", MAX_SUGGESTIONS, 1, MAX_SUGGESTIONS)
        found = index.suggest(request.args.get("q", ""), k, viewer())
    except BadRequest as e:
        return json_error(400, str(e), "Bad Request")
    except SuggestUnavailable as e:
        return json_error(501, str(e), "Not Implemented")
    return jsonify({"query": request.args.get("q"), "suggestions": [s.to_dict() for s in found],
                    "took_ms": round((time.perf_counter() - started) * 1000, 2)})
