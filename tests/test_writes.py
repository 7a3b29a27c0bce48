"""The write API (searcher/web/writes.py): POST /api/documents and DELETE /api/documents/<id> with an
admin key, over small fake-encoder indexes (tests/fake_encoder.py; no model), through Flask's
test client and through waitress (a search answers while a long POST encodes)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote, urlparse

import pytest

from searcher import Index
from searcher.storage.folder import exclusive_lock
from tests.conftest import ANIMALS
from searcher.web import create_app
from searcher.web.keys import ApiKey, KeyRing, digest
from searcher.web.server import MAX_BODY_BYTES, serving

ADMIN = "srch_admin1_" + "a" * 43
READ = "srch_reader1_" + "r" * 43
KEYS = KeyRing([ApiKey("admin1", digest(ADMIN), "admin"), ApiKey("reader1", digest(READ), "read")])
AUTH = {"Authorization": f"Bearer {ADMIN}"}
OWL = {"id": "owl", "title": "Owls", "text": "Barn owls hunt voles and shrews over meadows at dusk.",
       "metadata": {"type": "md"}}


@pytest.fixture
def index(tmp_path, fake_encoder):
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder)
    idx.add_documents(ANIMALS)
    yield idx
    idx.close()


@pytest.fixture
def client(index):
    return create_app(index, keys=KEYS).test_client()


def api_error(response, status: int) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error", "message", "status"} and body["status"] == status
    return body


def top_ids(client, query: str, mode: str = "keyword") -> list[str]:
    r = client.get("/api/search", query_string={"q": query, "mode": mode}, headers=AUTH)
    assert r.status_code == 200, r.get_data(as_text=True)
    return [hit["doc_id"] for hit in r.get_json()["results"]]


def test_post_one_document_then_search_finds_it(client, index):
    assert "owl" not in top_ids(client, "barn owls voles")
    r = client.post("/api/documents", json=OWL, headers=AUTH)
    assert r.status_code == 201, r.get_data(as_text=True)
    report = r.get_json()
    assert report["added"] == 1 and report["chunks"] == 1 and report["skipped"] == []
    assert report["ids"] == ["owl"]
    assert {"updated", "unchanged", "removed", "tokens", "seconds", "replaced"} <= set(report)
    assert top_ids(client, "barn owls voles")[0] == "owl"
    assert top_ids(client, "barn owls voles", mode="dense")[0] == "owl"
    doc = client.get("/api/documents/owl", headers=AUTH).get_json()
    assert doc["title"] == "Owls" and doc["metadata"]["type"] == "md"
    assert len(index) == len(ANIMALS) + 1


def test_post_a_list_reports_added_updated_and_unchanged(client):
    docs = [OWL, {"id": "fox", "text": "A red fox trots along the hedge.", "colour": "red"}]
    first = client.post("/api/documents", json=docs, headers=AUTH).get_json()
    assert (first["added"], first["ids"]) == (2, ["owl", "fox"])
    fox = client.get("/api/documents/fox", headers=AUTH).get_json()
    assert fox["metadata"]["colour"] == "red"  # other keys become metadata, as add_documents does
    again = client.post("/api/documents", json=[OWL, {**docs[1], "text": "A grey fox naps."}], headers=AUTH)
    assert again.status_code == 201
    assert (again.get_json()["unchanged"], again.get_json()["updated"]) == (1, 1)
    assert "fox" in top_ids(client, "grey fox naps")


def test_a_blank_document_is_reported_as_skipped(client):
    r = client.post("/api/documents", json=[OWL, {"id": "blank", "text": "   "}], headers=AUTH)
    body = r.get_json()
    assert r.status_code == 201 and body["added"] == 1
    assert body["skipped"] and "no text" in body["skipped"][0]["reason"]


def test_delete_then_it_is_gone(client, index):
    posted = client.post("/api/documents", json=OWL, headers=AUTH)
    assert posted.status_code == 201 and posted.get_json()["generation"] == index.generation
    r = client.delete("/api/documents/owl", headers=AUTH)
    assert r.status_code == 200 and r.get_json() == {"id": "owl", "deleted": 1, "generation": index.generation}
    assert index.generation > posted.get_json()["generation"]  # the delete committed a generation of its own
    assert client.get("/api/search?q=owls&mode=keyword", headers=AUTH).get_json()["generation"] == index.generation
    assert "owl" not in top_ids(client, "barn owls voles")
    api_error(client.get("/api/documents/owl", headers=AUTH), 404)
    assert api_error(client.delete("/api/documents/owl", headers=AUTH), 404)["error"] == "not_found"
    assert len(index) == len(ANIMALS)


def test_delete_ids_with_slashes_in_the_path_and_as_a_parameter(client):
    path_id = "/home/ann/notes/a file.md"
    client.post("/api/documents", json=[{"id": path_id, "text": "Notes about herons."},
                                        {"id": "q?id", "text": "Odd ids work too."}], headers=AUTH)
    assert client.delete("/api/documents/" + quote(path_id), headers=AUTH).get_json()["deleted"] == 1
    assert client.delete("/api/documents", query_string={"id": "q?id"}, headers=AUTH).status_code == 200
    api_error(client.delete("/api/documents", headers=AUTH), 400)


@pytest.mark.parametrize("body, reason", [
    (b"", "empty"),
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe\x00", "not valid JSON"),
    (b"[" * 100_00 + b"]" * 100_00, "not valid JSON"),
    (b"42", "not int"),
    (b'"text"', "not str"),
    (b"[]", "empty"),
    (b'[{"id": "a", "text": "fine"}, 7]', "document 1: must be a JSON object"),
    (b'{"id": "a"}', "document 0: document 'a' has no text"),
    (b'{"text": "no id"}', "document 0: document has no id"),
    (b'[{"id": "a", "text": "x", "metadata": [1]}]', "metadata must be a dict"),
])
def test_bad_bodies_are_400_with_the_reason_and_nothing_is_written(client, index, body, reason):
    r = client.post("/api/documents", data=body, content_type="application/json", headers=AUTH)
    assert reason in api_error(r, 400)["message"]
    assert len(index) == len(ANIMALS)


def test_bad_on_conflict_is_400(client):
    r = client.post("/api/documents?on_conflict=merge", json=OWL, headers=AUTH)
    assert "on_conflict" in api_error(r, 400)["message"]
    assert client.post("/api/documents?on_conflict=replace", json=OWL, headers=AUTH).status_code == 201


def test_a_post_too_large_is_413(index):
    client = create_app(index, keys=KEYS, max_write_bytes=100_000).test_client()
    doc = {"id": "big", "text": "word " * 30_000}  # 150 KB
    r = client.post("/api/documents", data=json.dumps(doc), content_type="application/json", headers=AUTH)
    assert api_error(r, 413)["error"] == "request_entity_too_large"
    assert "100,000" in r.get_json()["message"]
    medium = {"id": "medium", "text": "word " * 16_000}  # 80 KB: over the 64 KiB of other requests
    assert len(json.dumps(medium)) > MAX_BODY_BYTES
    assert client.post("/api/documents", json=medium, headers=AUTH).status_code == 201
    # Only POST /api/documents takes a large body.
    api_error(client.get("/api/search?q=x", data=json.dumps(medium), headers=AUTH), 413)
    api_error(client.delete("/api/documents/medium", data=json.dumps(medium), headers=AUTH), 413)


def test_waitress_lets_the_app_answer_413_in_json(index):
    app = create_app(index, keys=KEYS, max_write_bytes=2 * 1024 * 1024)
    with serving(app) as url:
        u = urlparse(url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        conn.request("POST", "/api/documents", body=b"x" * (2 * 1024 * 1024 + 1),
                     headers={**AUTH, "Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 413 and json.loads(r.read())["error"] == "request_entity_too_large"
        conn.close()
        # A chunked body (no Content-Length) over the limit: JSON from the app too.
        chunk = b"x" * (512 * 1024)
        chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
        answer = raw_post(url, chunked, chunked=True)
        assert answer.startswith(b"HTTP/1.1 413") and b"request_entity_too_large" in answer
        # Far beyond it, waitress itself refuses (plain text) on seeing the Content-Length.
        assert raw_post(url, b"x" * (8 * 1024 * 1024)).startswith(b"HTTP/1.1 413")


def raw_post(url: str, body: bytes, chunked: bool = False) -> bytes:
    """POST /api/documents on a plain socket; the answer. The headers go first, and the body
    only if no answer comes at once (waitress refuses a Content-Length over its limit
    unread: sending the body then would reset the connection, losing the answer)."""
    u = urlparse(url)
    length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"
    head = (f"POST /api/documents HTTP/1.1\r\nHost: {u.netloc}\r\nAuthorization: Bearer {ADMIN}\r\n"
            f"Content-Type: application/json\r\n{length}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((u.hostname, u.port), timeout=60) as sock:
        sock.sendall(head)
        sock.settimeout(1)
        try:
            answer = sock.recv(65536)
        except socket.timeout:
            answer = b""
        sock.settimeout(60)
        if not answer:
            sock.sendall(body)
        while data := sock.recv(65536):
            answer += data
        return answer


def test_another_process_writing_is_409(client, index):
    with exclusive_lock(index.path):  # what another process's writer holds
        r = client.post("/api/documents", json=OWL, headers=AUTH)
        assert "Another process" in api_error(r, 409)["message"]
        api_error(client.delete("/api/documents/cat", headers=AUTH), 409)
    assert client.post("/api/documents", json=OWL, headers=AUTH).status_code == 201


def test_a_write_waiting_too_long_for_another_is_503(client):
    service = client.application.extensions["searcher"]
    service.write_wait = 0.01
    with service.writes.turn():  # another write, still running
        r = client.post("/api/documents", json=OWL, headers=AUTH)
    assert "another write" in api_error(r, 503)["message"] and r.headers["Retry-After"]


class GatedEncoder:
    """The index's encoder, whose document encoding (Writer's encode_ids) waits until released:
    a write that is as slow as the test wants. Queries are encoded by the index's own
    QueryEncoder, which holds the real encoder, so searches never wait here."""

    def __init__(self, inner):
        self.inner = inner
        self.started = threading.Event()
        self.release = threading.Event()

    def encode_ids(self, *args, **kwargs):
        self.started.set()
        assert self.release.wait(120), "the test never released the write"
        return self.inner.encode_ids(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def request(url: str, method: str, path: str, body=None) -> tuple[int, dict]:
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={**AUTH, "Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, json.loads(r.read())
    finally:
        conn.close()


def test_a_search_answers_while_a_long_post_encodes(index):
    """A POST of many documents in one thread, held inside its encoding; searches in another
    thread answer (from the last generation, whole) before the POST finishes."""
    gate = GatedEncoder(index.encoder)
    index.encoder = gate
    docs = [{"id": f"bird-{i}", "title": f"Bird {i}", "text": f"Heron number {i} wades in the shallow marsh."}
            for i in range(300)]
    with serving(create_app(index, keys=KEYS), threads=4) as url, ThreadPoolExecutor(2) as pool:
        post = pool.submit(request, url, "POST", "/api/documents", docs)
        assert gate.started.wait(60), "the POST never started encoding"
        try:
            for query in ("kittens", "heron marsh"):
                status, body = request(url, "GET", f"/api/search?q={quote(query)}&mode=hybrid")
                assert status == 200 and not post.done()  # answered before the POST finished
                assert not any(hit["doc_id"].startswith("bird-") for hit in body["results"])
            status, health = request(url, "GET", "/api/health")
            assert status == 200 and health["documents"] == len(ANIMALS) and not post.done()
            # A second write waits its turn behind the first (one writer), then runs.
            second = pool.submit(request, url, "DELETE", "/api/documents/cat")
            assert not second.done()
        finally:
            gate.release.set()
        status, report = post.result(timeout=120)
        assert status == 201 and report["added"] == 300
        status, deleted = second.result(timeout=120)
        assert status == 200 and {k: deleted[k] for k in ("id", "deleted")} == {"id": "cat", "deleted": 1}
        status, body = request(url, "GET", "/api/search?q=heron+marsh&mode=keyword&k=5")
        assert status == 200 and all(hit["doc_id"].startswith("bird-") for hit in body["results"])
    assert len(index) == len(ANIMALS) - 1 + 300
