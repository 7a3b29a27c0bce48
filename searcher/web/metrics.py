"""GET /metrics: the server's metrics in Prometheus's text format, made by prometheus-client.

Each app has its own CollectorRegistry (`Metrics`), never the library's global one, so
several apps in one process (tests) keep their counts apart. What it holds:

- requests by Flask endpoint and status (an after_request hook);
- search latency by index and mode (SearchService tells `IndexMetrics`, its observer);
- writes by index and kind, their duration, the commits they made (the generations they
  moved), and what they encoded (documents, chunks and the seconds of their IndexReports:
  the write API's and the folder watcher's);
- per index, read at each scrape (`ServerCollector`): documents, chunks, vectors,
  keyword changes pending, generation (Index.counts, no walk of the folder), writes
  waiting and running, and whether the damage guard holds the index unreadable;
- failed key checks and sign-ins (searcher/web/auth.py's limiters), with keys;
- the process (CPU, memory, open files) and the Python platform.

Who may scrape: on a server without keys, this machine only (a request from a loopback
address); with keys, an admin key or a `metrics` key (searcher/web/keys.py: it may read
/metrics and nothing else), limited to no indexes, since the metrics cover them all.
docs/operations.md lists every metric and a Prometheus scrape configuration.
"""

from __future__ import annotations

import ipaddress
import logging

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, PlatformCollector,
                               ProcessCollector, generate_latest)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from searcher.index.writer import IndexReport
from searcher.search.results import SEARCH_MODES
from searcher.web.auth import auth, forbidden
from searcher.web.service import ServiceObserver

log = logging.getLogger(__name__)

EXTENSION = "searcher.metrics"  # app.extensions key of the app's Metrics
WRITE_KINDS = ("documents", "delete", "watch")  # SearchService's writes: the API's two, the watcher's runs
SEARCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # seconds
WRITE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)  # seconds
COUNTS = {  # Index.counts' fields -> the help of their gauges
    "documents": "Documents in the index.",
    "chunks": "Chunks (passages) in the index.",
    "vectors": "Vectors in the live generation's vector index.",
    "keyword_pending": "Changes recorded for the keyword engine and not applied yet.",
    "generation": "The index's live generation (each commit makes the next); not for a sharded index.",
}


class Metrics:
    """One app's metrics: its registry, the metrics its hooks and services update, and the
    collector that reads the rest at scrape time. `observer(name)` is what the SearchService of
    index `name` reports to; `install` wires it into the app."""

    def __init__(self):
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.requests = Counter("searcher_http_requests", "HTTP requests answered, by Flask endpoint and status.",
                                ["endpoint", "status"], registry=registry)
        self.searches = Histogram("searcher_search_seconds", "Seconds each search took to answer, by index and mode.",
                                  ["index", "mode"], buckets=SEARCH_BUCKETS, registry=registry)
        self.writes = Histogram("searcher_write_seconds", "Seconds each write took once its turn came "
                                "(encoding and commits), by index and kind (documents, delete, watch).",
                                ["index", "kind"], buckets=WRITE_BUCKETS, registry=registry)
        self.commits = Counter("searcher_commits", "Commits the server's writes made (the generations they "
                               "moved the index by).", ["index"], registry=registry)
        self.encoded_documents = Counter("searcher_encoded_documents", "Documents the server's writes indexed "
                                         "(added or updated).", ["index"], registry=registry)
        self.encoded_chunks = Counter("searcher_encoded_chunks", "Chunks the server's writes encoded.",
                                      ["index"], registry=registry)
        self.encode_seconds = Counter("searcher_encode_seconds", "Seconds the server's indexing runs took (their "
                                      "IndexReports'): rate of chunks over rate of this is the encode throughput.",
                                      ["index"], registry=registry)

    def observer(self, name: str) -> "IndexMetrics":
        """What index `name`'s SearchService reports to; its series start at 0."""
        for mode in SEARCH_MODES:
            self.searches.labels(name, mode)
        for kind in WRITE_KINDS:
            self.writes.labels(name, kind)
        for counter in (self.commits, self.encoded_documents, self.encoded_chunks, self.encode_seconds):
            counter.labels(name)
        return IndexMetrics(self, name)

    def install(self, app: Flask) -> None:
        """Count `app`'s requests, read its indexes and limiters at each scrape, serve /metrics."""
        app.extensions[EXTENSION] = self
        self.registry.register(ServerCollector(app))

        @app.after_request
        def count_request(response):
            self.requests.labels(request.endpoint or "none", str(response.status_code)).inc()
            return response

        app.register_blueprint(bp)


class IndexMetrics(ServiceObserver):
    """The observer of one index's SearchService (searcher/web/service.py)."""

    def __init__(self, metrics: Metrics, name: str):
        self.metrics, self.name = metrics, name

    def searched(self, mode: str, seconds: float) -> None:
        self.metrics.searches.labels(self.name, mode).observe(seconds)

    def wrote(self, kind: str, seconds: float, commits: int, report: IndexReport | None) -> None:
        m = self.metrics
        m.writes.labels(self.name, kind).observe(seconds)
        if commits:
            m.commits.labels(self.name).inc(commits)
        if report is not None:
            m.encoded_documents.labels(self.name).inc(report.indexed)
            m.encoded_chunks.labels(self.name).inc(report.chunks)
            m.encode_seconds.labels(self.name).inc(report.seconds)


class ServerCollector:
    """What is read when scraped: each index's counts, write queue and damage-guard state, and
    the key checks' limiters. An index that cannot be counted now is left out of the counts
    (its searcher_index_unavailable says whether the damage guard holds it)."""

    def __init__(self, app: Flask):
        self.app = app

    def describe(self):
        return []  # nothing read when registered: the names come with each scrape

    def collect(self):
        counts = {field: GaugeMetricFamily(f"searcher_index_{field}", text, labels=["index"])
                  for field, text in COUNTS.items()}
        waiting = GaugeMetricFamily("searcher_write_queue_waiting", "Writes waiting for their turn (the write "
                                    "API's and the watcher's; one runs at a time).", labels=["index"])
        running = GaugeMetricFamily("searcher_write_running", "1 while a write runs on the index.", labels=["index"])
        broken = GaugeMetricFamily("searcher_index_unavailable", "1 while the index cannot be read (the damage "
                                   "guard answers 503 and tries to reopen it), else 0.", labels=["index"])
        for name, service in self.app.extensions["searcher.indexes"].items():
            try:
                found = service.counts()
            except Exception as e:  # IndexUnavailable, a shard that did not answer: the scrape goes on
                log.debug("no counts of index %s for /metrics: %s", name, e)
                found = {}
            for field, family in counts.items():
                value = found.get(field)
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    family.add_metric([name], value)
            waiting.add_metric([name], service.writes.waiting)
            running.add_metric([name], 1 if service.writes.running else 0)
            broken.add_metric([name], 1 if service.broken else 0)
        yield from counts.values()
        yield from (waiting, running, broken)
        limits = self.app.extensions.get("searcher.auth")
        yield CounterMetricFamily("searcher_failed_sign_ins", "Wrong API keys shown (sign-in form or Authorization "
                                  "header); 0 on a server without keys.",
                                  value=limits.limiter.total if limits is not None else 0)
        yield CounterMetricFamily("searcher_sign_ins", "Sign-ins to the page with a good key.",
                                  value=limits.sign_ins.total if limits is not None else 0)


def is_loopback_address(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def refusal():
    """The 403 for a scrape this client may not make, or None."""
    if auth() is None:
        if is_loopback_address(request.remote_addr):
            return None
        return forbidden("/metrics answers this machine only (loopback) on a server without API keys: scrape it "
                         "from here, or start the server with --api-keys FILE and scrape with an admin key or a "
                         "metrics key (`searcher keys add --scope metrics --file FILE`).")
    access = g.get("access")
    if access is None or access.scope not in ("admin", "metrics"):
        return forbidden("/metrics needs an admin key or a metrics key (`searcher keys add --scope metrics "
                         "--file FILE`); this key can only read.")
    if access.indexes is not None:
        return forbidden("/metrics covers every index of this server, and this key is limited to some of them.")
    return None


bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    refused = refusal()
    if refused is not None:
        return refused
    body = generate_latest(current_app.extensions[EXTENSION].registry)
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})
