"""Hardening, second round (issue 30), the web server's items: foreign Host names (DNS
rebinding, item 1), POST /api/index and the key's index limit (2), a write on a full disk (8),
sessions per key and the sign-in rate (13), and no model folder path on /about or /api/stats
(16). Small fake-encoder indexes (tests/fake_encoder.py), no model."""

from __future__ import annotations

import copy
import errno
import http.client
import json
from urllib.parse import urlparse

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.hosts import HostRule, parse_allowed_hosts
from tests.conftest import ANIMALS
from tests.faults import inject
from searcher.web import create_app
from searcher.web.auth import COOKIE, Sessions
from searcher.web.keys import ApiKey, KeyRing, digest
from searcher.web.server import serving

ADMIN = "srch_admin1_" + "a" * 43
ADMIN_MAIL = "srch_adminmail_" + "m" * 43
READ = "srch_reader1_" + "r" * 43
READ_NONE = "srch_nothing_" + "n" * 43
KEYS = KeyRing([ApiKey("admin1", digest(ADMIN), "admin"), ApiKey("adminmail", digest(ADMIN_MAIL), "admin", "mail"),
                ApiKey("reader1", digest(READ), "read"), ApiKey("nothing", digest(READ_NONE), "read", "elsewhere")])


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def request(url: str, path: str, headers: dict) -> tuple[int, dict, bytes]:
    """One GET through http.client with exactly these headers (Host included)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.putrequest("GET", path, skip_host="Host" in headers, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.fixture
def animals(tmp_path, fake_encoder):
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    idx.add_documents(ANIMALS)
    yield idx
    idx.close()


# -- 1: DNS rebinding: only this server's names are answered ---------------------------------

PATHS = ["/api/search?q=cats", "/?q=cats", "/", "/about", "/api/health", "/api/documents/cat", "/static/style.css",
         "/sign-in", "/api/nothing"]


def test_a_foreign_host_name_gets_421_on_every_route_of_a_server_without_keys(animals):
    with serving(create_app(animals)) as url:
        port = urlparse(url).port
        for path in PATHS:
            status, headers, body = request(url, path, {"Host": f"attacker.example:{port}"})
            assert status == 421, (path, status)
            assert b"felines" not in body and b"Compilers" not in body  # no result, no document
            if path.startswith("/api/"):
                assert headers["content-type"] == "application/json"
                assert json.loads(body)["status"] == 421 and "--allowed-hosts" in json.loads(body)["message"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST", f"10.1.2.3:{port}"):
            status, _, body = request(url, "/api/search?q=cats", {"Host": host})
            assert status == 200 and json.loads(body)["results"], host
        assert request(url, "/api/search?q=cats", {"Host": "127.0.0.1.attacker.example"})[0] == 421
        assert request(url, "/api/search?q=cats", {"Host": "localhost.attacker.example"})[0] == 421
        assert request(url, "/api/search?q=cats", {"Host": "a b"})[0] in (400, 421)


def test_a_foreign_host_name_gets_421_with_keys_even_with_a_good_key(animals):
    client = create_app(animals, keys=KEYS).test_client()
    for path in PATHS:
        r = client.get(path, headers={"Host": "attacker.example:8739", **bearer(ADMIN)})
        assert r.status_code == 421, path
        assert "Set-Cookie" not in r.headers
    r = client.post("/sign-in", data={"key": READ}, headers={"Host": "attacker.example"})
    assert r.status_code == 421 and "Set-Cookie" not in r.headers
    r = client.post("/api/documents", json={"id": "x", "text": "y"}, headers={"Host": "attacker.example", **bearer(ADMIN)})
    assert r.status_code == 421 and len(animals) == len(ANIMALS)
    assert client.get("/api/search?q=cats", headers=bearer(ADMIN)).status_code == 200  # Host: localhost


def test_an_origin_on_a_foreign_host_gets_403(animals):
    client = create_app(animals).test_client()
    r = client.get("/api/search?q=cats", headers={"Origin": "http://attacker.example:8739"})
    assert r.status_code == 403 and "Origin" in r.get_json()["message"]
    for origin in ("null", "http://localhost:8000", "http://127.0.0.1", "https://[::1]:9"):
        assert client.get("/api/search?q=cats", headers={"Origin": origin}).status_code == 200, origin


def test_allowed_hosts_add_names_and_domains(animals):
    client = create_app(animals, allowed_hosts=["search.example.com", ".corp.example"]).test_client()
    for host in ("search.example.com:8000", "corp.example", "a.b.corp.example:1"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 200, host
    for host in ("example.com", "xcorp.example", "search.example.com.attacker.example"):
        assert client.get("/api/health", headers={"Host": host}).status_code == 421, host
    anything = create_app(animals, allowed_hosts=["*"]).test_client()
    assert anything.get("/api/health", headers={"Host": "whatever.example"}).status_code == 200


def test_the_rule_answers_the_listening_name_and_parses_its_option():
    rule = HostRule("search.lan", parse_allowed_hosts(["a.example, .b.example", "[::2]"]))
    assert rule.allows_host("search.lan:8000") and rule.allows_host("a.example") and rule.allows_host("x.b.example")
    assert rule.allows_host("[::2]:80") and rule.allows_host(None)  # no Host (HTTP/1.0): no browser
    assert not rule.allows_host("other.lan:8000") and not rule.allows_host("search.lan:port")
    assert not HostRule("0.0.0.0").allows_host("0.0.0.0.attacker.example")
    for bad in ("http://a.example", "a.example:8000", "a b", "*.example.com"):
        with pytest.raises(ValueError, match="allowed host"):
            parse_allowed_hosts([bad])


def test_serve_refuses_a_bad_allowed_host_before_opening_anything(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--index", str(tmp_path / "none"), "--allowed-hosts", "http://x.example"])
    assert result.exit_code == 2 and "--allowed-hosts" in result.output and "allowed host" in result.output
    assert not any(tmp_path.iterdir())


def test_mcp_http_gets_the_same_names():
    pytest.importorskip("mcp")
    import asyncio

    from mcp.server.transport_security import TransportSecurityMiddleware
    from starlette.requests import Request

    middleware = TransportSecurityMiddleware(HostRule("127.0.0.1").mcp_security())

    def status(host: str, origin: str | None = None):
        headers = [(b"host", host.encode())] + ([(b"origin", origin.encode())] if origin else [])
        refused = asyncio.run(middleware.validate_request(Request({"type": "http", "headers": headers})))
        return refused.status_code if refused else 200

    assert status("attacker.example:8765") == 421
    assert status("127.0.0.1:8765", "http://attacker.example:8765") == 403
    assert status("127.0.0.1:8765") == status("localhost:8765") == status("[::1]:8765") == 200


# -- 2: POST /api/index and the key's index limit ----------------------------------------------

def test_post_api_index_honours_the_index_and_the_keys_limit(animals, tmp_path):
    from searcher.readers.options import LoadOptions
    from searcher.web.writes import watch_folders

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kept.txt").write_text("Wrens nest in the ivy.")
    app = create_app(animals, keys=KEYS)
    watcher = watch_folders(app, [docs], LoadOptions(workers=0), reconcile_every=None, settle=0)  # not started
    client = app.test_client()
    r = client.post("/api/index?index=doesnotexist", headers=bearer(ADMIN))
    assert r.status_code == 404 and "doesnotexist" in r.get_json()["message"]
    r = client.post("/api/index", headers=bearer(ADMIN_MAIL))  # may not touch the watched index
    assert r.status_code == 403 and str(docs) not in r.get_data(as_text=True)
    assert client.post("/api/index?index=idx", headers=bearer(ADMIN_MAIL)).status_code == 403
    assert watcher.runs == 0 and animals.get_document(str(docs / "kept.txt")) is None  # nothing ran
    r = client.post("/api/index?index=idx", headers=bearer(ADMIN))
    assert r.status_code == 200 and r.get_json()["added"] == 1 and watcher.runs == 1


# -- 8: a write on a full disk ---------------------------------------------------------------

@pytest.mark.parametrize("step, code, status", [("vectors.write", errno.ENOSPC, 507),
                                                 ("sqlite.full", errno.ENOSPC, 507),
                                                 ("vectors.fsync", errno.EIO, 503)])
def test_a_write_the_disk_refuses_says_why_and_that_nothing_was_written(animals, monkeypatch, step, code, status):
    client = create_app(animals, keys=KEYS).test_client()
    fault = inject(monkeypatch, step, code, animals)
    text = " ".join(f"Barn owls hunt voles at dusk, note {i}." for i in range(300))  # ~12 kB: past a page
    r = client.post("/api/documents", json={"id": "owl", "text": text}, headers=bearer(ADMIN))
    assert r.status_code == status, r.get_data(as_text=True)
    body = r.get_json()
    assert body["status"] == status and "nothing was written" in body["message"]
    reason = {"vectors.write": "No space left on device", "sqlite.full": "SQLite: database or disk is full",
              "vectors.fsync": "Input/output error"}[step]
    assert reason in body["message"] and ("disk is full" in body["message"]) == (code == errno.ENOSPC)
    assert "[Errno" not in body["message"]
    assert str(animals.path) not in body["message"] and str(animals.path.resolve()) not in body["message"]
    assert ("Retry-After" in r.headers) == (status == 503)
    assert client.get("/api/documents/owl", headers=bearer(ADMIN)).status_code == 404
    fault.clear()
    assert client.post("/api/documents", json={"id": "owl", "text": "Barn owls."}, headers=bearer(ADMIN)).status_code == 201
    r = client.delete("/api/documents/owl", headers=bearer(ADMIN))
    assert r.status_code == 200


def test_a_delete_on_a_full_disk_is_507_too(animals, monkeypatch):
    client = create_app(animals, keys=KEYS).test_client()
    inject(monkeypatch, "vectors.rename", errno.ENOSPC, animals)
    r = client.delete("/api/documents/cat", headers=bearer(ADMIN))
    assert r.status_code == 507 and "nothing was written" in r.get_json()["message"]
    assert client.get("/api/documents/cat", headers=bearer(ADMIN)).status_code == 200


def test_a_write_that_committed_part_before_the_disk_filled_says_so(animals, monkeypatch):
    client = create_app(animals, keys=KEYS).test_client()
    animals.commit_chunks = 1  # every document its own commit
    fault = inject(monkeypatch, "vectors.write", errno.ENOSPC, animals)
    fault.armed = False
    real_commit, applied = animals.live.commit, []

    def commit_then_fill(changes):  # the first commit goes through, then the disk is full
        fault.armed = bool(applied)
        applied.append(1)
        return real_commit(changes)

    monkeypatch.setattr(animals.live, "commit", commit_then_fill)
    docs = [{"id": f"d{i}", "text": f"Document number {i} about owls and wrens."} for i in range(3)]
    r = client.post("/api/documents", json=docs, headers=bearer(ADMIN))
    assert r.status_code == 507, r.get_data(as_text=True)
    message = r.get_json()["message"]
    assert "part of the write was committed" in message and "nothing was written" not in message


# -- 13: sessions per key, and the rate of sign-ins ------------------------------------------

def test_one_key_cannot_sign_out_the_holders_of_other_keys():
    sessions = Sessions(lifetime=3600, limit=50, per_key=5)
    other = sessions.start("admin1")
    mine = [sessions.start("nothing") for _ in range(200)]
    assert sessions.key_id(other) == "admin1"  # still signed in
    assert sessions.count("nothing") == 5
    assert [sessions.key_id(t) for t in mine[-5:]] == ["nothing"] * 5 and sessions.key_id(mine[0]) is None


def test_past_the_total_the_key_with_most_sessions_loses_its_oldest():
    sessions = Sessions(lifetime=3600, limit=4, per_key=3)
    a, b = sessions.start("a"), sessions.start("b")
    c1, _, c3 = (sessions.start("c") for _ in range(3))
    assert sessions.key_id(a) == "a" and sessions.key_id(b) == "b"
    assert sessions.key_id(c1) is None and sessions.key_id(c3) == "c"


def test_sign_ins_are_rate_limited_per_address(animals):
    client = create_app(animals, keys=KEYS).test_client()
    codes = [client.post("/sign-in", data={"key": READ_NONE, "next": "/"}).status_code for _ in range(21)]
    assert codes[:20] == [303] * 20 and codes[20] == 429
    r = client.post("/sign-in", data={"key": ADMIN, "next": "/"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1 and "Set-Cookie" not in r.headers
    assert "Too many sign-ins" in r.get_data(as_text=True)


def test_a_flood_of_sign_ins_leaves_other_sessions_alone(animals):
    app = create_app(animals, keys=KEYS)
    sessions = app.extensions["searcher.auth"].sessions = Sessions(limit=50)  # (10,000 by default)
    victim = app.test_client()
    assert victim.post("/sign-in", data={"key": READ, "next": "/"}).status_code == 303
    cookie = victim.get_cookie(COOKIE).value
    for n in range(300):  # from many addresses, past the rate limit of one
        flood = app.test_client()
        r = flood.post("/sign-in", data={"key": READ_NONE, "next": "/"},
                       environ_base={"REMOTE_ADDR": f"10.0.{n // 250}.{n % 250}"})
        assert r.status_code == 303
    assert sessions.key_id(cookie) == "reader1"
    assert victim.get("/api/search?q=cats").status_code == 200


# -- 16: no model folder path on /about, /api/about or /api/stats -------------------------------

def test_about_and_stats_name_a_model_folder_without_its_path(tmp_path, fake_encoder):
    folder = tmp_path / "srv" / "models" / "my-model"
    encoder = copy.copy(fake_encoder)
    encoder.name = str(folder)  # as Encoder names a --model folder: its absolute path
    idx = Index.create(tmp_path / "idx", encoder=encoder)
    try:
        idx.add_documents(ANIMALS)
        idx.record_evaluation({"dataset": "tiny", "dataset_path": str(tmp_path / "data"), "split": "test",
                               "mode": "hybrid", "metrics": {"nDCG@10": 0.5}, "queries": 1, "documents": 9,
                               "ms_per_query": 1.0, "generation": idx.generation, "model": str(folder),
                               "precision": "exact", "backend": "fake", "recorded_at": "2026-12-06T00:00:00+00:00"})
        client = create_app(idx).test_client()
        about = client.get("/api/about")
        stats = client.get("/api/stats")
        page = client.get("/about")
        assert about.get_json()["model"]["name"] == "my-model"
        assert about.get_json()["evaluations"][0]["model"] == "my-model"
        assert stats.get_json()["model"] == "my-model"
        for r in (about, stats, page):
            assert r.status_code == 200
            text = r.get_data(as_text=True)
            assert str(tmp_path) not in text and "/srv/models" not in text
        assert "my-model" in page.get_data(as_text=True)
    finally:
        idx.close()


def test_serve_answers_its_host_and_the_allowed_names(tmp_path, fake_encoder, monkeypatch):
    """`searcher serve --host NAME --allowed-hosts ...` as run: the app it serves answers those names."""
    import searcher.web.server
    from searcher.web import launcher

    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    idx.add_documents(ANIMALS)
    answers = {}

    class Server:  # instead of waitress: ask the app, then stop as Ctrl+C would
        def __init__(self, app):
            self.client = app.test_client()

        def run(self):
            for host in ("search.lan:8000", "a.example", "x.corp.example", "127.0.0.1:8000", "attacker.example"):
                answers[host] = self.client.get("/api/health", headers={"Host": host}).status_code

        def close(self):
            pass

    monkeypatch.setattr(launcher, "open_index", lambda folder, **kw: idx)
    monkeypatch.setattr(searcher.web.server, "make_server", lambda app, *a: Server(app))
    result = CliRunner().invoke(main, ["serve", "--index", str(tmp_path / "idx"), "--host", "search.lan", "--no-auth",
                                       "--allowed-hosts", "a.example,.corp.example"])
    assert result.exit_code == 0, result.output
    assert answers == {"search.lan:8000": 200, "a.example": 200, "x.corp.example": 200, "127.0.0.1:8000": 200,
                       "attacker.example": 421}
