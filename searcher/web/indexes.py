"""Several indexes in one server: the registry of named `SearchService`s, the `?index=`
every endpoint that reads an index takes, and the search over all of them.

`create_app(indexes={"notes": Index, "mail": Index})` serves each under its name (a single
`create_app(index)` serves one, named after its folder). A request picks one with
`?index=NAME`; without it, it reads the default index (the first, or the first its key may
read). `index=*` is for searches only: every index the caller may read, each searched on its
own and the lists merged as the library merges several indexes' rankings
(searcher/search/several.py: reciprocal rank fusion, or, with `sort=modified`, by date). A
name the server does not serve is a 404, an index the caller's key is not limited to a 403
(searcher/web/keys.py: `Access.indexes`).

Document ids are per index: `/document?id=x&index=mail` and `/api/documents?id=x&index=mail`.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Iterator, Mapping

from flask import Blueprint, abort, current_app, g, jsonify, request

from searcher.search.access import Viewer
from searcher.search.several import fuse_rankings, merge_facets

from searcher.web import access_log
from searcher.web.names import check_index_name
from searcher.web.requests import SearchPage, SearchRequest
from searcher.web.service import IndexUnavailable, SearchService

ALL = "*"  # index=*: every index the caller may read (searches only)


class Services:
    """The served indexes by name, in the order given; the first is the default."""

    def __init__(self, services: Mapping[str, SearchService]):
        if not services:
            raise ValueError("a server needs at least one index")
        for name in services:
            check_index_name(name)
        self._services = dict(services)
        self.default = next(iter(self._services))

    @property
    def names(self) -> list[str]:
        return list(self._services)

    def __getitem__(self, name: str) -> SearchService:
        return self._services[name]

    def __contains__(self, name) -> bool:
        return name in self._services

    def __len__(self) -> int:
        return len(self._services)

    def __iter__(self) -> Iterator[str]:
        return iter(self._services)

    def items(self):
        return self._services.items()


def registry() -> Services:
    return current_app.extensions["searcher.indexes"]


def allowed_names() -> list[str]:
    """The served indexes this request may read: all without keys; with keys, those of its
    key's limit (none before the key is known, e.g. on the sign-in page)."""
    names = registry().names
    if current_app.extensions.get("searcher.auth") is None:
        return names
    access = g.get("access")
    if access is None:
        return []
    return names if access.indexes is None else [n for n in names if n in access.indexes]


def viewer() -> Viewer | None:
    """Whom this request reads documents as (searcher/search/access.py): without keys, nobody
    in particular (None: every document, as the command line reads them); with keys, its
    key's user and groups (an admin key: None, every document)."""
    if current_app.extensions.get("searcher.auth") is None:
        return None
    access = g.get("access")
    return Viewer() if access is None else access.viewer


def requested() -> str | None:
    """The request's ?index=, stripped; None when absent or empty."""
    raw = (request.args.get("index") or "").strip()
    return raw or None


def default_for(allowed: list[str]) -> str | None:
    """The index a request without ?index= reads: the server's default, else the first allowed."""
    default = registry().default
    return default if default in allowed else (allowed[0] if allowed else None)


def resolve(allow_all: bool = False) -> list[str]:
    """The names this request reads: its ?index= (one name, or with `allow_all` `*`: every
    allowed one), or the default. Aborts: 400 for `*` where one index is needed, 404 for a
    name not served, 403 for one the key may not read."""
    raw = requested()
    allowed = allowed_names()
    if raw is None:
        name = default_for(allowed)
        if name is None:
            abort(403, description="This key may not read any index this server serves.")
        return [name]
    if raw == ALL:
        if not allow_all:
            abort(400, description="index=* (every index) is for searches; name one index here: index=NAME")
        if not allowed:
            abort(403, description="This key may not read any index this server serves.")
        return allowed
    if raw not in registry():
        abort(404, description=f"no index named {raw[:100]!r} (/api/indexes lists them)")
    if raw not in allowed:
        abort(403, description=f"This key may not read the index {raw!r}.")
    return [raw]


def current() -> tuple[str, SearchService]:
    """(name, service) of the one index this request reads (see `resolve`)."""
    name = resolve()[0]
    return name, registry()[name]


def current_service() -> SearchService:
    return current()[1]


def link_index() -> str | None:
    """The ?index= to keep in this page's links to one index: the request's, when it names an
    index the caller may read (never `*`, never an unknown name); None otherwise. Never aborts
    (error pages use it too)."""
    raw = requested()
    try:
        return raw if raw is not None and raw != ALL and raw in allowed_names() else None
    except RuntimeError:  # outside a request
        return None


def search_all(names: list[str], req: SearchRequest) -> SearchPage:
    """One page of `req` over the indexes `names`: each index's best offset + k documents
    (its own search, so its own filter, mode and facets), merged (searcher/search/several.py:
    reciprocal rank fusion, k=60, or with sort=modified by date), then paged. Hits carry
    their index (`SearchPage.indexes`) and their fused score."""
    started = time.perf_counter()
    services = registry()
    depth = req.offset + req.k
    reader = viewer()
    pages = {name: services[name].search(replace(req, k=depth, offset=0), reader) for name in names}
    merged = fuse_rankings({name: page.hits for name, page in pages.items()}, req.sort)
    window = merged[req.offset: req.offset + req.k]
    has_more = len(merged) > req.offset + req.k or any(page.has_more for page in pages.values())
    facets = merge_facets([p.facets for p in pages.values() if p.facets is not None]) if req.facets else None
    took_ms = round((time.perf_counter() - started) * 1000, 1)
    return SearchPage(req, [m.hit for m in window], has_more, took_ms, facets,
                      indexes=[m.index for m in window], fused=[m.score for m in window],
                      generations={name: page.generation for name, page in pages.items()},
                      missing_shards=[f"{name}/{shard}" for name, page in pages.items() for shard in page.missing_shards])


def search(req: SearchRequest) -> SearchPage:
    """The request's search: over its one index, or with index=* over every allowed one."""
    names = resolve(allow_all=True)
    if requested() == ALL:
        page = search_all(names, req)
        access_log.note(generations=page.generations)
    else:
        page = registry()[names[0]].search(req, viewer())
        access_log.note(index=names[0], generation=page.generation)
    return page


def count(names: list[str]) -> int:
    reader = viewer()
    return sum(registry()[name].count(reader) for name in names)


def listing() -> dict:
    """/api/indexes: the indexes this caller may read, each with its document count (or why it
    cannot be read), and the one a request without ?index= reads."""
    allowed = allowed_names()
    out = []
    for name in allowed:
        try:
            out.append({"name": name, "documents": registry()[name].count(viewer()), "status": "ok"})
        except IndexUnavailable as e:
            out.append({"name": name, "documents": None, "status": "error", "message": str(e)})
    return {"indexes": out, "default": default_for(allowed)}


bp = Blueprint("indexes", __name__)


@bp.get("/api/indexes")
def api_indexes():
    """{"indexes": [{"name", "documents", "status"[, "message"]}], "default": NAME}: only
    those the caller's key may read."""
    return jsonify(listing())
