"""The encoder as a service: POST /v1/embeddings and GET /v1/models (searcher/web/embeddings.py)
through the official `openai` client and LangChain's OpenAIEmbeddings on a real waitress
server, its vectors equal to those indexing stores, its refusals, keys and limits;
`Index.encode`, `RemoteIndex.encode` and the shared encode queue."""

from __future__ import annotations

import base64
import threading

import numpy as np
import pytest

from searcher import Index
from searcher.encoding.encoder import DEFAULT_MODEL_NAME, InputTooLong
from searcher.encoding.queries import EncodeQueue
from searcher.remote import connect
from searcher.web import create_app
from searcher.web.keys import KeyRing, new_key
from searcher.web.limits import MAX_EMBED_BYTES, MAX_EMBED_INPUTS
from searcher.web.server import serving

DOCS = [  # no titles: indexing puts a title's tokens first, /v1/embeddings encodes the text alone
    {"id": "cat", "text": "Small felines such as kittens chase mice and nap in sunny windows."},
    {"id": "car", "text": "An automobile engine burns petrol so that the wheels turn."},
]
TEXTS = [d["text"] for d in DOCS]


def stored_vectors(index) -> dict[str, np.ndarray]:
    """Each one-chunk document's stored vector, by its text."""
    _, ids, vectors = index.chunk_vectors()
    rows = dict(zip(ids.tolist(), vectors))
    store = index.store
    return {chunk.text: rows[cid] for cid, chunk in store.chunks([int(i) for i in ids]).items()}


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def served(tmp_path_factory, encoder):
    """A real index of the default model, served with keys: (url, index, {scope: key})."""
    folder = tmp_path_factory.mktemp("embed")
    index = Index.create(folder / "notes", device="cpu")
    index.add_documents(DOCS)
    keys, secrets = [], {}
    for scope in ("read", "admin", "metrics"):
        key, secret = new_key(scope, [k.id for k in keys])
        keys.append(key)
        secrets[scope] = secret
    limited, secrets["other-index"] = new_key("read", [k.id for k in keys], indexes="elsewhere")
    keys.append(limited)
    app = create_app(index, keys=KeyRing(keys))
    with serving(app, threads=8) as url:
        yield url, index, secrets, app
    index.close()


def test_the_openai_client_gets_the_vectors_indexing_stored(served):
    openai = pytest.importorskip("openai")
    url, index, keys, _ = served
    client = openai.OpenAI(base_url=url + "/v1", api_key=keys["read"], max_retries=0, timeout=60)
    assert DEFAULT_MODEL_NAME in [m.id for m in client.models.list()]
    stored = stored_vectors(index)
    for fmt in (None, "float", "base64"):  # None: the client asks for base64 and decodes it itself
        given = {"encoding_format": fmt} if fmt else {}
        answer = client.embeddings.create(model=DEFAULT_MODEL_NAME, input=TEXTS, **given)
        assert [d.index for d in answer.data] == [0, 1]
        assert answer.model == DEFAULT_MODEL_NAME
        assert answer.usage.prompt_tokens == answer.usage.total_tokens > 10
        for text, item in zip(TEXTS, answer.data):
            vector = item.embedding
            if fmt == "base64":  # asked for by name, it is handed over as sent
                vector = np.frombuffer(base64.b64decode(vector), "<f4")
            assert len(vector) == index.manifest["dimension"]
            assert cosine(vector, stored[text]) >= 0.999
    one = client.embeddings.create(model=DEFAULT_MODEL_NAME, input="kittens")
    assert len(one.data) == 1
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        client.embeddings.create(model="text-embedding-3-small", input="kittens")
    with pytest.raises(openai.BadRequestError, match="dimensions cannot be chosen"):
        client.embeddings.create(model=DEFAULT_MODEL_NAME, input="kittens", dimensions=64)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="not-a-key", max_retries=0).embeddings.create(
            model=DEFAULT_MODEL_NAME, input="kittens")


def test_langchain_openai_embeddings_work_unchanged(served):
    lc = pytest.importorskip("langchain_openai")
    url, index, keys, _ = served
    embeddings = lc.OpenAIEmbeddings(model=DEFAULT_MODEL_NAME, base_url=url + "/v1", api_key=keys["read"],
                                     check_embedding_ctx_length=False, tiktoken_enabled=False, max_retries=0)
    stored = stored_vectors(index)
    vectors = embeddings.embed_documents(TEXTS)
    assert [cosine(v, stored[t]) for v, t in zip(vectors, TEXTS)] >= [0.999, 0.999]
    query = embeddings.embed_query("kittens")
    assert len(query) == index.manifest["dimension"]


def test_query_input_type_is_the_search_path_and_tokens_equal_text(served):
    _, index, _, app = served
    client = app.test_client()
    headers = {"Authorization": f"Bearer {served[2]['read']}"}
    answer = client.post("/v1/embeddings", json={"input": ["kittens"], "input_type": "query"}, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    assert cosine(answer.get_json()["data"][0]["embedding"], index.queries.encode("kittens")[0]) >= 0.999
    ids = index.encoder.tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]
    by_ids = client.post("/v1/embeddings", json={"input": [ids], "encoding_format": "base64"}, headers=headers)
    vector = np.frombuffer(base64.b64decode(by_ids.get_json()["data"][0]["embedding"]), "<f4")
    assert cosine(vector, stored_vectors(index)[TEXTS[0]]) >= 0.999


@pytest.mark.parametrize("body, status, reason", [
    ({"input": []}, 400, "non-empty list"),
    ({"input": [1.5]}, 400, "neither a text nor"),
    ({"input": ["a"], "encoding_format": "int8"}, 400, "encoding_format must be one of"),
    ({"input": ["a"], "input_type": "code"}, 400, "input_type must be one of"),
    ({"input": ["a"], "truncate": "no"}, 400, "truncate must be"),
    ({"input": ["a"], "model": 3}, 400, "model must be a string"),
    ({"input": [[10 ** 9]]}, 400, "outside the model's vocabulary"),
    ({"input": ["word " * 400], "truncate": False}, 400, "the model reads at most 256"),
    ({"input": ["a"] * (MAX_EMBED_INPUTS + 1)}, 413, f"at most {MAX_EMBED_INPUTS}"),
    ({"input": ["a"], "model": "gpt-4"}, 404, "is not served here"),
])
def test_bad_requests_are_refused_with_the_reason(served, body, status, reason):
    _, _, keys, app = served
    answer = app.test_client().post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {keys['read']}"})
    assert answer.status_code == status
    assert reason in answer.get_json()["error"]["message"]


def test_long_texts_are_cut_by_default_and_bodies_have_a_limit(served):
    _, _, keys, app = served
    client = app.test_client()
    headers = {"Authorization": f"Bearer {keys['read']}"}
    cut = client.post("/v1/embeddings", json={"input": ["word " * 400]}, headers=headers)
    assert cut.status_code == 200 and cut.get_json()["usage"]["prompt_tokens"] == 256
    huge = client.post("/v1/embeddings", json={"input": ["x" * (MAX_EMBED_BYTES + 10)]}, headers=headers)
    assert huge.status_code == 413 and "limit" in huge.get_json()["error"]["message"]
    not_json = client.post("/v1/embeddings", data=b"input=a", headers=headers)
    assert not_json.status_code == 400 and "JSON object" in not_json.get_json()["error"]["message"]


def test_keys_and_scopes_are_those_of_search(served):
    _, _, keys, app = served
    client = app.test_client()
    body = {"input": ["a"]}
    assert client.post("/v1/embeddings", json=body).status_code == 401  # JSON, not the sign-in page
    assert client.get("/v1/models").status_code == 401
    for scope in ("read", "admin"):
        assert client.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {keys[scope]}"}
                           ).status_code == 200
    assert client.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {keys['metrics']}"}
                       ).status_code == 403
    limited = client.post("/v1/embeddings", json=body, headers={"Authorization": f"Bearer {keys['other-index']}"})
    assert limited.status_code == 403
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {keys['other-index']}"}
                      ).get_json()["data"] == []
    # The exception is for this endpoint only: a read key still cannot write.
    assert client.post("/api/documents", json={"documents": []},
                       headers={"Authorization": f"Bearer {keys['read']}"}).status_code == 403


def test_remote_encode_and_index_encode_agree(served):
    url, index, keys, _ = served
    remote = connect(url, api_key=keys["read"])
    vectors = remote.encode(TEXTS + ["a third text"], batch_size=2)
    assert vectors.shape == (3, index.manifest["dimension"]) and vectors.dtype == np.float32
    local = index.encode(TEXTS + ["a third text"])
    assert all(cosine(a, b) >= 0.9999 for a, b in zip(vectors, local))
    assert cosine(remote.encode("kittens", input_type="query")[0], index.queries.encode("kittens")[0]) >= 0.999
    with pytest.raises(ValueError, match="at most 256"):
        remote.encode(["word " * 400], truncate=False)
    with pytest.raises(InputTooLong):
        index.encode(["word " * 400], truncate=False)
    assert index.encode([]).shape == (0, index.manifest["dimension"])


def test_prefixes_go_before_documents_and_queries(tmp_path, fake_encoder):
    """An index with e5-style prefixes: the endpoint's vectors are still those it stored and searches with."""
    index = Index.create(tmp_path / "e5", encoder=fake_encoder, query_prefix="query: ", document_prefix="passage: ")
    index.add_documents(DOCS)
    plain = Index.create(tmp_path / "plain", encoder=fake_encoder, query_prefix="", document_prefix="")
    assert index.info()["document_prefix"] == "passage: "
    stored = stored_vectors(index)
    app = create_app(index)
    answer = app.test_client().post("/v1/embeddings", json={"input": TEXTS, "model": "fake"}).get_json()
    for text, item in zip(TEXTS, answer["data"]):
        assert cosine(item["embedding"], stored[text]) >= 0.999
        assert cosine(item["embedding"], plain.encode(text)[0]) < 0.999  # the prefix changed it
    query = app.test_client().post("/v1/embeddings", json={"input": "kittens", "input_type": "query"}).get_json()
    assert cosine(query["data"][0]["embedding"], index.queries.encode("kittens")[0]) >= 0.999
    assert cosine(query["data"][0]["embedding"], plain.encode("query: kittens", input_type="query")[0]) >= 0.999
    assert index.similar("cat", k=1)[0].doc_id == "car"  # "more like this" re-encodes with the prefix too
    index.close()
    plain.close()


def test_concurrent_requests_share_forward_passes(fake_encoder):
    """EncodeQueue gathers what waits behind a running pass into the next one; a request's own
    error (an input too long) reaches it alone."""
    entered, release = threading.Event(), threading.Event()
    calls = []

    class Gated:
        def encode_ids(self, inputs, batch_size=None):
            calls.append(len(inputs))
            if len(calls) == 1:
                entered.set()
                assert release.wait(30)
            return fake_encoder.encode_ids(inputs)

    queue = EncodeQueue(Gated())
    results, errors = {}, {}

    def ask(name, texts, truncate=True):
        try:
            results[name] = queue.encode(lambda: fake_encoder.model_inputs(texts, truncate=truncate), len(texts))
        except ValueError as e:
            errors[name] = e

    first = threading.Thread(target=ask, args=("first", ["a"]))
    first.start()
    assert entered.wait(30)
    others = [threading.Thread(target=ask, args=(f"r{i}", [f"text {i}", "more"])) for i in range(3)]
    others.append(threading.Thread(target=ask, args=("long", ["word " * 400], False)))
    for t in others:
        t.start()
    while len(queue._queue) < 4:
        threading.Event().wait(0.01)
    release.set()
    for t in [first, *others]:
        t.join(30)
    assert calls == [1, 6]  # three requests of two texts in one pass; the refused one added nothing
    assert set(errors) == {"long"} and "at most" in str(errors["long"])
    for i in range(3):
        np.testing.assert_allclose(results[f"r{i}"], fake_encoder.encode([f"text {i}", "more"]), atol=1e-6)


def test_searcher_encode_writes_npy_and_jsonl(served, tmp_path):
    from click.testing import CliRunner

    from searcher.cli import main

    url, index, keys, _ = served
    lines = tmp_path / "texts.txt"
    lines.write_text("\n".join(TEXTS) + "\n")
    runner = CliRunner()
    result = runner.invoke(main, ["encode", str(lines), "--index", str(index.path), "-o", str(tmp_path / "v.npy")])
    assert result.exit_code == 0, result.output
    vectors = np.load(tmp_path / "v.npy")
    stored = stored_vectors(index)
    assert vectors.shape == (2, index.manifest["dimension"])
    assert all(cosine(v, stored[t]) >= 0.999 for v, t in zip(vectors, TEXTS))
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(f'{{"id": "{d["id"]}", "body": "{d["text"]}"}}\n' for d in DOCS))
    result = runner.invoke(main, ["encode", str(jsonl), "--field", "body", "--url", url, "--api-key", keys["read"]])
    assert result.exit_code == 0, result.output
    import json

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["id"] for r in rows] == ["cat", "car"]
    assert all(cosine(r["embedding"], stored[t]) >= 0.999 for r, t in zip(rows, TEXTS))
    result = runner.invoke(main, ["encode", "-", "--index", str(index.path), "--input-type", "query"], input="kittens\n")
    assert result.exit_code == 0, result.output
    assert cosine(json.loads(result.stdout)["embedding"], index.queries.encode("kittens")[0]) >= 0.999
    result = runner.invoke(main, ["encode", "-", "--index", str(index.path), "--no-truncate"], input="word " * 400)
    assert result.exit_code != 0 and "at most 256" in result.output


def checkpoint_copy(source, folder, prompts: dict | None = None):
    import json
    import shutil

    shutil.copytree(source, folder)
    if prompts is not None:
        (folder / "config_sentence_transformers.json").write_text(json.dumps({"prompts": prompts}))
    return folder


def test_a_checkpoints_prompts_become_a_new_index_prefixes(tmp_path, other_model):
    from click.testing import CliRunner

    from searcher.cli import main

    model = checkpoint_copy(other_model, tmp_path / "e5-like", {"query": "query: ", "passage": "passage: "})
    index = Index.create(tmp_path / "a", model, device="cpu", precision="exact")
    assert (index.manifest["query_prefix"], index.manifest["document_prefix"]) == ("query: ", "passage: ")
    index.add_documents(DOCS)
    stored = stored_vectors(index)
    assert cosine(index.encode(TEXTS[0])[0], stored[TEXTS[0]]) >= 0.999
    index.close()
    index = Index.create(tmp_path / "b", model, device="cpu", precision="exact", query_prefix="")
    assert (index.manifest["query_prefix"], index.manifest["document_prefix"]) == ("", "passage: ")
    index.close()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(TEXTS[0])
    runner = CliRunner()
    made = runner.invoke(main, ["index", str(docs), "--index", str(tmp_path / "c"), "--model", str(model),
                                "--precision", "exact", "--query-prefix", "search_query: "])
    assert made.exit_code == 0, made.output
    again = runner.invoke(main, ["index", str(docs), "--index", str(tmp_path / "c"), "--query-prefix", "other: "])
    assert again.exit_code != 0 and "prefixes are chosen when an index is created" in again.output
    info = runner.invoke(main, ["info", "--index", str(tmp_path / "c"), "--json"])
    assert '"query_prefix": "search_query: "' in info.output


def test_an_architecture_without_sdpa_loads_with_eager_attention(tmp_path):
    """MPNet (all-mpnet-base-v2's architecture) has no SDPA attention in transformers: the
    exact path falls back to eager attention instead of failing."""
    import shutil

    from transformers import MPNetConfig, MPNetModel

    from searcher.encoding.encoder import Encoder, default_model_path

    folder = tmp_path / "tiny-mpnet"
    config = MPNetConfig(vocab_size=30527, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=130)
    MPNetModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(default_model_path() / name, folder / name)
    encoder = Encoder(folder, device="cpu", precision="exact")
    assert encoder.model.config._attn_implementation == "eager"
    vectors = encoder.encode(TEXTS)
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    index = Index.create(tmp_path / "idx", folder, device="cpu", precision="exact")
    index.add_documents(DOCS)
    assert cosine(index.encode(TEXTS[1])[0], stored_vectors(index)[TEXTS[1]]) >= 0.999
    index.close()


class Counting:
    """An encoder stand-in that records each pass's inputs (and can hold the first pass)."""

    def __init__(self, inner, hold_first: bool = False):
        self.inner, self.dimension = inner, inner.dimension
        self.passes: list[list] = []
        self.entered, self.release = threading.Event(), threading.Event()
        if not hold_first:
            self.release.set()

    def encode_ids(self, inputs, batch_size=None):
        self.passes.append([tuple(x) for x in inputs])
        if len(self.passes) == 1:
            self.entered.set()
            assert self.release.wait(30)
        return self.inner.encode_ids(inputs)


def test_concurrent_single_sentences_share_passes_with_the_bounded_wait(fake_encoder):
    """16 clients sending one sentence each at the same moment are answered in far fewer
    passes than requests (the pass waits up to max_wait_ms for the others), with the vectors
    each gets alone."""
    counting = Counting(fake_encoder)
    queue = EncodeQueue(counting, max_batch=16, max_wait_ms=2000)
    texts = [f"sentence number {i} about cats" for i in range(16)]
    start, results = threading.Barrier(16), {}

    def ask(i):
        start.wait()
        results[i] = queue.encode(lambda: fake_encoder.model_inputs([texts[i]]), 1)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 16 and queue.requests == 16
    assert queue.batches <= 4 < 16  # one pass when all 16 arrive within the wait
    for i, text in enumerate(texts):
        assert cosine(results[i][0], fake_encoder.encode([text])[0]) >= 0.999


def test_a_huge_request_does_not_starve_a_small_one(fake_encoder):
    """A request of 640 texts is encoded in pieces of at most max_batch inputs; a small
    request arriving meanwhile is answered in the next pass (not after all 640), and every
    vector equals the one-at-a-time vector."""
    counting = Counting(fake_encoder, hold_first=True)
    queue = EncodeQueue(counting, max_batch=64)
    huge = [f"document {i} " + "word " * (i % 50) for i in range(640)]
    results = {}

    def ask(name, texts):
        results[name] = queue.encode(lambda: fake_encoder.model_inputs(texts), len(texts))

    big = threading.Thread(target=ask, args=("huge", huge))
    big.start()
    assert counting.entered.wait(30)  # the first piece of the huge request is being encoded
    small = threading.Thread(target=ask, args=("small", ["a small question"]))
    small.start()
    while len(queue._queue) < 2:
        threading.Event().wait(0.01)
    counting.release.set()
    big.join(60)
    small.join(60)
    assert max(len(p) for p in counting.passes) <= 64
    small_ids = tuple(fake_encoder.model_inputs(["a small question"])[0])
    answered_in = next(i for i, p in enumerate(counting.passes) if small_ids in p)
    assert answered_in == 1  # the pass after the one running when it arrived
    assert sum(len(p) for p in counting.passes[: answered_in + 1]) <= 2 * 64  # not behind 640 inputs
    assert len(counting.passes) == 11  # 641 inputs in passes of 64
    pieces = [sorted(map(len, p)) for p in counting.passes[:-1]]
    assert all(p[-1] - p[0] <= 12 for p in pieces[2:])  # each piece holds similar lengths
    alone = fake_encoder.encode(huge)
    assert min(cosine(a, b) for a, b in zip(results["huge"], alone)) >= 0.999
    assert cosine(results["small"][0], fake_encoder.encode(["a small question"])[0]) >= 0.999


def test_pass_shares():
    """The smallest requests go first, whole; the oldest always gets a quarter of the pass."""
    from searcher.encoding.queries import pass_shares

    assert pass_shares([1, 1, 1], 64) == [1, 1, 1]
    assert pass_shares([640, 1], 64) == [63, 1]
    assert pass_shares([100, 100, 100], 64) == [64, 0, 0]  # the older finishes first
    assert pass_shares([1] * 70, 64) == [1] * 64 + [0] * 6
    assert pass_shares([500] + [1] * 100, 64) == [16] + [1] * 48 + [0] * 52  # no starvation
    assert pass_shares([5, 500, 3], 10) == [5, 2, 3]
    assert pass_shares([], 64) == []
