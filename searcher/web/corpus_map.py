"""The map of the corpus: /map (the page; web/static/map.js draws it on a canvas) and
/api/map (the layout as JSON, from searcher/quality/corpus_map.py through the SearchService)."""

from __future__ import annotations

import hashlib

from flask import Blueprint, jsonify, render_template, request

from searcher.web.errors import json_error
from searcher.web.indexes import current_service as service, viewer
from searcher.web.service import MapUnavailable

bp = Blueprint("corpus_map", __name__)


@bp.get("/map")
def page():
    """The page; the map itself is fetched from /api/map by map.js (a large corpus takes a
    while to lay out the first time, and the page says so meanwhile)."""
    return render_template("map.html", map_q=request.args.get("q", "")[:1000], documents=service().count(viewer()))


@bp.get("/api/map")
def api_map():
    """format, generation, method, documents, unplaced, seconds, clusters, facets, points
    (parallel arrays: id, title, x, y, cluster, one per facet). Revalidated by ETag: the
    layout changes only with the generation."""
    try:
        reader = viewer()
        payload = service().corpus_map(reader)
    except MapUnavailable as e:
        return json_error(501, str(e), "Not Implemented")
    response = jsonify(payload)
    who = "" if reader is None else "-" + hashlib.sha256(reader.describe().encode()).hexdigest()[:16]
    response.set_etag(f"map-{payload['generation']}-{payload['method']}-{payload['documents']}{who}")
    response.headers["Cache-Control"] = "no-cache"
    return response.make_conditional(request)
