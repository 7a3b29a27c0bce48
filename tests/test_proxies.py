"""`searcher serve --trusted-proxy ADDR` (searcher/web/proxies.py): X-Forwarded-For names the
client only on a request that comes straight from a trusted proxy, so the sign-in limits
(searcher/web/auth.py) go by the real client behind one, and a client elsewhere cannot dodge
them by making addresses up. Through waitress for real (it removes the headers unless the app
trusts proxies), and through Flask's test client for peers other than loopback."""

from __future__ import annotations

import http.client
from urllib.parse import urlencode, urlsplit

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.web import create_app
from searcher.web.auth import FAILURE_LIMIT
from searcher.web.keys import KeyRing, add_key
from searcher.web.launcher import ServeConfig, ServeConfigError
from searcher.web.proxies import TrustedProxies, parse_trusted_proxies
from searcher.web.server import serving
from tests.conftest import ANIMALS

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, fake_encoder):
    folder = tmp_path_factory.mktemp("proxies")
    idx = Index.create(folder / "idx", encoder=fake_encoder)
    idx.add_documents(ANIMALS)
    path = folder / "keys.txt"
    _, read = add_key(path, "read")

    def make(*trusted):
        return create_app(idx, keys=KeyRing.from_file(path), trusted_proxies=trusted)

    yield make, read
    idx.close()


def sign_in(base: str, key: str, forwarded_for: str | None = None, proto: str | None = None):
    """(status, headers) of a sign-in POSTed to the server at `base`."""
    headers = dict(FORM)
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    if proto is not None:
        headers["X-Forwarded-Proto"] = proto
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request("POST", "/sign-in", body=urlencode({"key": key}), headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.headers
    finally:
        connection.close()


def test_without_trusted_proxies_made_up_addresses_do_not_dodge_the_limit(keyed):
    make, read = keyed
    with serving(make()) as base:
        for n in range(FAILURE_LIMIT):
            assert sign_in(base, "wrong", forwarded_for=f"198.51.100.{n}")[0] == 401
        status, headers = sign_in(base, read, forwarded_for="198.51.100.99")
        assert status == 429 and int(headers["Retry-After"]) >= 1  # all of them were 127.0.0.1


def test_behind_a_trusted_proxy_each_client_is_limited_on_its_own(keyed):
    make, read = keyed
    with serving(make("127.0.0.1")) as base:
        for _ in range(FAILURE_LIMIT):
            assert sign_in(base, "wrong", forwarded_for="203.0.113.1")[0] == 401
        assert sign_in(base, read, forwarded_for="203.0.113.1")[0] == 429
        assert sign_in(base, read, forwarded_for="203.0.113.2")[0] == 303  # another client, not limited
        # the client is the right-most address the proxy did not add itself: a made-up one on
        # the left changes nothing
        assert sign_in(base, read, forwarded_for="203.0.113.2, 203.0.113.1")[0] == 429
        assert sign_in(base, read, forwarded_for="203.0.113.1, 203.0.113.3")[0] == 303
        status, headers = sign_in(base, read, forwarded_for="203.0.113.4", proto="https")
        assert status == 303 and "Secure" in headers["Set-Cookie"]  # the scheme the client used


def test_a_peer_that_is_not_a_trusted_proxy_is_the_client(keyed):
    make, read = keyed
    with serving(make("10.0.0.0/8")) as base:  # the headers now reach the app, which must drop them
        for n in range(FAILURE_LIMIT):
            assert sign_in(base, "wrong", forwarded_for=f"10.1.2.{n}")[0] == 401
        assert sign_in(base, read, forwarded_for="10.9.9.9")[0] == 429
        assert sign_in(base, read, forwarded_for="192.0.2.1", proto="https")[0] == 429

    client = make("10.0.0.0/8").test_client()
    outside = {"REMOTE_ADDR": "192.0.2.50"}
    for n in range(FAILURE_LIMIT):
        r = client.post("/sign-in", data={"key": "wrong"}, headers={"X-Forwarded-For": f"10.0.0.{n}"},
                        environ_base=outside)
        assert r.status_code == 401
    r = client.post("/sign-in", data={"key": read}, headers={"X-Forwarded-For": "10.0.0.77"}, environ_base=outside)
    assert r.status_code == 429
    r = client.post("/sign-in", data={"key": read}, headers={"X-Forwarded-For": "192.0.2.50"},
                    environ_base={"REMOTE_ADDR": "10.2.3.4"})  # from the proxy: that client's limit
    assert r.status_code == 429
    r = client.post("/sign-in", data={"key": read}, environ_base={"REMOTE_ADDR": "10.2.3.4"})
    assert r.status_code == 303  # the proxy itself, with no header, is a client of its own


@pytest.mark.parametrize("peer, header, client", [
    ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", "made-up, 203.0.113.7, 10.0.0.5", "203.0.113.7"),  # through two trusted proxies
    ("127.0.0.1", "10.0.0.5, 10.0.0.6", "10.0.0.5"),  # all trusted: the left-most
    ("127.0.0.1", "203.0.113.7, not-an-address", "127.0.0.1"),  # nothing past garbage is believed
    ("127.0.0.1", "203.0.113.7:4711", "203.0.113.7"),
    ("127.0.0.1", "[2001:db8::1]:443", "2001:db8::1"),
    ("::ffff:127.0.0.1", "203.0.113.7", "203.0.113.7"),  # an IPv4 peer on an IPv6 socket
    ("192.0.2.1", "203.0.113.7", "192.0.2.1"),  # not a trusted proxy: the header is dropped
])
def test_the_client_is_the_right_most_address_not_a_trusted_proxy(peer, header, client):
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        start_response("204 No Content", [])
        return []

    middleware = TrustedProxies(app, parse_trusted_proxies(["127.0.0.1", "10.0.0.0/8"]))
    middleware({"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": header, "HTTP_FORWARDED": "for=1.1.1.1",
                "wsgi.url_scheme": "http"}, lambda *a: None)
    assert seen["REMOTE_ADDR"] == client
    assert "HTTP_X_FORWARDED_FOR" not in seen and "HTTP_FORWARDED" not in seen


def test_trusted_proxy_values_are_checked():
    assert [str(n) for n in parse_trusted_proxies(["127.0.0.1", "10.0.0.0/8,::1", " "])] == [
        "127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    with pytest.raises(ServeConfigError, match="not an IP address") as raised:
        ServeConfig(indexes=[("x", "idx")], trusted_proxies=["proxy.example.com"])
    assert raised.value.option == "--trusted-proxy"
    result = CliRunner().invoke(main, ["serve", "--trusted-proxy", "nginx", "--index", "nowhere"])
    assert result.exit_code == 2 and "--trusted-proxy" in result.output and "'nginx'" in result.output
