"""The write API (admin keys only): POST /api/documents, DELETE /api/documents/<id>, to the
default index or to ?index=NAME (searcher/web/indexes.py; a key limited to some indexes writes to those only),
and POST /api/index (a full run over the server's watched folders now).

A POST takes one document (a JSON object) or a list of them, with the fields
`Index.add_documents` takes (`id`, `text`, optional `title`, `source`, `metadata`,
`readers`: docs/access.md; other keys become metadata), in a body of at most the app's SEARCHER_MAX_WRITE_BYTES (the other
endpoints keep the 64 KiB limit). Every document is checked before anything is written: a
body that is not JSON, or a document that cannot be one, is a 400 naming it and nothing is
written. The answer is 201 with the indexing report (`IndexReport.to_dict()`: what was
added, updated, unchanged or skipped, and why) and the ids sent.

POST /api/index, on a server started with `--watch PATH` (`watch_folders`), runs the
watcher's reconcile (searcher/index/watch.py) and answers 200 with its report; a server that
watches nothing answers 409. It checks `?index=` and the key's index limit as the other
writes do (404 / 403).

A write the disk refuses (IndexIOError: full, failing) is answered by searcher/web/errors.py: 507 for
a full disk, 503 with Retry-After otherwise, with the reason and whether anything was written.

Writes go through `SearchService` one at a time, the watcher's runs among them; searches
keep answering meanwhile (see searcher/web/service.py and write_queue.py). Without API keys (a server started without --api-keys) there is no admin,
so every write is refused with a 403 that says how to enable them.
"""

from __future__ import annotations

import errno
import json
import re
from datetime import datetime, timezone

from flask import Blueprint, current_app, jsonify, request

from searcher.errors import IndexLockedError
from searcher.index.writer import ON_CONFLICT, as_document

from searcher.web.auth import require_admin
from searcher.web.errors import json_error
from searcher.web.indexes import current_service as service
from searcher.web.names import folder_name
from searcher.web.requests import BadRequest
from searcher.web.write_queue import WriteBusy

bp = Blueprint("writes", __name__, url_prefix="/api")
bp.before_request(require_admin)

BUSY_RETRY_AFTER = "5"  # seconds
WATCHER = "searcher.watcher"  # app.extensions key of the folder watcher, when the server has one


def watch_folders(app, paths, options=None, **settings):
    """A folder watcher (searcher.index.watch.Watcher, not started) over `paths` for `app`'s index:
    its runs take turns with the write API's (SearchService.write), and POST /api/index runs
    its reconcile. `settings`: Watcher's keywords (debounce, reconcile_every, settle...)."""
    from searcher.index.watch import Watcher

    svc = app.extensions["searcher"]
    watcher = Watcher(svc.index, paths, options, write=svc.write, **settings)
    app.extensions[WATCHER] = watcher
    return watcher


def parse_documents(body: bytes) -> list[dict]:
    """The documents in a POST body, each checked as add_documents would take it; BadRequest
    says what is wrong (and which document)."""
    if not body.strip():
        raise BadRequest("the body is empty: send one document as a JSON object, or a list of them")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise BadRequest(f"the body is not valid JSON: {str(e)[:200]}") from None
    documents = [data] if isinstance(data, dict) else data
    if not isinstance(documents, list):
        raise BadRequest(f"the body must be a JSON object (one document) or a list of them, not {type(data).__name__}")
    if not documents:
        raise BadRequest("the list of documents is empty")
    for i, doc in enumerate(documents):
        if not isinstance(doc, dict):
            raise BadRequest(f"document {i}: must be a JSON object, not {type(doc).__name__}")
        try:
            as_document(doc)
        except (TypeError, ValueError) as e:
            raise BadRequest(f"document {i}: {str(e)[:300]}") from None
    return documents


def write_error(e: Exception):
    """The answer to a write that could not run: another process holds the index, or this one is busy."""
    if isinstance(e, IndexLockedError):
        return json_error(409, "Another process is writing to the index; try again when it has finished.", "Conflict")
    response = json_error(503, str(e), "Service Unavailable")
    response.headers["Retry-After"] = BUSY_RETRY_AFTER
    return response


@bp.post("/documents")
def add_documents():
    """One document or a list -> 201 with the indexing report and the ids sent."""
    target = service()  # an unknown or forbidden index: 404 or 403 before the body is read
    on_conflict = request.args.get("on_conflict", "skip")
    if on_conflict not in ON_CONFLICT:
        return json_error(400, f"on_conflict must be one of {', '.join(ON_CONFLICT)}, not {on_conflict[:40]!r}",
                          "Bad Request")
    try:
        documents = parse_documents(request.get_data(cache=False))
    except BadRequest as e:
        return json_error(400, str(e), "Bad Request")
    try:
        report = target.add_documents(documents, on_conflict)
    except (IndexLockedError, WriteBusy) as e:
        return write_error(e)
    ids = [as_document(doc).id for doc in documents]
    return jsonify({**report.to_dict(), "ids": ids}), 201


@bp.delete("/documents", defaults={"doc_id": None})
@bp.delete("/documents/<docid:doc_id>", merge_slashes=False)
def delete_document(doc_id: str | None):
    """A document by id (in the path, or as ?id=) -> 200 {"id", "deleted": 1, "generation"};
    404 when unknown."""
    target = service()
    doc_id = doc_id if doc_id is not None else request.args.get("id", "")
    if not doc_id:
        return json_error(400, "give a document id: /api/documents/<id> or /api/documents?id=<id>", "Bad Request")
    try:
        deleted, generation = target.delete([doc_id])
    except (IndexLockedError, WriteBusy) as e:
        return write_error(e)
    if not deleted:
        return json_error(404, f"no document with id {doc_id[:200]!r}", "Not Found")
    return jsonify({"id": doc_id, "deleted": deleted, "generation": generation})


@bp.post("/index")
def reindex():
    """A full run over the watched folders now -> 200 with its report; 409 when none are watched.
    Like every write, for the index of ?index= (or the default), which the key must be allowed:
    404 / 403 before anything runs."""
    target = service()
    watcher = current_app.extensions.get(WATCHER)
    if watcher is None:
        return json_error(409, "This server watches no folders: start it with `searcher serve --watch PATH` "
                               "to re-index folders through the API.", "Conflict")
    if target is not current_app.extensions["searcher"]:
        return json_error(409, "This server watches folders for its default index only: send POST /api/index "
                               "without ?index=, or with that index's name.", "Conflict")
    try:
        report = watcher.reconcile()
    except (IndexLockedError, WriteBusy) as e:
        return write_error(e)
    return jsonify({**report.to_dict(), "watched": len(watcher.paths)})


BACKUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@bp.post("/backup")
def backup():
    """A backup of the index of ?index= (or the default), one committed generation taken while it
    serves and takes writes (searcher/cluster/backup.py), into the server's --backup-dir, as
    the body's {"name": NAME} or the index's name and the time -> 201 with its report (the
    backup named, no server paths). 409 when the server keeps no backups or NAME is taken."""
    from searcher.cluster.backup import backup as back_up

    target = service()
    folder = current_app.config.get("SEARCHER_BACKUP_DIR")
    if folder is None:
        return json_error(409, "This server keeps no backups: start it with `searcher serve --backup-dir DIR` "
                               "(or run `searcher backup` beside it).", "Conflict")
    body = request.get_json(silent=True) if request.get_data() else {}
    if not isinstance(body, dict):
        return json_error(400, 'the body is a JSON object: {"name": "NAME"}, or nothing', "Bad Request")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name = body.get("name", f"{target.name or folder_name(target.index.path)}-{stamp}")
    if not isinstance(name, str) or not BACKUP_NAME.fullmatch(name):
        return json_error(400, "name is a plain name: letters, digits, '.', '_' and '-', at most 100", "Bad Request")
    if (folder / name).exists():
        return json_error(409, f"there is a backup named {name!r} already", "Conflict")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        report = back_up(target.index.path, folder / name)
    except OSError as e:  # nothing is left under the name (the copy is renamed into place when whole)
        status = 507 if e.errno in (errno.ENOSPC, errno.EDQUOT) else 503
        return json_error(status, f"the backup failed and left nothing: {e.strerror or type(e).__name__}",
                          "Insufficient Storage" if status == 507 else "Service Unavailable")
    kept = {k: v for k, v in report.to_dict().items() if k not in ("path", "source")}
    response = jsonify({"name": name, **kept})
    response.status_code = 201
    return response
