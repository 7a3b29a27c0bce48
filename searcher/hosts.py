"""Which Host names a local HTTP server answers: the one rule against DNS rebinding, for
`searcher serve` (searcher/web/app.py's request hook) and `searcher mcp --http` (the MCP SDK's own
check, given these names: `mcp_security`).

A page on attacker.example whose name the attacker then points at 127.0.0.1 makes the
browser send requests to this machine that are same-origin for that page, so it can read
the answers. They still carry `Host: attacker.example`: a server that answers only its own
names sees that. The names answered are the localhost forms (`localhost`, `127.0.0.1`,
`::1`), the address the server listens on, and those allowed (`serve --allowed-hosts`: a
name, `.example.com` for that domain and every name under it, or `*` for any); an IP address
is always answered, since no DNS is involved in reaching one. Ports are not compared (a
proxy may forward another). A foreign Host gets 421, as the MCP SDK answers it; an `Origin`
header naming a foreign host (a request sent by another site's page) gets 403. A request
without Host (HTTP/1.0; no browser sends one) is answered.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
ANY = "*"
WILDCARD_ADDRESSES = ("", "0.0.0.0", "::")  # listening on every address: the server has no one name
_LABEL = r"(?!-)[a-z0-9_-]{1,63}(?<!-)"
_NAME = re.compile(rf"{_LABEL}(\.{_LABEL})*")


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_name(value: str) -> str | None:
    """The name in a Host header or a netloc (`name`, `name:port`, `[v6]:port`), lower-cased;
    None when it is not one."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:] if end > 0 else "x"
        if end < 0 or (rest and not re.fullmatch(r":\d{1,5}", rest)):
            return None
        name = value[1:end]
        return name if is_ip(name) else None
    name, sep, port = value.partition(":")
    if sep and not re.fullmatch(r"\d{1,5}", port):
        return None
    return name if (_NAME.fullmatch(name) or is_ip(name)) else None


def check_allowed_host(entry: str) -> str:
    """One `--allowed-hosts` entry, lower-cased: a host name or address, `.domain` (the domain
    and every name under it), or `*`; ValueError for anything else (a port, a URL, a space)."""
    value = entry.strip().lower()
    if value == ANY:
        return value
    bare = value.removeprefix(".")
    bare = bare[1:-1] if bare.startswith("[") and bare.endswith("]") else bare
    if _NAME.fullmatch(bare) or (is_ip(bare) and not value.startswith(".")):
        return bare if not value.startswith(".") else value
    raise ValueError(f"an allowed host is a name (search.example.com), .example.com for a domain and "
                     f"the names under it, an IP address, or * for any, without scheme or port: "
                     f"not {entry[:80]!r}")


def parse_allowed_hosts(values: Iterable[str]) -> tuple[str, ...]:
    """`--allowed-hosts` values (each comma-separated, repeatable) as checked entries."""
    out: list[str] = []
    for value in values:
        for entry in value.split(","):
            if entry.strip():
                out.append(check_allowed_host(entry))
    return tuple(dict.fromkeys(out))


class HostRule:
    """The Host names a server answers: the localhost forms, `listen` (the address it listens
    on, when that is a name or address of its own) and `allowed` (see `check_allowed_host`)."""

    def __init__(self, listen: str | None = None, allowed: Iterable[str] = ()):
        names = set(LOOPBACK_NAMES)
        if listen is not None and listen.strip("[]").lower() not in WILDCARD_ADDRESSES:
            names.add(listen.strip("[]").lower())
        allowed = [check_allowed_host(a) for a in allowed]
        self.any = ANY in allowed
        self.names = frozenset(names | {a for a in allowed if not a.startswith(".")})
        self.domains = tuple(a for a in allowed if a.startswith("."))

    def allows_name(self, name: str) -> bool:
        return (self.any or is_ip(name) or name in self.names
                or any(name == d[1:] or name.endswith(d) for d in self.domains))

    def allows_host(self, header: str | None) -> bool:
        """Whether a request with this Host header is for this server (None: no header, answered)."""
        if header is None:
            return True
        name = host_name(header)
        return self.any or (name is not None and self.allows_name(name))

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a request with this Origin header may be answered: none, `null` (a page of
        this app sends that under its no-referrer policy), or an http(s) origin on an allowed host."""
        if origin is None or origin.strip() in ("", "null") or self.any:
            return True
        parts = urlsplit(origin.strip())
        name = host_name(parts.netloc) if parts.scheme in ("http", "https") else None
        return name is not None and self.allows_name(name)

    def refusal(self, host: str | None, origin: str | None) -> tuple[int, str] | None:
        """(status, reason) for a request this server must not answer, None for one it may."""
        if not self.allows_host(host):
            return 421, (f"This server does not answer to the name {host[:100]!r} (the request's Host header), "
                         f"which protects it from DNS rebinding. If that name is really this server's, start it "
                         f"with --allowed-hosts NAME.")
        if not self.allows_origin(origin):
            return 403, (f"Requests sent by pages of {origin[:100]!r} (the request's Origin header) are refused: "
                         f"that is not this server's site. If it is, start it with --allowed-hosts NAME.")
        return None

    def mcp_security(self):
        """These names as the MCP SDK's TransportSecuritySettings (its own check answers 421 / 403)."""
        from mcp.server.transport_security import TransportSecuritySettings

        if self.any:
            return TransportSecuritySettings(enable_dns_rebinding_protection=False)
        hosts = sorted(f"[{n}]" if ":" in n else n for n in self.names)
        return TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=[p for h in hosts for p in (h, f"{h}:*")],
            allowed_origins=[f"{scheme}://{p}" for h in hosts for scheme in ("http", "https")
                             for p in (h, f"{h}:*")],
        )
