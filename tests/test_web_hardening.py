"""The web app under damage and odd requests: a broken index, non-finite metadata, Host-header
redirects, waitress's queue warnings and raw non-ASCII bytes in the request line."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import pytest

from searcher import Index
from tests.conftest import ANIMALS
from searcher.web import create_app
from searcher.web.server import make_server, serving
from searcher.search.results import Results
from tests.web_support import StandInIndex


class FakeIndex(StandInIndex):
    """No documents and no model: for the tests about requests, not about searching."""

    delay = 0.0

    def search(self, query, k=10, offset=0, mode=None):
        time.sleep(self.delay)
        return Results()

    def __len__(self):
        return 0

    def get_document(self, doc_id):
        return None


def strict_json(data: bytes):
    """json.loads that refuses NaN, Infinity and -Infinity, as JSON itself does."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(data, parse_constant=refuse)


def get(url: str, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    """One request through http.client, the path sent exactly as given."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_host=host is not None, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def raw_request(url: str, request_line: bytes) -> tuple[int, dict, bytes]:
    """Send `request_line` byte for byte over a socket (http.client refuses non-ASCII)."""
    u = urlparse(url)
    with socket.create_connection((u.hostname, u.port), timeout=60) as s:
        s.sendall(request_line + b"\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


# -- 8: a damaged content.db under a running server ---------------------------------------

@pytest.fixture
def small_index_dir(tmp_path, encoder):
    idx = Index.create(tmp_path / "idx", device="cpu")
    idx.add_documents(ANIMALS)
    idx.close()
    return tmp_path / "idx"


def wait_for_health(url: str, status: int, seconds: float = 15) -> tuple[int, dict, bytes]:
    deadline = time.monotonic() + seconds
    while True:
        answer = get(url, "/api/health")
        if answer[0] == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


@pytest.mark.parametrize("restore", [
    "in place",  # the saved bytes written back into the same file
    "replaced",  # a good copy moved over the damaged file: a new inode, the open connections stale
])
def test_server_reports_a_damaged_index_and_recovers_without_a_restart(small_index_dir, restore):
    # Opened as `searcher serve` opens it: every commit checkpointed into content.db. (Pages
    # still only in the WAL are lost when content.db is truncated: SQLite deletes the WAL of
    # an empty database file on the next connection, so restoring content.db alone could not
    # bring them back.)
    idx = Index.open(small_index_dir, device="cpu")
    documents = len(ANIMALS)
    app = create_app(idx)
    service = app.extensions["searcher"]
    db = small_index_dir / "content.db"
    try:
        with serving(app) as url:
            status, _, body = get(url, "/api/health")
            assert status == 200 and strict_json(body) == {"status": "ok", "documents": documents}

            saved = db.read_bytes()
            with open(db, "r+b") as f:
                f.truncate(0)

            status, headers, body = get(url, "/api/health")
            assert status == 503 and headers["content-type"] == "application/json"
            health = strict_json(body)
            assert health["status"] == "error" and "index" in health["message"]

            status, headers, body = get(url, "/api/search?q=kittens")
            assert status == 503 and headers["content-type"] == "application/json"
            error = strict_json(body)
            assert error["error"] == "service_unavailable" and error["status"] == 503
            assert "index cannot be read" in error["message"] and "Traceback" not in error["message"]
            assert str(small_index_dir) not in body.decode()  # no server paths in answers
            status, headers, _ = get(url, "/?q=kittens")
            assert status == 503 and headers["content-type"].startswith("text/html")

            if restore == "in place":
                db.write_bytes(saved)
            else:
                (small_index_dir / "restored.db").write_bytes(saved)
                os.replace(small_index_dir / "restored.db", db)

            status, _, body = wait_for_health(url, 200)
            assert status == 200 and strict_json(body) == {"status": "ok", "documents": documents}
            status, _, body = get(url, "/api/search?q=kittens&k=1")
            assert status == 200 and strict_json(body)["results"][0]["doc_id"] == "cat"
            status, _, body = get(url, "/api/documents/cat")
            assert status == 200 and strict_json(body)["title"] == "Cats"
            if restore == "replaced":
                assert service.index is not idx  # reopened on the new file,
                assert service.index.encoder is idx.encoder  # on the model already loaded
    finally:
        service.index.close()
        if service.index is not idx:
            idx.close()


def test_deleted_database_is_reported_while_its_open_file_still_reads(small_index_dir):
    """An unlinked content.db still reads through open connections; health must not say ok."""
    idx = Index.open(small_index_dir, device="cpu")
    app = create_app(idx)
    client = app.test_client()
    try:
        assert client.get("/api/health").status_code == 200
        saved = (small_index_dir / "content.db").read_bytes()
        (small_index_dir / "content.db").unlink()
        r = client.get("/api/health")
        assert r.status_code == 503 and r.get_json()["status"] == "error"
        assert client.get("/api/search?q=cats").status_code == 503
        (small_index_dir / "content.db").write_bytes(saved)
        app.extensions["searcher"].retry_interval = 0  # reopening is tried at most once a second
        assert client.get("/api/health").get_json() == {"status": "ok", "documents": len(ANIMALS)}
    finally:
        app.extensions["searcher"].index.close()


# -- 12: NaN and infinity in stored metadata ----------------------------------------------

def test_documents_with_non_finite_metadata_answer_strict_json(small_index_dir):
    idx = Index.open(small_index_dir, device="cpu")
    try:
        with sqlite3.connect(small_index_dir / "content.db") as conn:
            conn.execute(
                "update documents set metadata = ? where id = 'cat'",
                ['{"a": NaN, "b": Infinity, "c": [-Infinity, 1.5], "d": {"e": NaN}, "f": "kept"}'],
            )
        assert idx.get_document("cat")["metadata"]["a"] != idx.get_document("cat")["metadata"]["a"]  # NaN
        client = create_app(idx).test_client()
        r = client.get("/api/documents/cat")
        assert r.status_code == 200
        body = strict_json(r.get_data())
        assert body["metadata"] == {"a": None, "b": None, "c": [None, 1.5], "d": {"e": None}, "f": "kept"}
        assert client.get("/document?id=cat").status_code == 200
    finally:
        idx.close()


def test_non_finite_scores_become_null():
    class NaNScores(FakeIndex):
        def search(self, query, k=10, offset=0, mode=None):
            from searcher.index.facade import Hit

            return Results([Hit("a", float("nan"), "A", "", "text", 0, 4, 1, {}),
                            Hit("b", float("-inf"), "B", "", "text", 0, 4, 2, {})])

    r = create_app(NaNScores()).test_client().get("/api/search?q=x")
    assert [hit["score"] for hit in strict_json(r.get_data())["results"]] == [None, None]


# -- 14: redirects never point to the Host header's host -------------------------------------

@pytest.mark.parametrize("path", ["//api//health", "/api//health", "//", "/static//style.css"])
def test_double_slashes_never_redirect_to_the_host_header(path):
    # evil.com allowed, as --allowed-hosts would: otherwise it gets 421 first (tests/test_hardening2_web.py)
    with serving(create_app(FakeIndex(), allowed_hosts=["evil.com"])) as url:
        status, headers, body = get(url, path, host="evil.com")
    assert "evil.com" not in headers.get("location", "")
    assert status == (200 if path == "//" else 404)  # "//" is the root path, as it was: no redirect
    if "api" in path:
        assert headers["content-type"] == "application/json" and strict_json(body)["error"] == "not_found"


def test_redirects_are_relative():
    """Werkzeug builds redirect URLs from the Host header: any that the app sends stay on this site."""
    app = create_app(FakeIndex(), allowed_hosts=["evil.com"])
    app.add_url_rule("/api/things/", "things", lambda: "things")  # strict_slashes: /api/things redirects
    with serving(app) as url:
        status, headers, _ = get(url, "/api/things?x=1", host="evil.com")
    assert status == 308 and headers["location"] == "/api/things/?x=1"


# -- 15: waitress's queue-depth warnings at most once a minute --------------------------------

def record(depth: int) -> logging.LogRecord:
    return logging.LogRecord("waitress.queue", logging.WARNING, __file__, 1, "Task queue depth is %d", (depth,), None)


def test_queue_warnings_pass_once_per_interval_with_a_count_of_the_rest():
    from searcher.web.server import OncePerInterval

    now = [1000.0]
    f = OncePerInterval(60, clock=lambda: now[0])
    first = record(1)
    assert f.filter(first) and first.getMessage() == "Task queue depth is 1"
    passed = []
    for i in range(200):
        now[0] += 0.25  # 50 s of warnings, four a second
        r = record(i + 2)
        if f.filter(r):
            passed.append(r)
    assert passed == [] and f.suppressed == 200
    now[0] += 10.0  # 60 s after the first
    nxt = record(7)
    assert f.filter(nxt)
    assert nxt.getMessage() == "Task queue depth is 7 (200 more such messages in the last 60 s were not logged)"
    assert f.suppressed == 0
    now[0] += 61
    quiet = record(3)
    assert f.filter(quiet) and quiet.getMessage() == "Task queue depth is 3"


def test_make_server_quiets_the_queue_warnings_of_a_busy_server(caplog, monkeypatch):
    from searcher.web.server import OncePerInterval

    logger = logging.getLogger("waitress.queue")
    monkeypatch.setattr(logger, "filters", [])  # a fresh filter for this test
    server = make_server(create_app(FakeIndex()), port=0)
    server.close()
    make_server(create_app(FakeIndex()), port=0).close()
    installed = [f for f in logger.filters if isinstance(f, OncePerInterval)]
    assert len(installed) == 1 and installed[0].interval == 60

    index = FakeIndex()
    index.delay = 0.3
    with caplog.at_level(logging.WARNING, logger="waitress.queue"):
        with serving(create_app(index), threads=1) as url:
            with ThreadPoolExecutor(6) as pool:
                statuses = list(pool.map(lambda _: get(url, "/api/search?q=x")[0], range(6)))
    assert statuses == [200] * 6
    warnings = [r for r in caplog.records if r.name == "waitress.queue"]
    assert len(warnings) == 1 and warnings[0].getMessage().startswith("Task queue depth is")
    assert installed[0].suppressed >= 1  # the server really was queueing


# -- 16: raw non-ASCII bytes in the request line ---------------------------------------------

@pytest.fixture(scope="module")
def fake_server():
    with serving(create_app(FakeIndex())) as url:
        yield url


@pytest.mark.parametrize("line", [
    b"GET /api/search?q=caf\xe9 HTTP/1.1",  # latin-1, not UTF-8
    b"GET /api/\xff HTTP/1.1",
    b"GET //api/\xff HTTP/1.1",
    b"GET /api/documents/%FF HTTP/1.1",
    b"GET /api/search?q=caf%E9 HTTP/1.1",
])
def test_urls_that_are_not_utf8_get_a_json_400(fake_server, line):
    status, headers, body = raw_request(fake_server, line)
    assert status == 400 and headers["content-type"] == "application/json", body
    error = strict_json(body)
    assert error["error"] == "bad_request" and "UTF-8" in error["message"]


def test_pages_with_urls_that_are_not_utf8_get_the_error_page(fake_server):
    status, headers, body = raw_request(fake_server, b"GET /?q=caf\xe9 HTTP/1.1")
    assert status == 400 and headers["content-type"].startswith("text/html")
    assert b"UTF-8" in body and b"Bad URI" not in body


def test_raw_utf8_in_the_request_line_is_read_as_utf8(fake_server):
    status, headers, body = raw_request(fake_server, "GET /api/search?q=café HTTP/1.1".encode())
    assert status == 200 and strict_json(body)["query"] == "café"
