"""Serving the app with waitress, a production WSGI server, for the CLI, tests and scripts."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

import waitress

MAX_BODY_BYTES = 64 * 1024  # the API takes no bodies: Flask answers larger ones with a JSON 413
SERVER_MAX_BODY_BYTES = 1024 * 1024  # waitress's own backstop (plain-text 413), for huge bodies


def make_server(app, host: str = "127.0.0.1", port: int = 8000, threads: int = 4):
    """A waitress server for `app` (port 0 picks a free port: see `.effective_port`)."""
    return waitress.create_server(
        app, host=host, port=port, threads=threads, ident="searcher",
        max_request_body_size=SERVER_MAX_BODY_BYTES, clear_untrusted_proxy_headers=True,
    )


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
