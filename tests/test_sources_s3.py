"""S3 sources (searcher/sources/s3.py) against moto's S3 server, started here on loopback, with
the real boto3 client and the real model: the source contract (tests/source_contract.py), then
`searcher index s3://...` incremental runs, `searcher sources`, the re-sync with no path, the
errors a person can act on, the credentials rules, and the poller."""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from pathlib import Path

import fpdf
import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.index.sources import SOURCES_FILE, SourcePoller, read_sources
from searcher.sources import open_source

from .source_contract import SourceContract

boto3 = pytest.importorskip("boto3")  # the test extra installs both (pyproject.toml)
ThreadedMotoServer = pytest.importorskip("moto.server").ThreadedMotoServer
from searcher.sources.s3 import S3Source  # noqa: E402 (needs boto3)

SECRET = "SeCrEt-MARKER-7f3a9c-do-not-print"
KEY_ID = "AKIATESTMARKER0001"
_buckets = itertools.count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """moto's S3 server on 127.0.0.1, and the AWS environment pointed at fake credentials (the
    secret a marker the tests look for) and at no shared files."""
    home = tmp_path_factory.mktemp("aws")
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"), "AWS_CONFIG_FILE": str(home / "config")}
    saved = {k: os.environ.get(k) for k in (*env, "AWS_PROFILE", "AWS_SESSION_TOKEN")}
    os.environ.update(env)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


class Bucket:
    """A fresh bucket on the test server: the contract's `world` (tests/source_contract.py)."""

    def __init__(self, endpoint: str, prefix: str = "docs/"):
        self.endpoint, self.prefix = endpoint, prefix
        self.name = f"bucket-{os.getpid()}-{next(_buckets)}"
        self.client = boto3.client("s3", endpoint_url=endpoint)
        self.client.create_bucket(Bucket=self.name)
        self.url = f"s3://{self.name}/{prefix}"

    def source(self):
        return open_source(self.url, {"endpoint_url": self.endpoint})

    def put(self, name: str, text: str | bytes) -> None:
        body = text.encode() if isinstance(text, str) else text
        self.client.put_object(Bucket=self.name, Key=self.prefix + name, Body=body)

    def remove(self, name: str) -> None:
        self.client.delete_object(Bucket=self.name, Key=self.prefix + name)

    def put_broken(self, name: str) -> None:
        self.put(name, b"%PDF-1.4 this is no PDF at all")

    def key(self, name: str) -> str:
        return f"s3://{self.name}/{self.prefix}{name}"


@pytest.fixture
def bucket(endpoint) -> Bucket:
    return Bucket(endpoint)


class TestS3Contract(SourceContract):
    @pytest.fixture
    def world(self, bucket):
        return bucket


def pdf_bytes(text: str) -> bytes:
    pdf = fpdf.FPDF()
    pdf.set_font("Helvetica", size=11)
    pdf.add_page()
    pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def fill(bucket: Bucket) -> None:
    bucket.put("felines.txt", "Kittens and cats purr when they are content.")
    bucket.put("garden.md", "# Gardens\n\nTomatoes need sun, water and a stake to climb.")
    bucket.put("reports/harbour.pdf", pdf_bytes("Sailing boats cross the harbour at dawn."))
    bucket.put_broken("reports/broken.pdf")
    bucket.put("reports/", b"")  # a console's "folder": not an item
    bucket.client.put_object(Bucket=bucket.name, Key="elsewhere/outside.txt", Body=b"Not under the prefix.")


def test_index_an_s3_prefix_then_only_what_changed(tmp_path, bucket, encoder, monkeypatch):
    fill(bucket)
    index_dir = tmp_path / "idx"
    result = run("index", bucket.url, "--endpoint-url", bucket.endpoint, "--index", index_dir, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["added"], report["updated"], report["unchanged"], report["removed"]) == (3, 0, 0, 0)
    [skipped] = report["skipped"]
    assert skipped["path"] == bucket.key("reports/broken.pdf") and "damaged PDF" in skipped["reason"]

    with Index.open(index_dir) as idx:
        assert idx.search("boats sailing across a harbour", k=1)[0].doc_id == bucket.key("reports/harbour.pdf")
        doc = idx.get_document(bucket.key("felines.txt"))
        assert doc["source"] == bucket.key("felines.txt") and doc["title"] == "felines.txt"
        assert doc["metadata"]["type"] == "txt" and doc["metadata"]["folder"] == f"s3://{bucket.name}/docs"
        assert doc["metadata"]["source_url"] == bucket.url
        assert idx.get_document(f"s3://{bucket.name}/elsewhere/outside.txt") is None
        assert len(idx.search("kittens", k=5, where={"source_url": bucket.url})) == 3
        assert len(idx.search("kittens", k=5, where={"source_url": "s3://another/"})) == 0

    reads = []  # a second run reads nothing unchanged: only the broken object, which has no documents, again
    real_read = S3Source.read
    monkeypatch.setattr(S3Source, "read", lambda self, item: reads.append(item.key) or real_read(self, item))
    report = json.loads(run("index", bucket.url, "--endpoint-url", bucket.endpoint, "--index", index_dir,
                            "--json").output)
    assert (report["added"], report["updated"], report["unchanged"], report["chunks"]) == (0, 0, 3, 0)
    assert reads == [bucket.key("reports/broken.pdf")]

    bucket.put("felines.txt", "Puppies bark at the postman and wag their tails.")
    bucket.remove("garden.md")
    reads.clear()
    # Given again without its options, a recorded source is synced with its recorded ones.
    report = json.loads(run("index", bucket.url, "--index", index_dir, "--json").output)
    assert (report["added"], report["updated"], report["unchanged"], report["removed"]) == (0, 1, 1, 1)
    assert sorted(reads) == [bucket.key("felines.txt"), bucket.key("reports/broken.pdf")]
    with Index.open(index_dir) as idx:
        assert idx.search("dogs barking", k=1)[0].doc_id == bucket.key("felines.txt")
        assert idx.get_document(bucket.key("garden.md")) is None and len(idx) == 2


def test_sources_lists_them_and_index_with_no_path_syncs_them_all(tmp_path, endpoint, encoder):
    first, second = Bucket(endpoint), Bucket(endpoint, prefix="")
    first.put("a.txt", "Kittens purr when they are content.")
    second.put("b.txt", "Compilers translate source code into machine instructions.")
    second.put_broken("bad.pdf")
    index_dir = tmp_path / "idx"
    assert run("index", "--index", index_dir).exit_code == 2  # nothing given, nothing recorded
    for b in (first, second):
        assert run("index", b.url, "--endpoint-url", endpoint, "--index", index_dir).exit_code == 0

    listed = json.loads(run("sources", "--index", index_dir, "--json").output)
    assert [r["url"] for r in listed] == [first.url, f"s3://{second.name}"]
    assert listed[0]["options"] == {"endpoint_url": endpoint} and listed[0]["documents"] == 1
    assert listed[1]["counts"]["skipped"] == 1 and "bad.pdf: damaged PDF" in listed[1]["errors"][0]
    assert listed[0]["last_sync"] and listed[0]["error"] is None
    text = run("sources", "--index", index_dir)
    assert text.exit_code == 0 and first.url in text.output and "skipped: s3://" in text.output

    first.put("a.txt", "Owls hunt mice at night on silent wings.")
    second.put("c.txt", "Dough of flour and yeast rises before it is baked.")
    result = run("index", "--index", index_dir, "--json")  # no path: every recorded source
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (report["added"], report["updated"], report["unchanged"]) == (1, 1, 1)
    assert [s["url"] for s in report["sources"]] == [first.url, f"s3://{second.name}"]
    with Index.open(index_dir) as idx:
        assert idx.search("birds hunting at night", k=1)[0].doc_id == first.key("a.txt")
        assert len(idx) == 3


def test_a_listing_that_fails_changes_nothing_and_says_why(tmp_path, bucket, encoder):
    fill(bucket)
    index_dir = tmp_path / "idx"
    assert run("index", bucket.url, "--endpoint-url", bucket.endpoint, "--index", index_dir).exit_code == 0
    with Index.open(index_dir, load_model=False) as idx:
        before = len(idx)
    assert before == 3

    dead = f"http://127.0.0.1:{free_port()}"
    result = run("index", bucket.url, "--endpoint-url", dead, "--index", index_dir)
    assert result.exit_code == 1 and f"cannot reach {dead}" in result.output and "Traceback" not in result.output
    result = run("index", f"s3://no-such-bucket-{os.getpid()}/x", "--endpoint-url", bucket.endpoint, "--index", index_dir)
    assert result.exit_code == 1 and "no such bucket" in result.output
    bucket.client.delete_object(Bucket=bucket.name, Key="docs/felines.txt")
    result = run("index", bucket.url, "--endpoint-url", bucket.endpoint, "--index", index_dir,
                 env={"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None})
    assert result.exit_code == 1 and "no credentials" in result.output
    result = run("index", "ftp://host/x", "--index", index_dir)
    assert result.exit_code == 1 and "no source reads ftp:// URLs" in result.output
    with Index.open(index_dir, load_model=False) as idx:
        assert len(idx) == before  # nothing pruned: felines.txt is gone from the bucket but no listing saw it
    [record] = read_sources(index_dir)
    assert record["options"] == {"endpoint_url": bucket.endpoint}  # the failed tries did not replace it
    assert "no credentials" in record["error"]
    assert record["url"] == bucket.url  # failed new sources are not recorded


def test_credentials_never_leave_the_environment_or_their_file(tmp_path, bucket, encoder):
    fill(bucket)
    index_dir = tmp_path / "idx"
    outputs = []
    for args in (["index", bucket.url, "--endpoint-url", bucket.endpoint, "--log-format", "json"],
                 ["index", "--log-format", "json"], ["sources"], ["sources", "--json"], ["info"], ["info", "--json"],
                 ["index", bucket.url, "--endpoint-url", f"http://127.0.0.1:{free_port()}"]):
        result = run(*args, "--index", index_dir)
        outputs.append(result.output)
    assert '"logger"' in outputs[0] and bucket.url in outputs[0]  # the JSON log lines were captured
    assert all(SECRET not in out and KEY_ID not in out for out in outputs)
    for path in index_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
            assert KEY_ID.encode() not in path.read_bytes(), path

    # A credentials file: only one that others cannot read, and never echoed.
    creds = tmp_path / "credentials"
    creds.write_text(f"[default]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n")
    creds.chmod(0o644)
    no_env = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}
    result = run("index", bucket.url, "--endpoint-url", bucket.endpoint, "--credentials-file", creds,
                 "--index", tmp_path / "other", env=no_env)
    assert result.exit_code == 1 and "mode 0644" in result.output and "chmod 600" in result.output
    assert SECRET not in result.output and not (tmp_path / "other").exists()  # refused before anything was made
    creds.chmod(0o600)
    result = run("index", bucket.url, "--endpoint-url", bucket.endpoint, "--credentials-file", creds,
                 "--index", tmp_path / "other", "--json", env=no_env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["added"] == 3 and SECRET not in result.output
    recorded = (tmp_path / "other" / SOURCES_FILE).read_text()
    assert str(creds) in recorded and SECRET not in recorded
    creds.chmod(0o660)  # loosened later: the re-sync refuses it, and records why
    result = run("index", "--index", tmp_path / "other", env=no_env)
    assert result.exit_code == 1 and "chmod 600" in result.output and SECRET not in result.output
    assert "mode 0660" in read_sources(tmp_path / "other")[0]["error"]
    creds.chmod(0o600)
    # The AWS shared file is held to the same rule when it is what boto3 would read.
    shared = Path(os.environ["AWS_SHARED_CREDENTIALS_FILE"])
    shared.write_text(creds.read_text())
    shared.chmod(0o640)
    try:
        result = run("index", "--index", index_dir, env=no_env)
        assert result.exit_code == 1 and "AWS shared credentials file" in result.output and SECRET not in result.output
    finally:
        shared.unlink()
    # Credentials in the URL are refused without being repeated.
    result = run("index", f"s3://{KEY_ID}:{SECRET}@{bucket.name}/docs", "--index", index_dir)
    assert result.exit_code == 1 and "may not hold credentials" in result.output
    assert SECRET not in result.output and KEY_ID not in result.output


def test_options_of_a_source_need_a_source_url(tmp_path):
    result = run("index", tmp_path, "--endpoint-url", "http://127.0.0.1:9", "--index", tmp_path / "idx")
    assert result.exit_code == 2 and "source URL" in result.output


def test_the_poller_syncs_the_recorded_sources_on_its_interval(tmp_path, bucket, encoder):
    bucket.put("a.txt", "Kittens purr when they are content.")
    index_dir = tmp_path / "idx"
    assert run("index", bucket.url, "--endpoint-url", bucket.endpoint, "--index", index_dir).exit_code == 0
    runs = []
    with Index.open(index_dir) as idx:
        poller = SourcePoller(idx, interval=0.5, on_run=lambda url, report, error: runs.append((url, report, error)))
        poller.start()
        try:
            bucket.put("b.txt", "Sailing boats cross the harbour at dawn.")
            deadline = time.monotonic() + 60
            while idx.get_document(bucket.key("b.txt")) is None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert idx.get_document(bucket.key("b.txt")) is not None
        finally:
            poller.stop()
    assert runs and all(url == bucket.url and error is None for url, _, error in runs)


def test_watch_with_no_path_polls_the_sources_and_serve_polls_them_too(tmp_path, bucket, encoder, monkeypatch):
    from searcher.web import create_app
    from searcher.web.launcher import ServeConfig, ServeConfigError, poll_sources

    bucket.put("a.txt", "Kittens purr when they are content.")
    index_dir = tmp_path / "idx"
    assert run("watch", "--index", index_dir).exit_code == 2  # nothing to watch, no sources
    assert run("index", bucket.url, "--endpoint-url", bucket.endpoint, "--index", index_dir).exit_code == 0
    bucket.put("b.txt", "Sailing boats cross the harbour at dawn.")
    made = {}

    def once(self):  # the poll loop, one round: the test ends
        made.update(poller=self)
        self.poll()

    monkeypatch.setattr(SourcePoller, "run", once)
    result = run("watch", "--index", index_dir, "--poll-interval", "42", "--json")
    assert result.exit_code == 0, result.output
    assert made["poller"].interval == 42
    [line] = [x for x in result.output.splitlines() if x.startswith("{")]
    assert json.loads(line)["run"] == f"sync {bucket.url}" and json.loads(line)["added"] == 1

    with pytest.raises(ServeConfigError, match="poll-interval"):
        ServeConfig(indexes=[("a", index_dir), ("b", tmp_path / "other")], poll_interval=60)
    with Index.open(index_dir) as idx:
        app = create_app(idx)
        assert poll_sources(app, ServeConfig(indexes=[("idx", index_dir)]), None, print) is None  # not asked
        runs = []
        poller = poll_sources(app, ServeConfig(indexes=[("idx", index_dir)], poll_interval=30),
                              lambda kind, report: runs.append((kind, report)), print)
        assert poller.interval == 30
        bucket.put("c.txt", "Dough of flour and yeast rises before it is baked.")
        poller.poll()  # through the server's write turn
        assert runs[0][0] == f"sync {bucket.url}" and runs[0][1].added == 1
        assert idx.get_document(bucket.key("c.txt")) is not None
