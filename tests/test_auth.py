"""API keys (searcher/web/keys.py, auth.py): the key file, the key ring, sign-in sessions and the failure limit,
and a keyed app through Flask's test client: no key, a wrong key, a read key on a write, an
admin key, the page's sign-in and sign-out. The browser's side of signing in is in
tests/test_web_browser.py; the write API itself in tests/test_writes.py."""

from __future__ import annotations

import os
import stat
from urllib.parse import parse_qs, urlsplit

import pytest

from searcher import Index
from tests.conftest import ANIMALS
from searcher.web import create_app
from searcher.web.auth import COOKIE, FailureLimiter, Sessions, safe_next
from searcher.web.keys import KeyFileError, KeyRing, add_key, key_id, parse_key_file, read_key_file, remove_key


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def api_error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error", "message", "status"} and body["status"] == status
    return body


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


# -- the key file ---------------------------------------------------------------------------

def test_added_keys_are_stored_as_hashes_in_a_private_file(tmp_path):
    path = tmp_path / "keys.txt"
    entry, key = add_key(path, "read")
    admin, admin_key = add_key(path, "admin")
    text = path.read_text()
    assert key not in text and admin_key not in text
    assert key.startswith("srch_") and key_id(key) == entry.id and len(key) > 40
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [(k.id, k.scope) for k in read_key_file(path)] == [(entry.id, "read"), (admin.id, "admin")]
    assert not [p for p in tmp_path.iterdir() if p.name != "keys.txt"]  # no temp file left behind

    ring = KeyRing.from_file(path)
    assert ring.check(key) == "read" and ring.check(admin_key) == "admin"
    assert ring.check(key[:-1] + ("A" if key[-1] != "A" else "B")) is None  # one character off
    assert ring.check(f"srch_{entry.id}_nope") is None and ring.check("") is None and ring.check("x y") is None

    assert remove_key(path, entry.id) and not remove_key(path, entry.id)
    assert [k.id for k in read_key_file(path)] == [admin.id]
    assert remove_key(path, admin_key)  # the whole key works as well as its id
    assert read_key_file(path) == []


def test_the_ring_reads_the_file_again_when_it_changes(tmp_path):
    path = tmp_path / "keys.txt"
    entry, key = add_key(path, "read")
    ring = KeyRing.from_file(path)
    assert ring.check(key) == "read"
    _, second = add_key(path, "admin")
    assert ring.check(second) == "admin"  # no restart
    remove_key(path, entry.id)
    assert ring.check(key) is None  # revoked at once
    path.write_text("garbage\n")  # a broken edit keeps the keys last read
    assert ring.check(second) == "admin"


@pytest.mark.parametrize("line, reason", [
    ("abc sha256:" + "0" * 64, "fields"),
    ("abc md5:" + "0" * 64 + " read", "sha256"),
    ("abc sha256:" + "0" * 63 + " read", "sha256"),
    ("abc sha256:" + "0" * 64 + " write", "scope"),
    ("a-b sha256:" + "0" * 64 + " read", "id"),
    ("abc sha256:" + "0" * 64 + " read notes,,mail", "index name"),
    ("abc sha256:" + "0" * 64 + " read *,mail", "comma-separated names"),
])
def test_bad_key_file_lines_are_refused_with_the_line(line, reason):
    with pytest.raises(KeyFileError, match=reason) as e:
        parse_key_file(f"# header\n\n{line}\n", "keys.txt")
    assert "keys.txt:3" in str(e.value)


def test_key_file_format_has_a_place_for_indexes():
    [key] = parse_key_file("abc sha256:" + "a" * 64 + " admin *\n")
    assert (key.id, key.scope, key.indexes, key.index_limit) == ("abc", "admin", "*", None)
    [key] = parse_key_file("abc sha256:" + "a" * 64 + " read notes,mail\n")  # limited to two (tests/test_indexes.py)
    assert (key.indexes, key.index_limit) == ("notes,mail", frozenset({"notes", "mail"}))
    with pytest.raises(KeyFileError, match="used twice"):
        parse_key_file(("abc sha256:" + "a" * 64 + " read\n") * 2)


def test_sessions_end_after_their_lifetime_and_on_sign_out():
    clock = Clock()
    sessions = Sessions(lifetime=60, limit=2, clock=clock)
    a = sessions.start("k1")
    assert sessions.key_id(a) == "k1" and sessions.key_id("forged") is None and sessions.key_id(None) is None
    clock.now += 61
    assert sessions.key_id(a) is None
    b, c, d = sessions.start("k1"), sessions.start("k2"), sessions.start("k3")
    assert sessions.key_id(b) is None and sessions.key_id(c) == "k2"  # the oldest went past the limit
    sessions.end(d)
    assert sessions.key_id(d) is None


def test_failures_are_limited_per_client_in_a_sliding_window():
    clock = Clock()
    limiter = FailureLimiter(limit=3, window=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("a") == 0
        limiter.failed("a")
        clock.now += 10
    assert limiter.retry_after("a") == 30  # the first failure leaves the window in 30 s
    assert limiter.retry_after("b") == 0
    clock.now += 30
    assert limiter.retry_after("a") == 0


@pytest.mark.parametrize("target, expected", [
    ("/?q=cats", "/?q=cats"), ("/document?id=/home/a.md", "/document?id=/home/a.md"),
    ("//evil.com/x", "/"), ("/\\evil.com", "/"), ("https://evil.com/", "/"), ("evil", "/"),
    ("/\nSet-Cookie:x", "/"), (None, "/"),
])
def test_sign_in_only_goes_back_to_this_site(target, expected):
    assert safe_next(target) == expected


# -- a keyed app ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keyed(tmp_path_factory, fake_encoder):
    """(app factory, read key, admin key, key file) over a small fake-encoder index."""
    folder = tmp_path_factory.mktemp("auth")
    idx = Index.create(folder / "idx", encoder=fake_encoder)
    idx.add_documents(ANIMALS)
    path = folder / "keys.txt"
    _, read = add_key(path, "read")
    _, admin = add_key(path, "admin")

    def make(**options):
        return create_app(idx, keys=KeyRing.from_file(path), **options)

    yield make, read, admin, path
    idx.close()


@pytest.fixture
def client(keyed):
    return keyed[0]().test_client()


def test_without_a_key_the_api_is_401_json(client):
    for path in ("/api/search?q=cats", "/api/health", "/api/documents/cat", "/api/about", "/api/nothing"):
        r = client.get(path)
        assert api_error(r, 401)["error"] == "unauthorized", path
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        assert "kittens" not in r.get_data(as_text=True)
    api_error(client.post("/api/documents", json={"id": "x", "text": "y"}), 401)
    api_error(client.delete("/api/documents/cat"), 401)


def test_a_wrong_key_is_401(client, keyed):
    _, read, _, _ = keyed
    for header in (bearer("srch_00000000_nope"), bearer(read + "x"), {"Authorization": read},
                   {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}):
        body = api_error(client.get("/api/search?q=cats", headers=header), 401)
        assert "key" in body["message"].lower()


def test_a_read_key_reads_but_cannot_write(client, keyed):
    _, read, _, _ = keyed
    r = client.get("/api/search?q=kittens&mode=keyword", headers=bearer(read))
    assert r.status_code == 200 and r.get_json()["results"][0]["doc_id"] == "cat"
    assert r.headers["Cache-Control"] == "private" and "Authorization" in r.headers["Vary"]
    assert client.get("/api/documents/cat", headers=bearer(read)).status_code == 200
    assert client.get("/", headers=bearer(read)).status_code == 200  # pages too, for scripts
    body = api_error(client.post("/api/documents", json={"id": "x", "text": "y"}, headers=bearer(read)), 403)
    assert "admin" in body["message"]
    api_error(client.delete("/api/documents/cat", headers=bearer(read)), 403)
    assert client.get("/api/documents/cat", headers=bearer(read)).status_code == 200  # still there


def test_an_admin_key_reads_and_writes(client, keyed):
    _, _, admin, _ = keyed
    assert client.get("/api/search?q=cats", headers=bearer(admin)).status_code == 200
    r = client.post("/api/documents", json={"id": "owl", "text": "Owls hunt voles at night."}, headers=bearer(admin))
    assert r.status_code == 201 and r.get_json()["added"] == 1
    r = client.delete("/api/documents/owl", headers=bearer(admin))
    assert r.status_code == 200 and r.get_json()["deleted"] == 1 and r.get_json()["id"] == "owl"


def test_a_removed_key_is_refused_without_a_restart(keyed):
    make, _, _, path = keyed
    app = make()
    _, temporary = add_key(path, "read")
    client = app.test_client()
    assert client.get("/api/health", headers=bearer(temporary)).status_code == 200
    remove_key(path, temporary)
    api_error(client.get("/api/health", headers=bearer(temporary)), 401)


def test_wrong_keys_are_rate_limited_then_429_with_retry_after(keyed):
    make, read, _, _ = keyed
    client = make().test_client()
    for _ in range(5):
        api_error(client.get("/api/health", headers=bearer("srch_00000000_guess")), 401)
    r = client.get("/api/health", headers=bearer(read))  # even the right key waits now
    assert api_error(r, 429)["error"] == "too_many_requests"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    other = client.get("/api/health", headers=bearer(read), environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200  # per client address


def sign_in(client, key: str, next_path: str = "/"):
    return client.post("/sign-in", data={"key": key, "next": next_path})


def test_the_page_redirects_to_sign_in_and_the_cookie_opens_it(client, keyed):
    _, read, _, _ = keyed
    r = client.get("/?q=cats&k=3")
    assert r.status_code == 303
    location = r.headers["Location"]
    assert location.startswith("/sign-in?")  # relative, as every redirect of this app
    assert parse_qs(urlsplit(location).query)["next"] == ["/?q=cats&k=3"]
    form = client.get(location)
    assert form.status_code == 200 and "text/html" in form.content_type
    page = form.get_data(as_text=True)
    assert 'method="post"' in page and 'type="password"' in page and "<script>" not in page
    assert form.headers["Cache-Control"] == "no-store"
    assert client.get("/static/style.css").status_code == 200  # the form's styles need no key

    wrong = sign_in(client, "srch_00000000_guess", "/?q=cats&k=3")
    assert wrong.status_code == 401 and "not valid" in wrong.get_data(as_text=True)
    assert COOKIE not in wrong.headers.get("Set-Cookie", "")

    ok = sign_in(client, read, "/?q=cats&k=3")
    assert ok.status_code == 303 and ok.headers["Location"] == "/?q=cats&k=3"
    cookie = ok.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and read not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; over https it is Secure
    page = client.get("/?q=cats&k=3")
    assert page.status_code == 200 and "Sign out" in page.get_data(as_text=True)
    assert client.get("/api/search?q=cats").status_code == 200  # the page's cookie reads the API
    assert client.get("/sign-in?next=/about").headers["Location"] == "/about"  # already signed in

    out = client.post("/sign-out")
    assert out.status_code == 303 and out.headers["Location"] == "/sign-in"
    assert client.get("/").status_code == 303


def test_over_https_the_cookie_is_secure(client, keyed):
    _, read, _, _ = keyed
    r = client.post("/sign-in", data={"key": read}, base_url="https://localhost")
    assert "Secure" in r.headers["Set-Cookie"]


def test_a_signed_in_page_cannot_write(client, keyed):
    """The cookie goes with any same-site request, so it only reads: a write needs the admin
    key itself in a Bearer header (no cross-site request can carry that)."""
    _, _, admin, _ = keyed
    assert sign_in(client, admin).status_code == 303
    body = api_error(client.post("/api/documents", json={"id": "x", "text": "y"}), 403)
    assert "Bearer" in body["message"]
    api_error(client.delete("/api/documents/cat"), 403)


def test_sign_in_from_another_site_is_refused(client, keyed):
    _, read, _, _ = keyed
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Sec-Fetch-Site": "same-site", "Origin": "null"}):
        r = client.post("/sign-in", data={"key": read}, headers=headers)
        assert r.status_code == 403 and "Set-Cookie" not in r.headers, headers
    for headers in ({"Origin": "http://localhost"}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-origin"}):
        assert client.post("/sign-in", data={"key": read}, headers=headers).status_code == 303, headers


def test_failed_sign_ins_are_rate_limited(keyed):
    make, read, _, _ = keyed
    client = make().test_client()
    for _ in range(5):
        assert sign_in(client, "wrong").status_code == 401
    r = sign_in(client, read)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert "Too many" in r.get_data(as_text=True) and "Set-Cookie" not in r.headers


def test_a_forged_or_stale_cookie_is_not_a_session(client):
    client.set_cookie(COOKIE, "forged")
    assert client.get("/").status_code == 303
    api_error(client.get("/api/stats"), 401)


def test_without_keys_nothing_changes_but_writes_are_refused(keyed):
    make, _, _, _ = keyed
    app = make()
    plain = create_app(app.extensions["searcher"].index)
    client = plain.test_client()
    assert client.get("/api/health").status_code == 200 and client.get("/").status_code == 200
    assert client.get("/sign-in").status_code == 404
    body = api_error(client.post("/api/documents", json={"id": "x", "text": "y"}), 403)
    assert "--api-keys" in body["message"]
    api_error(client.delete("/api/documents/cat"), 403)
