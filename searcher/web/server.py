"""Serving the app with waitress, a production WSGI server, for the CLI, tests and scripts."""

from __future__ import annotations

import logging
import re
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import waitress
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer

from searcher.web.limits import MAX_BODY_BYTES, MAX_EMBED_BYTES, MAX_WRITE_BYTES  # noqa: F401 (imported from here too)

SERVER_MAX_BODY_BYTES = 1024 * 1024  # waitress's own backstop (plain-text 413), for huge bodies
QUEUE_LOG_INTERVAL = 60.0  # seconds between two of waitress's "Task queue depth is N" warnings


class OncePerInterval(logging.Filter):
    """Lets one record through per `interval` seconds; the next one that passes says how many
    were dropped. For waitress's queue warning, logged on every request while all threads
    are busy (thousands a minute under load)."""

    def __init__(self, interval: float = QUEUE_LOG_INTERVAL, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self.clock = clock
        self.suppressed = 0  # dropped since the last record that passed
        self._last: float | None = None
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.interval:
                self.suppressed += 1
                return False
            dropped, self.suppressed = self.suppressed, 0
            since = now - self._last if self._last is not None else 0.0
            self._last = now
        if dropped:
            record.msg = (f"{record.getMessage()} ({dropped} more such messages in the last "
                          f"{since:.0f} s were not logged)")
            record.args = ()
        return True


def quiet_queue_warnings(logger_name: str = "waitress.queue") -> OncePerInterval:
    """Install (once per process) the filter that logs waitress's queue depth once a minute."""
    logger = logging.getLogger(logger_name)
    for existing in logger.filters:
        if isinstance(existing, OncePerInterval):
            return existing
    installed = OncePerInterval()
    logger.addFilter(installed)
    return installed


_NON_ASCII = re.compile(rb"[\x80-\xff]")


class RequestParser(HTTPRequestParser):
    """waitress's parser, with raw non-ASCII bytes in the request target percent-encoded first.

    waitress splits the target with urllib's urlsplit, which takes bytes only if they are
    ASCII: any other byte (raw UTF-8 from a client that does not encode, or latin-1) ends in
    waitress's own plain-text "400 Bad URI" before the app is called (a target starting with
    // skips urlsplit and reaches the app as PEP 3333 latin-1). Encoded, UTF-8 reads as the
    text it is, and anything else reaches the app, which answers it with its own 400.
    """

    def parse_header(self, header_plus):
        end = header_plus.find(b"\r\n")
        if end > 0 and not header_plus[:end].isascii():
            parts = header_plus[:end].split(b" ")
            if len(parts) in (2, 3):  # method, target[, version]; anything else is refused anyway
                parts[1] = _NON_ASCII.sub(lambda m: b"%%%02X" % m[0][0], parts[1])
                header_plus = b" ".join(parts) + header_plus[end:]
        return super().parse_header(header_plus)


class Channel(HTTPChannel):
    parser_class = RequestParser


def server_body_limit(app) -> int:
    """waitress's limit: SERVER_MAX_BODY_BYTES above the app's largest body limit (its write
    limit, or /v1/embeddings'), so that the app, not waitress, answers a body somewhat over it
    with a JSON 413; SERVER_MAX_BODY_BYTES for an app without one."""
    config = getattr(app, "config", None)
    if config is None:
        return SERVER_MAX_BODY_BYTES
    return SERVER_MAX_BODY_BYTES + max(config.get("SEARCHER_MAX_WRITE_BYTES") or 0, MAX_EMBED_BYTES)


def make_server(app, host: str = "127.0.0.1", port: int = 8000, threads: int = 4):
    """A waitress server for `app` (port 0 picks a free port: see `.effective_port`)."""
    quiet_queue_warnings()
    server = waitress.create_server(
        app, host=host, port=port, threads=threads, ident="searcher",
        max_request_body_size=server_body_limit(app),
        # X-Forwarded-* reach only an app that trusts proxies, which believes them from those alone
        # (searcher/web/proxies.py); for any other app waitress removes them.
        clear_untrusted_proxy_headers=not getattr(app, "config", {}).get("SEARCHER_TRUSTED_PROXIES"),
    )
    # One listening socket is the server itself; several (a name like localhost) are in its map.
    for listener in [server, *getattr(server, "map", {}).values()]:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = Channel
    return server


@contextmanager
def serving(app, host: str = "127.0.0.1", threads: int = 4) -> Iterator[str]:
    """Run `app` on a free loopback port in a background thread; yields its base URL."""
    server = make_server(app, host, 0, threads)
    stopping = threading.Event()

    def run():
        try:
            server.run()
        except OSError:
            # waitress has no stop call: closing its sockets under the select loop is how it
            # stops, and the loop then sees a closed descriptor. Only that case is expected.
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.effective_port}"
    finally:
        stopping.set()
        server.close()
        server.task_dispatcher.shutdown(timeout=5)
        thread.join(timeout=5)
