"""Logs a machine can read (searcher/logs.py, searcher/web/access_log.py): `--log-format json`
writes one JSON object a line, a server one access line a request with its request id (sent
back as X-Request-Id), and no key, session token or query value reaches any log line, at
DEBUG, whatever a client sends. The commands: `searcher index`, `watch` and `serve` with
--log-format json, for real (the model loads; small corpora)."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.logs import JsonFormatter, configure
from searcher.web import create_app
from searcher.web.access_log import request_id
from searcher.web.auth import COOKIE
from searcher.web.keys import KeyRing, add_key
from searcher.web.server import serving
from tests.conftest import ANIMALS

ROOT = Path(__file__).resolve().parent.parent


class Records(logging.Handler):
    """Every record, kept whole (its fields too), and its JSON line."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.json = JsonFormatter()

    def emit(self, record):
        self.records.append(record)
        self.lines.append(self.json.format(record))

    def access(self) -> list[dict]:
        return [json.loads(line) for line in self.lines if '"logger": "searcher.web.access"' in line]


@pytest.fixture
def everything():
    """Every record of every logger at DEBUG, in JSON mode (and back to text after)."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    configure("json", stream=stream, level=logging.DEBUG)
    root.setLevel(logging.DEBUG)
    handler = Records()
    root.addHandler(handler)
    try:
        yield handler, stream
    finally:
        root.removeHandler(handler)
        configure("text")
        root.setLevel(level)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, fake_encoder):
    folder = tmp_path_factory.mktemp("logs")
    idx = Index.create(folder / "idx", encoder=fake_encoder)
    idx.add_documents(ANIMALS)
    path = folder / "keys.txt"
    _, read = add_key(path, "read")
    _, admin = add_key(path, "admin")
    yield idx, path, read, admin
    idx.close()


# -- the JSON lines ---------------------------------------------------------------------------

def test_json_lines_have_time_level_logger_message_and_fields():
    stream = io.StringIO()
    configure("json", stream=stream)
    try:
        log = logging.getLogger("searcher.test")
        log.info("indexed %d files", 3, extra={"documents": 3})
        log.warning("cannot read %s", "caf\udce9.txt")  # a name that is not UTF-8
        logging.getLogger("waitress").warning("Task queue depth is 5")
        logging.getLogger("some.library").info("not shown: other libraries from WARNING")
        try:
            raise OSError("disk full")
        except OSError:
            log.exception("commit failed\nsecond line")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn("deprecated thing", DeprecationWarning)
    finally:
        configure("text")
    lines = stream.getvalue().splitlines()
    assert all(line.isascii() for line in lines)  # whatever the stream's encoding
    parsed = [json.loads(line) for line in lines]  # every line one object
    assert [p["logger"] for p in parsed] == ["searcher.test", "searcher.test", "waitress", "searcher.test",
                                              "py.warnings"]
    assert parsed.pop(1)["message"] == "cannot read caf\udce9.txt"
    first = parsed[0]
    assert (first["level"], first["message"], first["documents"]) == ("info", "indexed 3 files", 3)
    assert first["time"].endswith("Z") and "T" in first["time"]  # ISO 8601, UTC
    assert parsed[2]["message"] == "commit failed\nsecond line" and "OSError: disk full" in parsed[2]["exception"]
    assert "deprecated thing" in parsed[3]["message"]


def test_text_is_as_before_and_the_format_is_checked():
    configure("text")
    assert not [h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)]
    with pytest.raises(ValueError, match="text, json"):
        configure("xml")


@pytest.mark.parametrize("incoming, kept", [
    ("abc-123", True), ("0f8e2c1e-5a4b-4c3d-9e8f-7a6b5c4d3e2f", True), ("a" * 41, False),
    ("has space", False), ("x\ny", False), ("", False), (None, False),
    ("srch_1a2b3c4d_short", False),  # looks like a key: never echoed into the log
])
def test_an_incoming_request_id_is_kept_only_when_short_and_safe(incoming, kept):
    made = request_id(incoming)
    assert (made == incoming) is kept
    assert len(made) <= 40


# -- a server's access lines, and no secret anywhere ------------------------------------------

def request(base: str, method: str, path: str, headers: dict | None = None, body: str | None = None):
    """(status, headers, body text) of one request, redirects not followed."""
    parts = urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.headers, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def test_no_key_cookie_or_query_value_reaches_any_log_line(keyed, everything):
    idx, path, read, admin = keyed
    handler, stream = everything
    wrong = "srch_0badc0de_" + "W" * 43  # a made-up key, in a header and in the sign-in form
    query_secret = "Q" * 30 + "querysecret"
    app = create_app(idx, keys=KeyRing.from_file(path))
    sent = []  # (request id sent back, status)
    with serving(app) as base:
        def go(method, target, headers=None, body=None):
            status, got, text = request(base, method, target, headers, body)
            sent.append((got["X-Request-Id"], status))
            return status, got, text

        assert go("GET", "/api/search?" + urlencode({"q": "kittens", "key": read, "token": query_secret}),
                  {"Authorization": f"Bearer {admin}"})[0] == 200
        assert go("GET", "/api/search?" + urlencode({"q": "cats", "api_key": read}))[0] == 401  # a key in the query is no key
        assert go("GET", "/api/health", {"Authorization": f"Bearer {wrong}"})[0] == 401
        assert go("GET", "/api/health", {"Authorization": read})[0] == 401  # malformed header
        form = urlencode({"key": wrong, "next": "/?q=" + query_secret})
        form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
        assert go("POST", "/sign-in", form_headers, form)[0] == 401
        status, got, _ = go("POST", "/sign-in", form_headers, urlencode({"key": read}))
        assert status == 303
        token = got["Set-Cookie"].split(";")[0].split("=", 1)[1]
        assert go("GET", "/?" + urlencode({"q": "kittens", "secret": query_secret}),
                  {"Cookie": f"{COOKIE}={token}"})[0] == 200
        assert go("GET", "/api/health", {"Cookie": f"{COOKIE}={token}", "X-Request-Id": read})[0] == 200
        assert go("GET", "/api/health", {"Cookie": f"{COOKIE}={token}", "X-Request-Id": token})[0] == 200
        write = json.dumps({"id": "owl", "text": "Owls hunt voles at night."})
        assert go("POST", "/api/documents", {"Authorization": f"Bearer {admin}",
                                             "Content-Type": "application/json"}, write)[0] == 201
        assert go("POST", "/sign-out", {"Cookie": f"{COOKIE}={token}"})[0] == 303
    idx.delete(["owl"])

    lines = handler.lines + stream.getvalue().splitlines()
    everything_logged = "\n".join(lines + [repr(vars(r)) for r in handler.records])
    for secret in (read, admin, wrong, token, query_secret, read.split("_", 2)[2], token[:20]):
        assert secret not in everything_logged
    access = handler.access()
    assert [(a["request_id"], a["status"]) for a in access] == sent  # one line a request, in order
    assert len({rid for rid, _ in sent}) == len(sent)  # the key and the token were not taken as ids
    for line in access:
        assert "?" not in line["path"] and line["client"] == "127.0.0.1"
        assert isinstance(line["duration_ms"], float) and line["method"] in ("GET", "POST")
    assert access[0]["path"] == "/api/search" and access[0]["generation"] >= 1 and access[0]["index"] == "idx"


def test_the_request_id_comes_back_and_names_the_access_line(keyed, everything):
    idx, *_ = keyed
    handler, _ = everything
    client = create_app(idx).test_client()
    r = client.get("/api/search?q=cats&mode=keyword&index=idx", headers={"X-Request-Id": "trace-42"})
    assert r.status_code == 200 and r.headers["X-Request-Id"] == "trace-42"
    other = client.get("/api/health?index=nosuch")
    assert other.status_code == 404 and len(other.headers["X-Request-Id"]) == 32
    assert client.get("/nowhere").headers["X-Request-Id"]  # every response, errors too
    first, second, third = handler.access()
    assert (first["request_id"], first["status"], first["index"]) == ("trace-42", 200, "idx")
    assert first["generation"] == idx.committed_generation()
    assert first["message"].startswith("GET /api/search 200 ")
    assert "index" not in second and second["status"] == 404  # an unknown name is the client's text
    assert (third["path"], third["status"]) == ("/nowhere", 404)


def test_waitress_lines_are_json_too(keyed, everything):
    """waitress logs its own warnings and errors (queue depth, an app that fails) to its logger
    `waitress`: json mode keeps them, as JSON lines beside the access lines."""
    idx, *_ = keyed
    _, stream = everything
    with serving(create_app(idx)) as base:
        logging.getLogger("waitress").info("a line of waitress")
        assert request(base, "GET", "/api/health")[0] == 200
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert any(line["logger"] == "waitress" and line["message"] == "a line of waitress" for line in lines)
    assert any(line["logger"] == "searcher.web.access" for line in lines)


# -- the commands ------------------------------------------------------------------------------

@pytest.fixture
def text_after():
    yield
    configure("text")  # CliRunner's stderr is closed after each command


def test_index_logs_its_summary_as_json(tmp_path, text_after):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("Kittens purr when they are content.")
    result = CliRunner().invoke(main, ["index", str(tmp_path / "docs"), "--index", str(tmp_path / "idx"),
                                       "--log-format", "json"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the summary went through logging
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    summary = next(line for line in lines if "report" in line)
    assert summary["logger"] == "searcher.cli" and summary["report"]["added"] == 1 and summary["documents"] == 1
    assert "1 documents indexed" in summary["message"] or "1 document" in summary["message"]

    text = CliRunner().invoke(main, ["index", str(tmp_path / "docs"), "--index", str(tmp_path / "idx")])
    assert text.exit_code == 0 and "index:" in text.stdout and not text.stdout.startswith("{")  # as before


def json_lines(stream, until, timeout: float = 180.0) -> list[dict]:
    """JSON lines read from `stream` until one satisfies `until` (every line must parse)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(json.loads(line))
        if until(seen[-1]):
            return seen
    raise AssertionError(f"no such line in time; saw {seen}")


def command(*args) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "searcher", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def stop(process: subprocess.Popen) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()


def test_watch_and_serve_log_json_lines_only(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Kittens purr when they are content.")
    watcher = command("watch", docs, "--index", tmp_path / "idx", "--log-format", "json", "--reconcile", "0")
    try:
        seen = json_lines(watcher.stderr, lambda line: line.get("run") is not None)
        assert seen[-1]["logger"] == "searcher.cli" and seen[-1]["report"]["added"] == 1
        assert any("watching" in line["message"] for line in seen)
    finally:
        out, err = stop(watcher)
    assert out == ""
    assert all(json.loads(line) for line in err.splitlines())

    server = command("serve", "--index", tmp_path / "idx", "--port", 0, "--log-format", "json")
    try:
        banner = json_lines(server.stderr, lambda line: line["message"].startswith("Serving "))[-1]
        base = banner["message"].split(" on ", 1)[1].split("/ ", 1)[0]
        status, headers, _ = request(base, "GET", "/api/search?q=kittens&k=1", {"X-Request-Id": "from-the-test"})
        assert status == 200 and headers["X-Request-Id"] == "from-the-test"
        line = json_lines(server.stderr, lambda line: line["logger"] == "searcher.web.access")[-1]
        assert (line["request_id"], line["path"], line["status"], line["index"]) == ("from-the-test", "/api/search",
                                                                                    200, "idx")
        assert line["generation"] >= 1 and line["duration_ms"] > 0
    finally:
        out, err = stop(server)
    assert out == ""
    assert all(json.loads(line) for line in err.splitlines())
