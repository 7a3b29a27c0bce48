"""Web sites: one page (`searcher index https://host/docs/page.html`), or the pages under a URL
prefix, crawled (`crawl=True`; the command line's `--crawl` is to come).

`WebSite(url, crawl=True, ...)` follows links and sitemaps from the prefix, same host and
under the prefix only, obeying robots.txt (its rules for `searcher`, its Crawl-delay, its
Sitemap lines), at most `max_pages` pages and `rate` requests a second. A second run given
the first's `state` (or the same `state_path`) sends If-None-Match / If-Modified-Since, so an
unchanged page costs a 304 and no body; its links are remembered in the state, so the crawl
still reaches the pages behind it. Each page is an `Item` (searcher/sources/base.py): `key`
its URL (no fragment), `version` its validators as a JSON list (`["etag:\"...\"",
"modified:<HTTP date>"]`, either or both, or `["sha256:<hex>"]` of the body where the server
sends neither), `name` a file name whose suffix picks the reader (HTML through trafilatura's
main text, PDF, ...), `size`, `modified` (Last-Modified, ISO 8601 UTC), `folder` (the URL up
to its last "/"), `metadata` (url: where it was fetched after redirects, content_type,
lastmod from a sitemap). Without `crawl` the URL is one page.

Only the standard library: urllib for HTTP, urllib.robotparser, ElementTree for sitemaps.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
import urllib.robotparser
import zlib
from collections import OrderedDict
from datetime import timezone
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator
from urllib.parse import quote, unquote, urldefrag, urljoin, urlsplit, urlunsplit
from xml.etree import ElementTree

from searcher.readers.documents import Skipped
from searcher.sources.base import Item, SourceError

USER_AGENT = "searcher"  # the name robots.txt rules are matched against
USER_AGENT_HEADER = "searcher/0.1 (semantic search indexer; robots.txt obeyed)"

# Content types the readers read, and the suffix that picks the reader (searcher/readers/formats.py)
CONTENT_SUFFIXES = {
    "text/html": ".html", "application/xhtml+xml": ".html", "text/plain": ".txt", "text/markdown": ".md",
    "application/pdf": ".pdf", "text/csv": ".csv", "application/epub+zip": ".epub",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "message/rfc822": ".eml",
}
HTML_TYPES = ("text/html", "application/xhtml+xml")
# Link suffixes worth a request: pages (no suffix, server-side scripts) and the formats read.
PAGE_SUFFIXES = {"", ".html", ".htm", ".xhtml", ".shtml", ".php", ".asp", ".aspx", ".jsp", ".cgi"}
READ_SUFFIXES = {".txt", ".md", ".markdown", ".pdf", ".csv", ".tsv", ".jsonl", ".epub", ".docx", ".pptx", ".eml"}
KEEP_BODIES = 64  # pages whose bytes are kept for read(): the wiring reads an item as it comes
MAX_SITEMAPS = 50  # sitemap files read a run (an index of sitemaps included)


def canonical(url: str) -> str:
    """A URL as pages are keyed: scheme and host lowercased, no credentials, no default port, no
    fragment, an empty path as "/", characters a URL may not hold (spaces, non-ASCII)
    percent-encoded (what is encoded already stays as it is)."""
    url = urldefrag(url)[0]
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return urlunsplit((scheme, netloc, path, query, ""))


def validators(version: str) -> dict[str, str]:
    """The conditional request headers for a page of this version (none for a digest)."""
    headers = {}
    for part in _version_parts(version):
        kind, _, value = part.partition(":")
        if kind == "etag":
            headers["If-None-Match"] = value
        elif kind == "modified":
            headers["If-Modified-Since"] = value
    return headers


def _version_parts(version: str) -> list[str]:
    try:
        parts = json.loads(version)
    except ValueError:
        return []
    return [p for p in parts if isinstance(p, str)] if isinstance(parts, list) else []


def _version(etag: str | None, modified: str | None, body: bytes | None) -> str:
    parts = [f"etag:{etag}"] if etag else []
    if modified:
        parts.append(f"modified:{modified}")
    if not parts:
        parts.append(f"sha256:{hashlib.sha256(body or b'').hexdigest()}")
    return json.dumps(parts)


class _Links(HTMLParser):
    """The links of a page (<a>, <area>, <link rel=alternate>), its <base href>, and its meta robots."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.base: str | None = None
        self.nofollow = self.noindex = False

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        if tag in ("a", "area") and a.get("href"):
            if "nofollow" not in a.get("rel", "").lower().split():
                self.links.append(a["href"].strip())
        elif tag == "link" and a.get("href") and "alternate" in a.get("rel", "").lower().split():
            self.links.append(a["href"].strip())
        elif tag == "base" and a.get("href") and self.base is None:
            self.base = a["href"].strip()
        elif tag == "meta" and a.get("name", "").lower() in ("robots", USER_AGENT):
            content = a.get("content", "").lower()
            self.nofollow |= "nofollow" in content or "none" in content
            self.noindex |= "noindex" in content or "none" in content


def page_links(html: str, url: str) -> tuple[list[str], bool, bool]:
    """The absolute URLs a page links to, and whether its meta robots say nofollow, noindex."""
    parser = _Links()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; a page it fails on gives the links found so far
        pass
    base = urljoin(url, parser.base) if parser.base else url
    links = []
    for href in parser.links:
        if href.lower().startswith(("javascript:", "mailto:", "tel:", "data:")):
            continue
        try:
            links.append(canonical(urljoin(base, href)))
        except ValueError:  # a bad port, a bad IPv6 literal
            continue
    return links, parser.nofollow, parser.noindex


def sitemap_urls(data: bytes, limit: int = 50 * 1024 * 1024) -> tuple[list[tuple[str, str | None]], list[str]]:
    """A sitemap's pages ((url, lastmod)) and, for a sitemap index, the sitemaps it lists; a
    gzipped one (`sitemap.xml.gz`) unpacked, to at most `limit` bytes."""
    if data[:2] == b"\x1f\x8b":
        data = _decoded(data, "gzip", limit)
    root = ElementTree.fromstring(data)
    pages, maps = [], []
    for node in root:
        tag = node.tag.rsplit("}", 1)[-1]
        loc = lastmod = None
        for child in node:
            name = child.tag.rsplit("}", 1)[-1]
            if name == "loc":
                loc = (child.text or "").strip()
            elif name == "lastmod":
                lastmod = (child.text or "").strip() or None
        if not loc:
            continue
        if tag == "url":
            pages.append((loc, lastmod))
        elif tag == "sitemap":
            maps.append(loc)
    return pages, maps


class RateLimit:
    """At most `rate` requests a second: each request waits until 1/rate seconds after the last
    one began (a token bucket of one token). `clock` and `sleep` are time's unless a test gives
    its own."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if not rate > 0:
            raise ValueError("rate must be more than 0 requests a second")
        self.interval = 1.0 / rate
        self.clock, self.sleep = clock, sleep
        self.next = None

    def wait(self) -> None:
        now = self.clock()
        if self.next is not None and now < self.next:
            self.sleep(self.next - now)
            now = self.next
        self.next = now + self.interval

    def slow_to(self, interval: float) -> None:
        """At least `interval` seconds between requests from now on (robots.txt's Crawl-delay),
        the request just made included."""
        if interval > self.interval:
            if self.next is not None:
                self.next += interval - self.interval
            self.interval = interval


class _Response:
    def __init__(self, url: str, status: int, headers, body: bytes | None):
        self.url, self.status, self.headers, self.body = url, status, headers, body


class WebSiteError(SourceError):
    """A web site that cannot be crawled as asked: a URL or an option refused."""


class FetchError(WebSiteError):
    """A request that gave no page: the reason, for a Skipped (or read's failure); `status`
    the HTTP status, None when no HTTP answer came (no connection, a time-out). Raised by
    items() itself when the site does not answer at all: nothing is listed, nothing is gone."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class WebSite:
    """The pages under `url` (a prefix: a page is under it when its URL starts with it, on the
    same scheme, host and port), crawled when `crawl` (links, sitemaps) or the one page alone.

    items() yields a `Item` for each page fetched or unchanged (304), or a `Skipped` with the
    reason (HTTP 404 for a link to a page never seen, a time-out, a server error, a redirect
    out of the prefix, a type no reader reads, a page over `max_bytes`); pages robots.txt
    disallows, or a meta robots noindex, are not requested or not yielded, and counted in
    `stats`. A page the state knows that now answers 404 or 410 is gone: not yielded, as a
    deleted file. One that fails for a while (no answer, 5xx, 429) is Skipped, keeping its
    documents, and the links it had are followed still, so the pages behind it are not taken
    as gone. A site that does not answer at all (its robots.txt, or the first page, gets no
    HTTP answer) raises FetchError: nothing is listed. read(item) gives the page's bytes
    (kept from the crawl, or fetched again). `state` is the previous run's `site.state` (JSON-able: each page's
    version and links); after items() is exhausted `site.state` holds this run's. With
    `state_path` the state is read from that JSON file and written back there (atomically)
    when items() is exhausted: what a caller that records `options` gives to make re-runs
    conditional. `options`: the settings given other than their defaults (no secret; a URL
    with credentials is stored without them)."""

    scheme = "https"  # or "http", as the URL says

    def __init__(self, url: str, *, crawl: bool = False, max_pages: int = 1000, rate: float = 2.0,
                 timeout: float = 30.0, max_bytes: int = 50 * 1024 * 1024, state: dict | None = None,
                 sitemaps: bool = True, obey_robots: bool = True, state_path: str | os.PathLike | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 opener: urllib.request.OpenerDirector | None = None):
        try:
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError
            canonical(url)
        except ValueError:
            raise WebSiteError("a web site's URL is http:// or https:// with a host (and a port, if any, a number)") \
                from None
        if max_pages < 1:
            raise WebSiteError("max_pages must be at least 1")
        if not rate > 0:
            raise WebSiteError("rate must be more than 0 requests a second")
        if not timeout > 0 or max_bytes < 1:
            raise WebSiteError("timeout and max_bytes must be more than 0")
        self.url = canonical(url)  # no credentials, no fragment
        self.scheme = urlsplit(self.url).scheme
        self.crawl, self.max_pages, self.timeout, self.max_bytes = crawl, max_pages, timeout, max_bytes
        self.use_sitemaps, self.obey_robots = sitemaps, obey_robots
        self.limit = RateLimit(rate, clock, sleep)
        self.state_path = Path(state_path).expanduser() if state_path is not None else None
        if state is None and self.state_path is not None:
            state = _load_state(self.state_path, self.url)
        self.previous: dict = dict((state or {}).get("pages", {}))
        given = {"crawl": crawl, "max_pages": max_pages, "rate": rate, "timeout": timeout, "max_bytes": max_bytes,
                 "sitemaps": sitemaps, "obey_robots": obey_robots,
                 "state_path": str(self.state_path) if self.state_path else None}
        defaults = {"crawl": False, "max_pages": 1000, "rate": 2.0, "timeout": 30.0, "max_bytes": 50 * 1024 * 1024,
                    "sitemaps": True, "obey_robots": True, "state_path": None}
        self.options = {k: v for k, v in given.items() if v != defaults[k]}
        self.state: dict = {"url": self.url, "pages": {}}
        self.stats = {"requests": 0, "pages": 0, "unchanged": 0, "robots_disallowed": 0, "noindex": 0,
                      "skipped": 0, "gone": 0}
        self._bodies: OrderedDict[str, bytes] = OrderedDict()  # the last KEEP_BODIES pages' bytes
        self._robots: urllib.robotparser.RobotFileParser | None = None
        self._opener = opener or urllib.request.build_opener(_SameHostRedirects(self.allowed))
        origin = urlsplit(self.url)
        self._origin = f"{origin.scheme}://{origin.netloc}"

    # -- scope -------------------------------------------------------------------------------

    def in_scope(self, url: str) -> bool:
        return url.startswith(self.url) or url + "/" == self.url

    def _worth_fetching(self, url: str) -> bool:
        suffix = PurePosixPath(unquote(urlsplit(url).path)).suffix.lower()
        return suffix in PAGE_SUFFIXES or suffix in READ_SUFFIXES

    # -- HTTP ----------------------------------------------------------------------------------

    def _get(self, url: str, headers: dict | None = None) -> _Response:
        """One GET (its redirects on the same host followed: one request in `stats`)."""
        self.limit.wait()
        self.stats["requests"] += 1
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT_HEADER,
                                                       "Accept-Encoding": "gzip, deflate", **(headers or {})})
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body = response.read(self.max_bytes + 1)
                if len(body) > self.max_bytes:
                    raise FetchError(f"over {self.max_bytes:,} bytes (max_bytes); skipped", response.status)
                body = _decoded(body, response.headers.get("Content-Encoding"), self.max_bytes)
                return _Response(response.geturl(), response.status, response.headers, body)
        except urllib.error.HTTPError as e:
            if e.code == 304:
                return _Response(url, 304, e.headers, None)
            if 300 <= e.code < 400 and "redirected" in str(e.reason):
                raise FetchError(str(e.reason), e.code) from None
            raise FetchError(f"HTTP {e.code} {e.reason}", e.code) from None
        except (socket.timeout, TimeoutError):
            raise FetchError(f"no answer in {self.timeout:g} s (timeout)") from None
        except urllib.error.URLError as e:
            reason = e.reason
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise FetchError(f"no answer in {self.timeout:g} s (timeout)") from None
            raise FetchError(f"cannot connect ({reason})") from None
        except (OSError, ValueError, zlib.error) as e:
            raise FetchError(f"cannot fetch ({type(e).__name__}: {e})") from None

    # -- robots and sitemaps -------------------------------------------------------------------

    def _load_robots(self) -> None:
        robots = urllib.robotparser.RobotFileParser(self._origin + "/robots.txt")
        if not self.obey_robots:
            robots.allow_all = True
            self._robots = robots
            return
        try:
            response = self._get(self._origin + "/robots.txt")
            text = (response.body or b"").decode("utf-8", "replace")
            robots.parse(text.splitlines())
        except FetchError as e:
            if e.status is None:  # no answer at all: the listing fails as a whole
                raise FetchError(f"cannot reach {self._origin} ({e}); nothing was listed") from None
            if e.status in (401, 403):
                robots.disallow_all = True  # as urllib.robotparser reads these answers
            else:
                robots.allow_all = True  # no robots.txt (404), or none could be read
        delay = robots.crawl_delay(USER_AGENT)
        if delay:
            self.limit.slow_to(float(delay))
        rate = robots.request_rate(USER_AGENT)
        if rate and rate.requests:
            self.limit.slow_to(rate.seconds / rate.requests)
        self._robots = robots

    def allowed(self, url: str) -> bool:
        return self._robots is None or self._robots.can_fetch(USER_AGENT, url)

    def _sitemap_pages(self) -> Iterator[tuple[str, str | None]]:
        listed = list((self._robots.site_maps() if self._robots is not None else None) or [])
        queue = [canonical(u) for u in listed]
        if not queue:  # none named by robots.txt: where sitemaps usually are
            queue.append(self._origin + "/sitemap.xml")
            if self.url.endswith("/") and self.url != self._origin + "/":
                queue.append(self.url + "sitemap.xml")
        seen: set[str] = set()
        while queue and len(seen) < MAX_SITEMAPS:
            sitemap = queue.pop(0)
            if sitemap in seen or urlsplit(sitemap).netloc != urlsplit(self.url).netloc:
                continue
            seen.add(sitemap)
            try:
                pages, maps = sitemap_urls(self._get(sitemap).body or b"", self.max_bytes)
            except (FetchError, ElementTree.ParseError, OSError, EOFError):
                continue  # no sitemap, or not one that reads: the links still lead on
            queue.extend(canonical(m) for m in maps)
            for url, lastmod in pages:
                try:
                    yield canonical(url), lastmod
                except ValueError:
                    continue

    # -- the crawl -----------------------------------------------------------------------------

    def items(self) -> Iterator[Item | Skipped]:
        """The pages, breadth first from the prefix (then the sitemaps' pages not reached)."""
        self._load_robots()
        queue: list[str] = [self.url]
        queued = {self.url}
        lastmods: dict[str, str] = {}
        sitemap_pending = self.crawl and self.use_sitemaps
        done = 0
        yielded: set[str] = set()
        while done < self.max_pages:
            if not queue and sitemap_pending:
                sitemap_pending = False
                for url, lastmod in self._sitemap_pages():
                    if self.in_scope(url) and url not in queued:
                        queued.add(url)
                        queue.append(url)
                        if lastmod:
                            lastmods[url] = lastmod
            if not queue:
                break
            url = queue.pop(0)
            if not self.allowed(url):
                self.stats["robots_disallowed"] += 1
                continue
            done += 1
            item, links = self._visit(url, lastmods.get(url))
            if isinstance(item, Item):
                queued.add(item.key)  # where a redirect led
                if item.key in yielded:
                    continue
                yielded.add(item.key)
            if item is not None:
                yield item
            if self.crawl:
                for link in links:
                    if link not in queued and self.in_scope(link) and self._worth_fetching(link):
                        queued.add(link)
                        queue.append(link)
        if self.state_path is not None:
            _save_state(self.state_path, self.state)

    def _visit(self, url: str, lastmod: str | None) -> tuple[Item | Skipped | None, list[str]]:
        before = self.previous.get(url) or {}
        headers = validators(before.get("version", "")) if before.get("links") is not None else {}
        try:
            response = self._get(url, headers)
        except FetchError as e:
            if e.status is None and self.stats["requests"] == 1:  # the first request, unanswered
                raise FetchError(f"cannot reach {self._origin} ({e}); nothing was listed") from None
            if e.status in (404, 410) and before.get("version"):
                self.stats["gone"] += 1  # a page indexed before, now gone: absent, as a deleted file
                return None, []
            self.stats["skipped"] += 1
            if before.get("version") and (e.status is None or e.status >= 500 or e.status == 429):
                # a passing failure: the page keeps its documents (Skipped), and the pages it
                # linked to last time are still visited, so that they are not taken as gone
                self.state["pages"][url] = before
                return Skipped(url, str(e)), list(before.get("links") or [])
            return Skipped(url, str(e)), []
        final = canonical(response.url)
        if final != url and not self.in_scope(final):
            self.stats["skipped"] += 1
            return Skipped(url, f"redirected out of {self.url} (to {final}); not followed"), []
        if response.status == 304:
            self.stats["unchanged"] += 1
            links = list(before.get("links") or [])
            self.state["pages"][url] = before
            if before.get("noindex"):
                self.stats["noindex"] += 1
                return None, links
            if before.get("skipped"):
                self.stats["skipped"] += 1
                return Skipped(url, before["skipped"]), links
            key = before.get("key") or url
            item = Item(key, before["version"], before.get("name") or _name(url, "text/html"),
                           size=before.get("size"), modified=before.get("modified"), folder=_folder(key),
                           metadata=dict(before.get("metadata") or {}))
            return item, links
        content_type = (response.headers.get_content_type() or "").lower()
        name = _name(final, content_type)
        links: list[str] = []
        noindex = False
        if content_type in HTML_TYPES:
            charset = response.headers.get_content_charset() or "utf-8"
            try:
                html = response.body.decode(charset, "replace")
            except LookupError:
                html = response.body.decode("utf-8", "replace")
            links, nofollow, noindex = page_links(html, final)
            if nofollow:
                links = []
        version = _version(response.headers.get("ETag"), response.headers.get("Last-Modified"), response.body)
        metadata = {"url": final, "content_type": content_type}
        modified = _http_date(response.headers.get("Last-Modified"))
        if lastmod:
            metadata["lastmod"] = lastmod
        size = len(response.body or b"")
        page = {"key": final, "version": version, "links": links, "name": name, "size": size,
                "modified": modified, "metadata": metadata}
        self.state["pages"][url] = page
        if noindex:
            page["noindex"] = True
            self.stats["noindex"] += 1
            return None, links
        if content_type not in CONTENT_SUFFIXES:
            page["skipped"] = f"content type '{content_type or '(none)'}' is not one the readers read"
            self.stats["skipped"] += 1
            return Skipped(url, page["skipped"]), links
        self.stats["pages"] += 1
        self._bodies[final] = response.body or b""
        while len(self._bodies) > KEEP_BODIES:
            self._bodies.popitem(last=False)
        return Item(final, version, name, size=size, modified=modified, folder=_folder(final),
                       metadata=metadata), links

    def read(self, item: Item) -> bytes:
        """The page's bytes: kept from the crawl (once; the last KEEP_BODIES pages'), else
        fetched again (FetchError when that fails)."""
        body = self._bodies.pop(item.key, None)
        if body is not None:
            return body
        response = self._get(item.key)
        if response.status != 200 or response.body is None:
            raise FetchError(f"HTTP {response.status}", response.status)
        return response.body

    def close(self) -> None:
        self._bodies.clear()


def _decoded(body: bytes, encoding: str | None, limit: int) -> bytes:
    """The body without its Content-Encoding (gzip, deflate), at most `limit` bytes of it
    unpacked (a small bomb that would unpack to gigabytes raises FetchError)."""
    encoding = (encoding or "").lower().strip()
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return body
    if encoding == "deflate" and body[:1] != b"\x78":  # raw deflate, without the zlib header
        unpacker = zlib.decompressobj(-zlib.MAX_WBITS)
    else:
        unpacker = zlib.decompressobj(zlib.MAX_WBITS | (16 if encoding != "deflate" else 0))
    data = unpacker.decompress(body, limit + 1)
    if len(data) > limit:
        raise FetchError(f"unpacks to over {limit:,} bytes (max_bytes); skipped", 200)
    return data


def _http_date(value: str | None) -> str | None:
    """An HTTP date as ISO 8601 UTC (HTTP dates are GMT)."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="seconds")


def _load_state(path: Path, url: str) -> dict | None:
    """The state a run over `url` left in `path`; None when there is none, it is unreadable,
    or it is another site's (every page is then fetched in full)."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("url") == url and isinstance(state.get("pages"), dict) else None


def _save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(state), encoding="utf-8")
    os.replace(temporary, path)


def _folder(url: str) -> str:
    return url.rsplit("/", 1)[0] if "/" in url.split("://", 1)[-1] else url


def _name(url: str, content_type: str) -> str:
    """A file name for the page whose suffix picks its reader: the URL's last segment, with the
    content type's suffix where the URL's is not that type's ("docs/" -> "index.html")."""
    raw = unquote(urlsplit(url).path)
    path = PurePosixPath(raw)
    stem = "index" if raw.endswith("/") or not path.name else path.name
    wanted = CONTENT_SUFFIXES.get(content_type)
    suffix = path.suffix.lower()
    if wanted is None:
        return stem
    if wanted == ".html" and suffix in (".html", ".htm"):
        return stem
    if suffix == wanted or (wanted == ".txt" and suffix in (".txt", ".md", ".markdown", ".csv", ".tsv", ".jsonl")):
        return stem
    if wanted == ".csv" and suffix == ".tsv":
        return stem
    return stem + wanted


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects followed on the same scheme, host and port only, and only where robots.txt
    allows (`allowed`); any other is an HTTP error, the page skipped. At most 5 of them."""

    max_redirections = 5

    def __init__(self, allowed: Callable[[str], bool]):
        super().__init__()
        self.allowed = allowed

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        old, new = urlsplit(req.full_url), urlsplit(urljoin(req.full_url, newurl))
        target = canonical(new.geturl())
        if (old.scheme, old.netloc) != (new.scheme, new.netloc):
            raise urllib.error.HTTPError(req.full_url, code, f"redirected to another host ({target}); not followed",
                                         headers, fp)
        if not self.allowed(target):
            raise urllib.error.HTTPError(req.full_url, code, f"redirected to {target}, which robots.txt disallows",
                                         headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)
