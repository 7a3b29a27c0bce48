"""GET /metrics (searcher/web/metrics.py): after real searches, writes and failed sign-ins, the
scrape is parsed with prometheus-client's own parser and its numbers checked against what was
done and against the index's counts; who may scrape (loopback without keys; admin or metrics
keys with them). Fake-encoder indexes (tests/fake_encoder.py): no model."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from searcher import Index
from searcher.cli import main as cli
from searcher.readers.options import LoadOptions
from searcher.web import create_app
from searcher.web.keys import ApiKey, KeyRing, digest, new_key, parse_key_file, read_key_file
from searcher.web.writes import watch_folders
from tests.conftest import ANIMALS

ADMIN = "srch_admin1_" + "a" * 43
READ = "srch_reader1_" + "r" * 43
SCRAPER = "srch_scrape1_" + "m" * 43
LIMITED = "srch_limited1_" + "l" * 43
KEYS = KeyRing([ApiKey("admin1", digest(ADMIN), "admin"), ApiKey("reader1", digest(READ), "read"),
                ApiKey("scrape1", digest(SCRAPER), "metrics"),
                ApiKey("limited1", digest(LIMITED), "admin", "idx")])
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_SCRAPER = {"Authorization": f"Bearer {SCRAPER}"}
DEADLINE = 30.0  # seconds any wait may take


@pytest.fixture
def index(tmp_path, fake_encoder):
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    idx.add_documents(ANIMALS)
    yield idx
    idx.close()


def scrape(client, headers=AS_ADMIN) -> dict[tuple, float]:
    """Every sample of a scrape: (name, sorted label pairs) -> value, read by prometheus-client's parser."""
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(r.get_data(as_text=True)) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_searches_writes_and_failed_sign_ins_move_the_metrics(index):
    app = create_app(index, keys=KEYS)
    client = app.test_client()
    before = scrape(client)
    generation = index.committed_generation()
    for mode in ("dense", "keyword", "hybrid", None):  # None: the default mode, hybrid
        query = {"q": "small felines", **({"mode": mode} if mode else {})}
        assert client.get("/api/search", query_string=query, headers=AS_ADMIN).status_code == 200
    index.commit_chunks = 1  # a commit every chunk: a write of three documents makes several commits
    docs = [{"id": f"bird{i}", "text": f"Bird {i} sings in the hedge at dawn."} for i in range(3)]
    r = client.post("/api/documents", json=docs, headers=AS_ADMIN)
    assert r.status_code == 201, r.get_data(as_text=True)
    report = r.get_json()
    assert client.delete("/api/documents/bird0", headers=AS_ADMIN).status_code == 200
    bad = {"Authorization": "Bearer srch_nobody_" + "x" * 43}
    assert client.get("/api/search", query_string={"q": "cats"}, headers=bad).status_code == 401
    assert client.post("/sign-in", data={"key": "not a key", "next": "/"}).status_code == 401
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    for mode, times in (("dense", 1), ("keyword", 1), ("hybrid", 2)):
        assert moved("searcher_search_seconds_count", index="idx", mode=mode) == times
        assert moved("searcher_search_seconds_bucket", index="idx", mode=mode, le="+Inf") == times
    assert moved("searcher_search_seconds_sum", index="idx", mode="dense") > 0
    assert value(after, "searcher_http_requests_total", endpoint="api.search", status="200") == 4
    assert value(after, "searcher_http_requests_total", endpoint="api.search", status="401") == 1
    assert value(after, "searcher_http_requests_total", endpoint="writes.add_documents", status="201") == 1
    assert value(after, "searcher_http_requests_total", endpoint="writes.delete_document", status="200") == 1
    assert value(after, "searcher_http_requests_total", endpoint="auth.sign_in_post", status="401") == 1
    assert value(after, "searcher_http_requests_total", endpoint="metrics.metrics", status="200") == 1  # the first scrape
    assert moved("searcher_write_seconds_count", index="idx", kind="documents") == 1
    assert moved("searcher_write_seconds_count", index="idx", kind="delete") == 1
    assert moved("searcher_write_seconds_count", index="idx", kind="watch") == 0
    commits = moved("searcher_commits_total", index="idx")
    assert commits == index.committed_generation() - generation and commits >= 4  # 3+ for the POST, 1 the delete
    assert moved("searcher_encoded_documents_total", index="idx") == report["added"] == 3
    assert moved("searcher_encoded_chunks_total", index="idx") == report["chunks"] == 3
    assert moved("searcher_encode_seconds_total", index="idx") == pytest.approx(report["seconds"], abs=1e-3)
    assert moved("searcher_failed_sign_ins_total") == 2
    # the per-index gauges are the index's own counts
    info = index.info()
    for field in ("documents", "chunks", "vectors", "keyword_pending", "generation"):
        assert value(after, f"searcher_index_{field}", index="idx") == info[field], field
    assert value(after, "searcher_index_documents", index="idx") == len(ANIMALS) + 2
    assert value(after, "searcher_index_unavailable", index="idx") == 0
    assert value(after, "searcher_write_queue_waiting", index="idx") == 0
    assert value(after, "searcher_write_running", index="idx") == 0
    assert any(name == "process_cpu_seconds_total" for name, _ in after)  # the process collector
    assert any(name == "python_info" for name, _ in after)  # the platform collector


def test_the_watchers_runs_count_as_writes(index, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "wren.txt").write_text("Wrens nest in the ivy by the shed.")
    app = create_app(index, keys=KEYS)
    watch_folders(app, [docs], LoadOptions(workers=0), reconcile_every=None, settle=0)  # not started
    client = app.test_client()
    r = client.post("/api/index", headers=AS_ADMIN)
    assert r.status_code == 200, r.get_data(as_text=True)
    samples = scrape(client)
    assert value(samples, "searcher_write_seconds_count", index="idx", kind="watch") == 1
    assert value(samples, "searcher_encoded_documents_total", index="idx") == r.get_json()["added"] == 1
    assert value(samples, "searcher_commits_total", index="idx") >= 1


def test_write_queue_depth_is_read_at_scrape_time(index):
    app = create_app(index)  # no keys: loopback scrapes, no write API (the service writes directly)
    service = app.extensions["searcher"]
    client = app.test_client()
    held, release = threading.Event(), threading.Event()

    def slow(_):
        held.set()
        release.wait(DEADLINE)

    first = threading.Thread(target=service.write, args=(slow,))
    second = threading.Thread(target=service.write, args=(lambda _: None,))
    first.start()
    try:
        assert held.wait(DEADLINE)
        second.start()
        ends = time.monotonic() + DEADLINE
        while service.writes.waiting < 1 and time.monotonic() < ends:
            time.sleep(0.01)
        samples = scrape(client, headers={})
        assert value(samples, "searcher_write_queue_waiting", index="idx") == 1
        assert value(samples, "searcher_write_running", index="idx") == 1
    finally:
        release.set()
        first.join(DEADLINE)
        second.join(DEADLINE)
    samples = scrape(client, headers={})
    assert value(samples, "searcher_write_queue_waiting", index="idx") == 0
    assert value(samples, "searcher_write_running", index="idx") == 0
    assert value(samples, "searcher_write_seconds_count", index="idx", kind="watch") == 2


def test_the_damage_guard_state_shows(index):
    app = create_app(index)
    client = app.test_client()
    assert value(scrape(client, {}), "searcher_index_unavailable", index="idx") == 0
    (index.path / "content.db").unlink()  # noticed at the next request: the index is marked broken
    samples = scrape(client, {})
    assert value(samples, "searcher_index_unavailable", index="idx") == 1
    assert ("searcher_index_documents", (("index", "idx"),)) not in samples  # nothing to count it by


def test_each_app_has_its_own_registry(index):
    one, two = create_app(index).test_client(), create_app(index).test_client()
    assert one.get("/api/search?q=cats&mode=keyword").status_code == 200
    assert value(scrape(one, {}), "searcher_search_seconds_count", index="idx", mode="keyword") == 1
    assert value(scrape(two, {}), "searcher_search_seconds_count", index="idx", mode="keyword") == 0


def test_several_indexes_are_labelled_by_name(tmp_path, fake_encoder):
    notes = Index.create(tmp_path / "n", encoder=fake_encoder)
    mail = Index.create(tmp_path / "m", encoder=fake_encoder)
    try:
        notes.add_documents(ANIMALS)
        client = create_app(indexes={"notes": notes, "mail": mail}).test_client()
        assert client.get("/api/search?q=cats&index=*").status_code == 200
        samples = scrape(client, {})
        assert value(samples, "searcher_index_documents", index="notes") == len(ANIMALS)
        assert value(samples, "searcher_index_documents", index="mail") == 0
        for name in ("notes", "mail"):
            assert value(samples, "searcher_search_seconds_count", index=name, mode="hybrid") == 1
    finally:
        notes.close()
        mail.close()


# -- who may scrape ------------------------------------------------------------------------
def test_without_keys_only_loopback_may_scrape(index):
    client = create_app(index).test_client()
    assert client.get("/metrics").status_code == 200  # the test client comes from 127.0.0.1
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    r = client.get("/metrics", environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert r.status_code == 403 and "loopback" in r.get_json()["message"]
    assert "searcher_" not in r.get_data(as_text=True)


def test_with_keys_admin_and_metrics_keys_may_scrape(index):
    client = create_app(index, keys=KEYS).test_client()
    assert scrape(client, AS_ADMIN) and scrape(client, AS_SCRAPER)
    outside = {"REMOTE_ADDR": "192.0.2.7"}  # with keys the address does not matter
    assert client.get("/metrics", headers=AS_SCRAPER, environ_base=outside).status_code == 200
    r = client.get("/metrics", headers={"Authorization": f"Bearer {READ}"})
    assert r.status_code == 403 and "metrics key" in r.get_json()["message"]
    r = client.get("/metrics", headers={"Authorization": f"Bearer {LIMITED}"})
    assert r.status_code == 403 and "every index" in r.get_json()["message"]
    r = client.get("/metrics")  # no key: 401 as for the API, not the sign-in page
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 401


def test_a_metrics_key_may_read_metrics_only(index):
    client = create_app(index, keys=KEYS).test_client()
    for path in ("/api/search?q=cats", "/api/health", "/api/documents/cat", "/", "/about"):
        r = client.get(path, headers=AS_SCRAPER)
        assert r.status_code == 403, path
    assert "/metrics only" in client.get("/api/search?q=cats", headers=AS_SCRAPER).get_json()["message"]
    assert client.post("/api/documents", json={"id": "x", "text": "y"}, headers=AS_SCRAPER).status_code == 403
    r = client.post("/sign-in", data={"key": SCRAPER, "next": "/"})
    assert r.status_code == 403 and "searcher_session" not in r.headers.get("Set-Cookie", "")


def test_metrics_keys_in_the_key_file_and_the_cli(tmp_path):
    entry, key = new_key("metrics")
    assert entry.scope == "metrics" and entry.allows("metrics") and not entry.allows("read")
    assert parse_key_file(entry.line())[0] == entry
    with pytest.raises(ValueError, match="every index"):
        new_key("metrics", indexes="notes")
    keys = tmp_path / "keys.txt"
    result = CliRunner().invoke(cli, ["keys", "add", "--scope", "metrics", "--file", str(keys)])
    assert result.exit_code == 0, result.output
    assert [k.scope for k in read_key_file(keys)] == ["metrics"]
    assert KeyRing.from_file(keys).check(result.stdout.strip()) == "metrics"
    result = CliRunner().invoke(cli, ["keys", "add", "--scope", "metrics", "--indexes", "a", "--file", str(keys)])
    assert result.exit_code == 2 and "--indexes" in result.output


def test_a_sharded_index_is_counted_over_its_shards(index, tmp_path, fake_encoder):
    from searcher import ShardedIndex
    from searcher.cluster.shards import split_index

    split_index(index.path, tmp_path / "sharded", 2)
    sharded = ShardedIndex.open(tmp_path / "sharded", encoder=fake_encoder)
    try:
        samples = scrape(create_app(sharded).test_client(), {})
        for field in ("documents", "chunks", "vectors"):
            assert value(samples, f"searcher_index_{field}", index="sharded") == len(ANIMALS), field
        assert ("searcher_index_generation", (("index", "sharded"),)) not in samples  # each shard has its own
        assert value(samples, "searcher_index_unavailable", index="sharded") == 0
    finally:
        sharded.close()
