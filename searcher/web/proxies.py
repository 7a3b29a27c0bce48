"""Who the client is behind a reverse proxy (`searcher serve --trusted-proxy ADDR`).

A client may send any `X-Forwarded-For` it likes, so the header is believed only when the
request comes straight from a trusted proxy (its address, REMOTE_ADDR, is one of the
addresses or networks given). Then the client is the right-most address of the header that
is not itself a trusted proxy (each proxy appends the address it was reached from, so the
addresses left of the first untrusted one may be made up), and `X-Forwarded-Proto`
(http/https) is the scheme the client used (for the Secure cookie and the sign-in form's
origin check). From any other peer both headers are removed and the peer is the client.
The sign-in limits (searcher/web/auth.py) and the access log then go by the real client.

waitress removes these headers itself unless told not to (searcher/web/server.py lets them
through only to an app that trusts proxies, which then removes them here).
"""

from __future__ import annotations

import ipaddress
from typing import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_FORWARDED_HOST",
                     "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_BY", "HTTP_FORWARDED")


def parse_trusted_proxies(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """`--trusted-proxy` values (an IP address or a CIDR network each; comma-separated too) as
    networks; ValueError naming a value that is neither."""
    networks = []
    for value in values:
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise ValueError(f"{part!r} is not an IP address or a network (give one like 127.0.0.1, "
                                 f"10.0.0.0/8 or ::1)") from None
    return tuple(networks)


def address(text: str | None):
    """`text` as an IP address (an IPv6 address in brackets, or an IPv4 one with a port, as
    some proxies write them, too), or None."""
    text = (text or "").strip()
    if text.startswith("[") and "]" in text:
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # 1.2.3.4:5678
        text = text.partition(":")[0]
    try:
        found = ipaddress.ip_address(text)
    except ValueError:
        return None
    return found.ipv4_mapped or found if isinstance(found, ipaddress.IPv6Address) else found


class TrustedProxies:
    """WSGI middleware: sets REMOTE_ADDR (and wsgi.url_scheme) from the forwarding headers of
    a request that comes straight from one of `networks`, and removes them from any other."""

    def __init__(self, app, networks: Iterable[IPNetwork]):
        self.app = app
        self.networks = tuple(networks)

    def trusts(self, peer) -> bool:
        return peer is not None and any(peer.version == n.version and peer in n for n in self.networks)

    def client(self, peer: str, forwarded_for: str) -> str:
        """The client of a request from the trusted proxy `peer` with this X-Forwarded-For: the
        right-most address not a trusted proxy; where an entry is no address, the last trusted
        hop before it (nothing left of it can be believed); all trusted: the left-most."""
        client = peer
        for entry in reversed(forwarded_for.split(",")):
            hop = address(entry)
            if hop is None:
                break
            client = str(hop)
            if not self.trusts(hop):
                break
        return client

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR", "")
        if self.networks and self.trusts(address(peer)):
            forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
            if forwarded_for:
                environ["searcher.proxy"] = peer
                environ["REMOTE_ADDR"] = self.client(peer, forwarded_for)
            proto = (environ.get("HTTP_X_FORWARDED_PROTO") or "").split(",")[-1].strip().lower()
            if proto in ("http", "https"):
                environ["wsgi.url_scheme"] = proto
        for name in FORWARDED_HEADERS:  # read above or not at all: nothing after this sees them
            environ.pop(name, None)
        return self.app(environ, start_response)
