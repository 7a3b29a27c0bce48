"""The web source (searcher/sources/web.py) against a small site served on loopback by the test:
links followed under the prefix only, robots.txt obeyed, a sitemap's unlinked page found,
conditional requests on a second run (304s counted by the server), errors as Skipped, and
pages read through the readers (the main text: navigation, footer, cookie banner dropped)."""

from __future__ import annotations

import hashlib
import http.server
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from searcher.readers.documents import Document, Skipped
from searcher.readers.formats import READERS
from searcher.readers.options import LoadOptions
from searcher.sources import Item, SourceError, open_source
from searcher.sources.web import FetchError, RateLimit, WebSite, WebSiteError, canonical, page_links, sitemap_urls

from .source_contract import SourceContract

ARTICLE = """<html><head><title>Pruning roses</title><meta name="date" content="2023-04-05"></head>
<body><nav><a href="/docs/">Home</a> <a href="/docs/b.html">Watering</a> <a href="/about/">About us</a></nav>
<div id="cookie-banner" class="cookie-consent">We use cookies to improve your experience. Accept all cookies</div>
<main><article><h1>Pruning roses</h1>
<p>Roses are pruned in late winter, just as the buds begin to swell along the canes.</p>
<p>Cut each cane a little above an outward-facing bud, at an angle that sheds the rain.</p>
</article></main>
<footer>Copyright 2024 Example Gardens Ltd. All rights reserved. Privacy policy</footer></body></html>"""


def pdf_bytes(text: str) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 10, text)
    return bytes(pdf.output())


class Site:
    """Pages by path (body, content type, headers), served with ETag / Last-Modified and 304s;
    every request counted by path and status."""

    def __init__(self):
        self.pages: dict[str, tuple[bytes, str, dict]] = {}
        self.requests: Counter = Counter()
        self.statuses: Counter = Counter()
        self.delay: dict[str, float] = {}
        self.redirects: dict[str, str] = {}
        self.lock = threading.Lock()
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                path = self.path
                with site.lock:
                    site.requests[path] += 1
                if path in site.delay:
                    time.sleep(site.delay[path])
                if path in site.redirects:
                    return self.answer(301, b"", None, {"Location": site.base + site.redirects[path]})
                page = site.pages.get(path)
                if page is None:
                    return self.answer(404, b"not found", "text/plain", {})
                body, kind, headers = page
                etag = headers.get("ETag")
                if etag and self.headers.get("If-None-Match") == etag:
                    return self.answer(304, b"", None, headers)
                modified = headers.get("Last-Modified")
                if not etag and modified and self.headers.get("If-Modified-Since") == modified:
                    return self.answer(304, b"", None, headers)
                self.answer(200, body, kind, headers)

            def answer(self, status, body, kind, headers):
                with site.lock:
                    site.statuses[(self.path, status)] += 1
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if kind:
                    self.send_header("Content-Type", kind)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    try:
                        self.wfile.write(body)
                    except OSError:  # the client gave up (the time-out test)
                        pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def put(self, path: str, body: str | bytes, kind: str = "text/html; charset=utf-8", etag: bool = True,
            modified: str | None = None, headers: dict | None = None):
        data = body.encode() if isinstance(body, str) else body
        extra = dict(headers or {})
        if etag:
            extra["ETag"] = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        if modified:
            extra["Last-Modified"] = modified
        self.pages[path] = (data, kind, extra)

    def fetched(self, path: str) -> int:
        """Requests answered with a body (200)."""
        return self.statuses[(path, 200)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def site():
    s = Site()
    b = s.base
    s.put("/robots.txt", f"User-agent: *\nDisallow: /docs/private/\n\nSitemap: {b}/sitemap.xml\n", "text/plain")
    s.put("/sitemap.xml", f"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
  <url><loc>{b}/docs/</loc></url>
  <url><loc>{b}/docs/orphan.html</loc><lastmod>2024-02-03</lastmod></url>
  <url><loc>{b}/elsewhere/listed.html</loc></url>
</urlset>""", "application/xml")
    s.put("/docs/", """<html><head><title>Garden docs</title></head><body>
<h1>Garden documentation</h1><p>Everything about the garden, season by season, for beginners.</p>
<ul><li><a href="a.html#top">Pruning</a></li><li><a href="b.html">Watering</a></li>
<li><a href="private/secret.html">Secret</a></li><li><a href="/elsewhere/out.html">Out of the prefix</a></li>
<li><a href="http://other.invalid/docs/x.html">Another host</a></li><li><a href="missing.html">Gone</a></li>
<li><a href="guide.pdf">The guide (PDF)</a></li><li><a href="photo.png">A photo</a></li>
<li><a href="mailto:ann@example.com">Mail</a></li><li><a href="moved">Moved</a></li></ul></body></html>""")
    s.put("/docs/a.html", ARTICLE)
    s.put("/docs/b.html", "<html><head><title>Watering</title></head><body><p>Water the roses deeply once "
          "a week in summer, at the roots and in the morning.</p><a href='/docs/'>Back</a></body></html>",
          etag=False, modified="Mon, 01 Jan 2024 10:00:00 GMT")
    s.put("/docs/orphan.html", "<html><head><title>Compost</title></head><body><p>Compost is made of "
          "kitchen scraps and garden waste, turned every few weeks.</p></body></html>")
    s.put("/docs/private/secret.html", "<p>Private</p>")
    s.put("/elsewhere/out.html", "<p>Out</p>")
    s.put("/elsewhere/listed.html", "<p>Listed but out</p>")
    s.put("/docs/photo.png", b"\x89PNG", "image/png")
    s.put("/docs/guide.pdf", pdf_bytes("The gardening guide explains mulching beds in autumn."), "application/pdf")
    s.redirects["/docs/moved"] = "/docs/b.html"
    yield s
    s.close()


def crawl(site, state=None, **options):
    source = WebSite(site.base + "/docs/", crawl=True, rate=1000, timeout=10, state=state, **options)
    items = list(source.items())
    return source, {i.key: i for i in items if isinstance(i, Item)}, [i for i in items if isinstance(i, Skipped)]


def documents(item: Item, data: bytes) -> list[Document]:
    """What the wiring does with read(item): the reader its name's suffix picks."""
    reader = READERS[Path(item.name).suffix.lower()]
    return [d for d in reader(Path(item.name), data, LoadOptions(workers=0)) if isinstance(d, Document)]


def test_the_crawl_follows_links_and_sitemaps_under_the_prefix_and_obeys_robots(site):
    source, pages, skipped = crawl(site)
    b = site.base
    assert set(pages) == {f"{b}/docs/", f"{b}/docs/a.html", f"{b}/docs/b.html", f"{b}/docs/orphan.html",
                          f"{b}/docs/guide.pdf"}
    assert site.requests["/docs/private/secret.html"] == 0  # robots.txt disallows it
    assert source.stats["robots_disallowed"] == 1
    assert site.requests["/elsewhere/out.html"] == 0 and site.requests["/elsewhere/listed.html"] == 0
    assert site.requests["/docs/photo.png"] == 0  # no reader reads it: not requested
    assert site.requests["/robots.txt"] == 1 and site.requests["/sitemap.xml"] == 1
    assert site.requests["/docs/moved"] == 1 and site.requests["/docs/b.html"] == 2  # linked, and redirected to
    assert [(s.path, s.reason) for s in skipped] == [(f"{b}/docs/missing.html", "HTTP 404 Not Found")]
    # names pick the readers; metadata from the headers and the sitemap
    assert pages[f"{b}/docs/"].name == "index.html" and pages[f"{b}/docs/guide.pdf"].name == "guide.pdf"
    assert pages[f"{b}/docs/b.html"].modified == "2024-01-01T10:00:00+00:00"
    assert pages[f"{b}/docs/b.html"].folder == f"{b}/docs" and pages[f"{b}/docs/a.html"].size == len(ARTICLE)
    assert pages[f"{b}/docs/orphan.html"].metadata["lastmod"] == "2024-02-03"
    assert pages[f"{b}/docs/a.html"].metadata["content_type"] == "text/html"
    assert source.stats["requests"] == sum(site.requests.values()) - 1  # a redirect and its hop: one request


def test_pages_are_read_through_the_readers_main_text_only(site):
    source, pages, _ = crawl(site)
    article = pages[site.base + "/docs/a.html"]
    [doc] = documents(article, source.read(article))
    assert "buds begin to swell" in doc.text and "outward-facing bud" in doc.text
    for chrome in ("About us", "cookies", "Copyright", "Privacy policy", "Watering"):
        assert chrome not in doc.text, chrome
    assert doc.title == "Pruning roses" and doc.metadata["date"] == "2023-04-05"
    guide = pages[site.base + "/docs/guide.pdf"]
    [pdf] = documents(guide, source.read(guide))
    assert "mulching beds in autumn" in pdf.text
    # the body was kept from the crawl once; a second read fetches it again
    before = site.fetched("/docs/a.html")
    assert source.read(article) == ARTICLE.encode() and site.fetched("/docs/a.html") == before + 1


def test_a_second_run_sends_conditional_requests_and_gets_304s(site):
    first, pages, _ = crawl(site)
    assert all(site.fetched(p) == 1 for p in ("/docs/", "/docs/a.html", "/docs/orphan.html", "/docs/guide.pdf"))
    second, again, skipped = crawl(site, state=first.state)
    assert {k: i.version for k, i in again.items()} == {k: i.version for k, i in pages.items()}
    # every page answered 304, no body sent again; pages behind an unchanged page still reached
    for path in ("/docs/", "/docs/a.html", "/docs/orphan.html", "/docs/guide.pdf"):
        assert site.statuses[(path, 304)] == 1 and site.fetched(path) == 1, path
    # b.html: linked, and the end of /docs/moved's redirect
    assert site.statuses[("/docs/b.html", 304)] == 2 and site.fetched("/docs/b.html") == 2
    assert second.stats["unchanged"] == 6 and second.stats["pages"] == 0  # five pages and the redirect
    assert [s.path for s in skipped] == [site.base + "/docs/missing.html"]
    # a changed page is a new version; the others stay as they were
    site.put("/docs/a.html", ARTICLE.replace("late winter", "early spring"))
    third, changed, _ = crawl(site, state=second.state)
    assert changed[site.base + "/docs/a.html"].version != pages[site.base + "/docs/a.html"].version
    assert {k for k in changed if changed[k].version != pages[k].version} == {site.base + "/docs/a.html"}
    assert "early spring" in documents(changed[site.base + "/docs/a.html"],
                                       third.read(changed[site.base + "/docs/a.html"]))[0].text
    # an unchanged page (304) is still readable: read() fetches it
    assert b"Compost" in third.read(changed[site.base + "/docs/orphan.html"])


def test_a_page_removed_from_the_site_is_absent(site):
    first, pages, _ = crawl(site)
    del site.pages["/docs/orphan.html"]
    site.put("/sitemap.xml", '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"></urlset>', "application/xml")
    _, again, skipped = crawl(site, state=first.state)
    assert site.base + "/docs/orphan.html" not in again and site.base + "/docs/orphan.html" not in {s.path for s in skipped}
    assert set(again) == set(pages) - {site.base + "/docs/orphan.html"}


def test_errors_become_skipped_with_a_reason(site):
    site.put("/docs/", '<a href="slow.html">slow</a> <a href="broken.html">broken</a> <a href="data.bin">bin</a>'
             '<a href="notes.txt">notes</a><p>An index page that links to pages that fail in various ways.</p>')
    site.put("/docs/slow.html", "<p>too late</p>")
    site.delay["/docs/slow.html"] = 3
    site.put("/docs/notes.txt", b"\x00\x01", "application/octet-stream")
    source = WebSite(site.base + "/docs/", crawl=True, rate=1000, timeout=0.5, sitemaps=False)
    items = list(source.items())
    reasons = {i.path.rsplit("/", 1)[-1]: i.reason for i in items if isinstance(i, Skipped)}
    assert reasons["slow.html"] == "no answer in 0.5 s (timeout)"
    assert reasons["broken.html"] == "HTTP 404 Not Found"
    assert reasons["notes.txt"] == "content type 'application/octet-stream' is not one the readers read"
    assert site.requests["/docs/data.bin"] == 0
    assert [i.key for i in items if isinstance(i, Item)] == [site.base + "/docs/"]
    # nothing answers at all: the listing fails as a whole (nothing is taken as gone)
    for robots in (True, False):
        with pytest.raises(FetchError, match=r"cannot reach http://127.0.0.1:9 \(cannot connect"):
            list(WebSite("http://127.0.0.1:9/docs/", crawl=True, timeout=2, rate=1000, obey_robots=robots).items())


def test_a_page_gone_is_absent_and_one_failing_for_a_while_keeps_its_place_and_links(site):
    first, pages, _ = crawl(site)
    # a.html answers 500 for now: Skipped (its documents kept), and b.html, which only it links
    # to once the index page stops linking there, is still reached through its stored links
    site.put("/docs/", '<p>The garden index page, shorter now, linking to one page only.</p>'
             '<a href="a.html">Pruning</a>')
    original = site.pages.pop("/docs/a.html")
    handler = site.server.RequestHandlerClass
    serve = handler.do_GET

    def failing(self):
        if self.path == "/docs/a.html":
            with site.lock:
                site.requests[self.path] += 1
            return self.answer(500, b"down", "text/plain", {})
        return serve(self)

    handler.do_GET = failing
    second, again, skipped = crawl(site, state=first.state)
    assert [(s.path, s.reason) for s in skipped] == [(site.base + "/docs/a.html", "HTTP 500 Internal Server Error")]
    assert site.base + "/docs/b.html" in again
    # a.html gone for good (404, though still linked), and b.html no longer linked: both absent
    handler.do_GET = serve
    third, last, skipped = crawl(site, state=second.state, sitemaps=False)
    assert set(last) == {site.base + "/docs/"} and skipped == [] and third.stats["gone"] == 1
    assert site.statuses[("/docs/a.html", 404)] == 1
    # a link to a page never seen that answers 404 is reported (a broken link)
    site.pages["/docs/a.html"] = original
    del site.pages["/docs/a.html"]
    _, _, skipped = crawl(site, sitemaps=False)
    assert [(s.path, s.reason) for s in skipped] == [(site.base + "/docs/a.html", "HTTP 404 Not Found")]


def test_at_most_max_pages_and_the_rate_limit(site):
    source, pages, skipped = crawl(site, max_pages=2)
    assert len(pages) + len(skipped) == 2
    page_requests = sum(n for path, n in site.requests.items() if path not in ("/robots.txt", "/sitemap.xml"))
    assert page_requests == 2
    # the rate: a fake clock that only moves when the limiter sleeps
    now = [100.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    limited = WebSite(site.base + "/docs/", crawl=True, rate=4, clock=lambda: now[0], sleep=sleep)
    list(limited.items())
    assert limited.stats["requests"] >= 8
    assert len(sleeps) == limited.stats["requests"] - 1
    assert all(s == pytest.approx(0.25) for s in sleeps)
    limit = RateLimit(2, clock=lambda: now[0], sleep=sleep)
    limit.wait()
    now[0] += 10  # time passed: no wait
    sleeps.clear()
    limit.wait()
    assert sleeps == []


def test_robots_crawl_delay_and_a_single_page_without_crawl(site):
    site.put("/robots.txt", "User-agent: searcher\nCrawl-delay: 2\nDisallow: /docs/b.html\n", "text/plain")
    now, sleeps = [0.0], []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    source = WebSite(site.base + "/docs/", crawl=True, rate=100, clock=lambda: now[0], sleep=sleep, sitemaps=False)
    keys = {i.key for i in source.items() if isinstance(i, Item)}
    assert site.base + "/docs/b.html" not in keys and site.requests["/docs/b.html"] == 0  # not via /docs/moved either
    assert sleeps and all(s == pytest.approx(2) for s in sleeps)
    one = WebSite(site.base + "/docs/a.html")  # without crawl: the one page
    assert [i.key for i in one.items()] == [site.base + "/docs/a.html"]
    # through the registry, as `searcher index URL` opens it
    page = open_source(site.base + "/docs/b.html")
    assert isinstance(page, WebSite) and page.url == site.base + "/docs/b.html" and not page.crawl
    with pytest.raises(SourceError, match="do not take these options"):
        open_source(site.base + "/docs/", {"endpoint_url": "http://elsewhere"})


def test_the_url_keeps_no_credentials_and_links_are_canonical():
    source = WebSite("https://ann:hunter2@Example.COM:443/docs/#intro")
    assert source.url == "https://example.com/docs/" and source.scheme == "https"
    assert "hunter2" not in repr(vars(source))
    assert canonical("HTTP://Example.com:80") == "http://example.com/"
    assert canonical("http://h/a b/caf\u00e9.html?q=x y&r=%2F") == "http://h/a%20b/caf%C3%A9.html?q=x%20y&r=%2F"
    assert canonical(canonical("http://h/a b/")) == canonical("http://h/a b/")
    links, nofollow, noindex = page_links('<base href="/x/"><a href="y.html#f">y</a><a href="javascript:1">j</a>'
                                          '<meta name="robots" content="noindex">', "http://h/a/b.html")
    assert links == ["http://h/x/y.html"] and not nofollow and noindex
    pages, maps = sitemap_urls(b'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                               b"<sitemap><loc>http://h/s1.xml</loc></sitemap></sitemapindex>")
    assert pages == [] and maps == ["http://h/s1.xml"]
    for bad in ("ftp://example.com/", "http:///docs/", "http://example.com:port/"):
        with pytest.raises(WebSiteError, match="http:// or https://"):
            WebSite(bad)
    with pytest.raises(WebSiteError, match="rate"):
        WebSite("http://example.com/", rate=0)


def test_noindex_pages_are_not_yielded_but_their_links_are_followed(site):
    site.put("/docs/", '<meta name="robots" content="noindex"><a href="a.html">a</a>')
    source, pages, _ = crawl(site, sitemaps=False)
    assert set(pages) == {site.base + "/docs/a.html", site.base + "/docs/b.html"} and source.stats["noindex"] == 1
    _, again, _ = crawl(site, state=source.state, sitemaps=False)
    assert set(again) == set(pages)


def test_only_the_last_pages_bytes_are_kept_for_read(site, monkeypatch):
    import searcher.sources.web as web

    monkeypatch.setattr(web, "KEEP_BODIES", 1)
    source, pages, _ = crawl(site, sitemaps=False)
    assert len(source._bodies) == 1
    first = pages[site.base + "/docs/"]
    before = site.fetched("/docs/")
    assert b"Garden documentation" in source.read(first) and site.fetched("/docs/") == before + 1


def test_the_state_file_makes_a_second_run_conditional_and_options_say_what_was_given(site, tmp_path):
    path = tmp_path / "state" / "site.json"
    first = WebSite(site.base + "/docs/", crawl=True, rate=1000, state_path=path)
    assert first.options == {"crawl": True, "rate": 1000, "state_path": str(path)}
    list(first.items())
    assert path.is_file() and not path.with_name("site.json.tmp").exists()
    second = WebSite(site.base + "/docs/", crawl=True, rate=1000, state_path=path)
    list(second.items())
    assert second.stats["pages"] == 0 and second.stats["unchanged"] == 6
    # another site's state, or a damaged file: every page fetched in full
    other = WebSite(site.base + "/docs/a.html", rate=1000, state_path=path)
    list(other.items())
    assert other.stats["unchanged"] == 0 and other.stats["pages"] == 1
    path.write_text("{not json")
    assert WebSite(site.base + "/docs/", state_path=path).previous == {}


def test_gzip_pages_and_sitemaps_are_unpacked_within_the_size_bound(site):
    import gzip

    site.put("/docs/", '<p>An index page that links to a compressed page and a bomb.</p>'
             '<a href="zipped.html">z</a> <a href="bomb.html">b</a>')
    site.put("/docs/zipped.html", gzip.compress(b"<p>A page sent gzipped, about growing leeks in trenches.</p>"),
             headers={"Content-Encoding": "gzip"})
    site.put("/docs/bomb.html", gzip.compress(b"<p>" + b"a" * 5_000_000), headers={"Content-Encoding": "gzip"})
    site.put("/robots.txt", f"Sitemap: {site.base}/sitemap.xml.gz\n", "text/plain")
    site.put("/sitemap.xml.gz", gzip.compress(
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{site.base}/docs/orphan.html</loc>'
        "</url></urlset>".encode()), "application/gzip")
    source = WebSite(site.base + "/docs/", crawl=True, rate=1000, max_bytes=1_000_000)
    items = list(source.items())
    pages = {i.key: i for i in items if isinstance(i, Item)}
    assert b"growing leeks" in source.read(pages[site.base + "/docs/zipped.html"])
    assert site.base + "/docs/orphan.html" in pages  # from the gzipped sitemap
    [bomb] = [i for i in items if isinstance(i, Skipped)]
    assert bomb.path.endswith("bomb.html") and "unpacks to over 1,000,000 bytes" in bomb.reason


class SiteWorld:
    """The contract's world (tests/source_contract.py): files served under /box/ and listed
    in /sitemap.xml (the prefix page itself answers 404), crawled from /box/."""

    KINDS = {".txt": "text/plain", ".md": "text/markdown", ".pdf": "application/pdf"}

    def __init__(self, site: Site):
        self.site, self.names = site, []

    def source(self):
        return WebSite(self.site.base + "/box/", crawl=True, rate=1000, timeout=10)

    def _sitemap(self):
        urls = "".join(f"<url><loc>{self.key(n)}</loc></url>" for n in self.names)
        self.site.put("/sitemap.xml", f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>',
                      "application/xml")

    def put(self, name, text):
        self.site.put("/box/" + name, text, self.KINDS[Path(name).suffix] + "; charset=utf-8")
        self.names = sorted(set(self.names) | {name})
        self._sitemap()

    def remove(self, name):
        del self.site.pages["/box/" + name]
        self.names.remove(name)
        self._sitemap()

    def put_broken(self, name):
        self.put(name, b"%PDF-1.4 not a PDF")

    def key(self, name):
        return self.site.base + "/box/" + name


class TestWebContract(SourceContract):
    @pytest.fixture
    def world(self):
        site = Site()
        yield SiteWorld(site)
        site.close()


def test_a_crawl_synced_into_an_index_then_only_what_changed(site, fake_index, tmp_path):
    """Through the index's sync (searcher/index/sources.py), as `searcher index URL` runs it:
    pages become documents keyed by their URL, with their main text; a second run gets 304s
    and reads nothing; a changed page is updated, a gone one removed."""
    from searcher.index.sources import sync

    b = site.base
    options = {"crawl": True, "rate": 1000, "state_path": str(tmp_path / "crawl.json")}
    report = sync(fake_index, b + "/docs/", options, LoadOptions(workers=0))
    assert report.added == 5 and [s.path for s in report.skipped] == [b + "/docs/missing.html"]
    doc = fake_index.get_document(b + "/docs/a.html")
    assert doc["source"] == b + "/docs/a.html" and doc["title"] == "Pruning roses"
    assert "buds begin to swell" in doc["text"] and "cookies" not in doc["text"] and "Copyright" not in doc["text"]
    assert doc["metadata"]["date"] == "2023-04-05" and doc["metadata"]["folder"] == b + "/docs"
    assert fake_index.get_document(b + "/docs/guide.pdf")["metadata"]["type"] == "pdf"

    fetched = sum(n for (path, status), n in site.statuses.items() if status == 200)
    report = sync(fake_index, b + "/docs/", options, LoadOptions(workers=0))
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 0, 5, 0)
    # only robots.txt and the sitemap come again in full; every page answers 304
    assert sum(n for (path, status), n in site.statuses.items() if status == 200) == fetched + 2

    site.put("/docs/a.html", ARTICLE.replace("late winter", "early spring"))
    del site.pages["/docs/orphan.html"]
    site.put("/sitemap.xml", '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"></urlset>', "application/xml")
    report = sync(fake_index, b + "/docs/", options, LoadOptions(workers=0))
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 3, 1)
    assert "early spring" in fake_index.get_document(b + "/docs/a.html")["text"]
    assert fake_index.get_document(b + "/docs/orphan.html") is None


def test_the_command_crawls_a_site_and_a_second_run_asks_only_what_changed(site, tmp_path):
    """`searcher index URL --crawl`: the validators are kept beside the index (web-state/), so
    the same command again (its options recorded with the source) gets 304s and reads nothing."""
    from click.testing import CliRunner

    from searcher.cli import main

    folder = tmp_path / "crawled"
    url = site.base + "/docs/"
    first = CliRunner().invoke(main, ["index", url, "--crawl", "--crawl-rate", "1000", "--index", str(folder), "--json"])
    assert first.exit_code == 0, first.output
    assert list((folder / "web-state").glob("*.json"))
    fetched = sum(n for (path, status), n in site.statuses.items() if status == 200)
    again = CliRunner().invoke(main, ["index", "--index", str(folder), "--json"])  # every recorded source
    assert again.exit_code == 0, again.output
    assert sum(n for (path, status), n in site.statuses.items() if status == 200) == fetched + 2  # robots, sitemap
    listed = CliRunner().invoke(main, ["sources", "--index", str(folder), "--json"])
    assert url in listed.output and '"crawl": true' in listed.output
    bad = CliRunner().invoke(main, ["index", url, "--crawl-pages", "5", "--index", str(folder)])
    assert bad.exit_code == 2 and "--crawl" in bad.output
