"""Sharded indexes (searcher/cluster/shards.py, searcher/cluster/sharded.py) and searcher.connect, with the
real default model on a small judged collection made here (never the shared datasets)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

import searcher
from searcher import Index
from searcher import IndexExistsError
from searcher import IndexNotFoundError
from searcher import SearcherError
from searcher import ShardedIndex
from searcher import open_index
from searcher.cli import main
from searcher.quality.evaluate import compute_metrics
from searcher.cluster.shards import check_sharded, read_layout, shard_of, split_index
from searcher.web import create_app
from searcher.web.server import serving

TOPICS = {
    "astro": ["The telescope observed a distant galaxy whose light left it billions of years ago.",
              "Astronomers measured the orbit of a comet passing close to the sun.",
              "A supernova explosion scatters heavy elements across interstellar space.",
              "The rover drilled into Martian rock looking for traces of ancient water.",
              "Black holes bend light so strongly that nothing escapes their event horizon.",
              "Saturn's rings are made of ice grains and rocky debris orbiting the planet."],
    "cook": ["Knead the dough for ten minutes, then let the bread rise in a warm kitchen.",
             "Simmer the tomato sauce slowly with garlic, basil and a pinch of salt.",
             "Whisk egg whites until stiff peaks form before folding them into the batter.",
             "Roast the vegetables at a high oven temperature so their edges caramelise.",
             "A sourdough starter needs regular feeding with flour and water.",
             "Sear the steak in a hot cast iron pan and rest it before slicing."],
    "code": ["The compiler reported a type error on line forty of the parser module.",
             "Use a hash map when you need constant time lookups by key.",
             "Garbage collection frees memory that the program can no longer reach.",
             "Write unit tests so that a refactoring cannot silently break behaviour.",
             "A race condition appears when two threads update shared state without a lock.",
             "Recursion solves the problem by calling the same function on a smaller input."],
    "garden": ["Tomato seedlings need full sun and steady watering through dry weeks.",
               "Compost from kitchen scraps feeds the soil with slow nutrients.",
               "Prune the roses in late winter before new shoots appear.",
               "Aphids on the beans can be washed off with a jet of soapy water.",
               "Mulch keeps moisture in the soil and keeps weeds down between rows.",
               "Plant garlic cloves in autumn for a harvest the following summer."],
    "sport": ["The striker scored twice in the second half to win the football match.",
              "Marathon runners train for months to build endurance over long distances.",
              "The tennis final went to a fifth set tiebreak after four hours.",
              "Cyclists climbed the mountain pass in the hardest stage of the tour.",
              "The swimmer broke the world record in the freestyle relay.",
              "A basketball team needs quick passing to beat a zone defence."],
    "music": ["The orchestra rehearsed the symphony's slow movement with muted strings.",
              "A jazz pianist improvises over the chord changes of a standard.",
              "Tune the guitar strings before the concert so the chords ring true.",
              "The choir sang a cappella, holding the final chord for a long breath.",
              "Drummers keep the tempo steady so the band stays together.",
              "The composer wrote the opera's overture in a single feverish week."],
}
DOCS = [{"id": f"{topic}-{n}", "title": topic.title(), "text": text,
         "metadata": {"type": topic, "modified": f"202{n % 5}-0{n + 1}-01T10:00:00+00:00"}}
        for topic, texts in TOPICS.items() for n, text in enumerate(texts)]
QUERIES = {
    "q1": "planets and stars in space", "q2": "baking bread with yeast and flour", "q3": "software bugs in programs",
    "q4": "growing vegetables in the garden", "q5": "athletes competing in a race", "q6": "playing instruments in a band",
    "q7": "garlic", "q8": "water on Mars", "q9": "threads and locks", "q10": "tomato",
}
QRELS = {
    "q1": {"astro-0": 1, "astro-1": 1, "astro-2": 1, "astro-4": 1, "astro-5": 1},
    "q2": {"cook-0": 2, "cook-4": 2},
    "q3": {"code-0": 1, "code-3": 1, "code-4": 1},
    "q4": {"garden-0": 2, "garden-1": 1, "garden-4": 1, "garden-5": 1},
    "q5": {"sport-1": 2, "sport-3": 1, "sport-4": 1, "sport-0": 1},
    "q6": {"music-2": 1, "music-4": 2, "music-1": 1},
    "q7": {"garden-5": 2, "cook-1": 1},
    "q8": {"astro-3": 2},
    "q9": {"code-4": 2},
    "q10": {"cook-1": 1, "garden-0": 2},
}
SHARDS = 3


def ids(hits):
    return [h.doc_id for h in hits]


@pytest.fixture(scope="module")
def single(tmp_path_factory, encoder):
    idx = Index.create(tmp_path_factory.mktemp("single") / "idx", device="cpu", index_type="flat")
    assert idx.add_documents(DOCS).added == len(DOCS)
    yield idx
    idx.close()


@pytest.fixture(scope="module")
def sharded_dir(single, tmp_path_factory):
    out = tmp_path_factory.mktemp("sharded") / "idx"
    report = split_index(single.path, out, SHARDS)
    assert sum(report.documents) == len(DOCS) and len(report.documents) == SHARDS
    return out


@pytest.fixture(scope="module")
def sharded(sharded_dir):
    idx = open_index(sharded_dir, device="cpu", threads=4)  # the shards searched from a pool (writable: in turn)
    assert idx._pool is not None
    yield idx
    idx.close()


@pytest.fixture
def writable(single, tmp_path):
    """A sharded index of its own, for tests that change it."""
    split_index(single.path, tmp_path / "sharded", SHARDS)
    idx = ShardedIndex.open(tmp_path / "sharded", device="cpu")
    yield idx
    idx.close()


def test_a_split_spreads_documents_by_their_id_hash_and_copies_the_vectors(single, sharded_dir, sharded):
    layout = read_layout(sharded_dir)
    assert (layout["shards"], layout["hash"], layout["folders"]) == (SHARDS, "sha256-64-mod", ["shard-0", "shard-1", "shard-2"])
    assert layout["model_fingerprint"] == single.manifest["model_fingerprint"]
    assert isinstance(sharded, ShardedIndex) and len(sharded) == len(single) == len(DOCS)
    _, source_ids, source_vectors = single.chunk_vectors()
    source = dict(zip(source_ids.tolist(), source_vectors))
    seen = 0
    for number, shard in enumerate(sharded.shards):
        assert shard.manifest["chunk_tokens"] == single.manifest["chunk_tokens"] and shard.index_type == "flat"
        assert all(shard_of(d, SHARDS) == number for d in shard.store.document_ids())
        _, chunk_ids, vectors = shard.chunk_vectors()
        for cid, vector in zip(chunk_ids.tolist(), vectors):
            assert np.array_equal(vector, source[cid])  # copied, not re-encoded
        seen += len(chunk_ids)
        doc = shard.store.document_ids()[0]
        assert shard.get_document(doc) == single.get_document(doc)  # rows as stored, added_at included
    assert seen == len(source)
    assert sorted(len(s) for s in sharded.shards) != [0] * SHARDS and all(len(s) for s in sharded.shards)
    assert shard_of("cook-1", SHARDS) == shard_of("cook-1", SHARDS) == int.from_bytes(
        __import__("hashlib").sha256(b"cook-1").digest()[:8], "big") % SHARDS


def test_dense_results_of_a_flat_sharded_index_equal_the_single_index(single, sharded):
    for query in list(QUERIES.values()) + ["kitchen", "a quiet evening"]:
        expected, got = single.search(query, k=10, mode="dense"), sharded.search(query, k=10, mode="dense")
        assert ids(got) == ids(expected), query
        assert [h.score for h in got] == [h.score for h in expected]
        assert [(h.passage, h.start, h.end) for h in got] == [(h.passage, h.start, h.end) for h in expected]
    where = {"type": {"$in": ["cook", "garden"]}}
    assert ids(sharded.search("tomato", k=4, offset=2, mode="dense", where=where)) == \
        ids(single.search("tomato", k=4, offset=2, mode="dense", where=where))
    assert ids(sharded.search("water", k=6, mode="dense", sort="modified")) == \
        ids(single.search("water", k=6, mode="dense", sort="modified"))
    assert ids(sharded.search("water", k=6, mode="dense", recency=30)) == \
        ids(single.search("water", k=6, mode="dense", recency=30))
    assert sharded.facets("water", ["type", "year"], mode="dense") == single.facets("water", ["type", "year"], mode="dense")
    assert ids(sharded.similar("cook-0", k=5)) == ids(single.similar("cook-0", k=5))
    assert ids(sharded.similar("cook-0", k=5, where={"type": "garden"})) == \
        ids(single.similar("cook-0", k=5, where={"type": "garden"}))
    with pytest.raises(KeyError):
        sharded.similar("no such document")


def ndcg(index, mode="hybrid") -> float:
    run = {q: ids(index.search(text, k=10, mode=mode)) for q, text in QUERIES.items()}
    return compute_metrics(QRELS, run)["nDCG@10"]


def test_hybrid_quality_of_the_sharded_index_is_the_single_index_s(single, sharded):
    assert sharded.keyword_statistics == "dfs"  # the default
    base = ndcg(single)
    assert base > 0.6  # the collection is judged sensibly
    assert abs(ndcg(sharded) - base) <= 0.01
    # the keyword side weighs terms by the whole collection's statistics: closer to the single index
    stats = sharded.keyword_stats("garlic tomato")
    assert stats.chunks == len(DOCS) and stats.frequencies == single.keyword_statistics("garlic tomato").frequencies
    dfs = [h.score for h in sharded.search("garlic tomato", k=5, mode="keyword")]
    sharded.keyword_statistics = "shard"
    try:
        own = [h.score for h in sharded.search("garlic tomato", k=5, mode="keyword")]
    finally:
        sharded.keyword_statistics = "dfs"
    wanted = [h.score for h in single.search("garlic tomato", k=5, mode="keyword")]
    assert np.abs(np.array(dfs) - wanted).sum() < np.abs(np.array(own) - wanted).sum()


def test_a_new_document_lands_in_exactly_its_own_shard(writable):
    doc = {"id": "new-doc", "title": "Kites", "text": "A kite climbs on a steady sea breeze above the dunes."}
    home = shard_of("new-doc", SHARDS)
    before = [len(s) for s in writable.shards]
    report = writable.add_documents([doc, {**doc, "text": "a second copy of the same id"}])
    assert report.added == 1 and "duplicate id 'new-doc'" in str(report.skipped[0])
    after = [len(s) for s in writable.shards]
    assert [a - b for a, b in zip(after, before)] == [1 if n == home else 0 for n in range(SHARDS)]
    assert writable.shards[home].get_document("new-doc")["title"] == "Kites"
    assert writable.get_document("new-doc")["title"] == "Kites" and ids(writable.search("kite on the wind", k=1)) == ["new-doc"]
    report = writable.add_documents([{**doc, "text": "A kite needs a long string and a windy hill."}])
    assert (report.added, report.updated) == (0, 1) and [len(s) for s in writable.shards] == after
    assert "windy hill" in writable.get_document("new-doc")["text"]
    assert writable.delete(["new-doc", "no-such-doc"]) == 1 and [len(s) for s in writable.shards] == before
    bad = writable.add_documents([{"text": "no id"}])
    assert bad.added == 0 and "no id" in str(bad.skipped[0])


def test_indexing_files_into_a_sharded_index_routes_and_prunes(writable, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    for n in range(6):
        (folder / f"note{n}.txt").write_text(f"Note {n}: the ferry to the island leaves at {n + 7} in the morning.")
    report = writable.add_paths([folder])
    assert report.added == 6
    for n in range(6):
        doc_id = str(folder / f"note{n}.txt")
        holders = [i for i, s in enumerate(writable.shards) if s.get_document(doc_id) is not None]
        assert holders == [shard_of(doc_id, SHARDS)]
    (folder / "note2.txt").unlink()
    report = writable.add_paths([folder], prune=True)
    assert (report.removed, report.unchanged) == (1, 5) and writable.get_document(str(folder / "note2.txt")) is None
    assert len(writable) == len(DOCS) + 5


def test_check_reports_every_shard_and_misrouted_documents(writable):
    report = check_sharded(writable.path)
    assert report.ok and [name for name, _ in report.shards] == ["shard-0", "shard-1", "shard-2"]
    assert report.to_dict()["documents"] == len(DOCS)
    home = shard_of("stray", SHARDS)
    wrong = writable.shards[(home + 1) % SHARDS]
    wrong.add_documents([{"id": "stray", "text": "A document written into the wrong shard by hand."}])
    report = check_sharded(writable.path)
    assert not report.ok and "hash to other shards" in report.problems[0] and f"shard-{home}" in report.problems[0]
    wrong.delete("stray")
    vectors = next(writable.path.glob("shard-1/vectors.*.faiss"))
    vectors.write_bytes(b"damaged")
    report = check_sharded(writable.path)
    assert not report.ok and not report.shards[1][1].ok and report.shards[0][1].ok
    assert "shard-1" in report.summary()
    (writable.path / "shards.json").write_text("{}")
    assert "format" in check_sharded(writable.path).problems[0]


def test_a_failed_split_leaves_nothing_behind(single, tmp_path, monkeypatch):
    import searcher.cluster.shards as shards

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shards, "write_layout", fail)
    with pytest.raises(OSError, match="No space"):
        split_index(single.path, tmp_path / "out", 2)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="from 1 to"):
        split_index(single.path, tmp_path / "out", 0)
    with pytest.raises(IndexNotFoundError, match="no index in"):
        split_index(tmp_path, tmp_path / "out", 2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(IndexExistsError, match="not an empty folder"):
        split_index(single.path, tmp_path / "full", 2)
    with pytest.raises(ValueError, match="outside the index"):
        split_index(single.path, single.path / "shards", 2)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_the_command_line_over_a_sharded_index(single, tmp_path):
    out = tmp_path / "sharded"
    result = run("shard", single.path, "--shards", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert "2 shards" in result.output and "nothing re-encoded" in result.output
    result = run("search", "baking bread", "--index", out, "--mode", "dense", "-k", 5, "--json")
    assert result.exit_code == 0, result.output
    assert [h["doc_id"] for h in json.loads(result.output)] == ids(single.search("baking bread", k=5, mode="dense"))
    result = run("info", "--index", out, "--json")
    info = json.loads(result.output)
    assert (info["shards"], info["documents"], info["model"]) == (2, len(DOCS), "all-MiniLM-L6-v2")
    assert "shard-1" in run("info", "--index", out).output
    result = run("check", "--index", out)
    assert result.exit_code == 0 and "shard-0" in result.output and "shard-1" in result.output, result.output
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "kites.txt").write_text("Kites fly on a steady breeze above the dunes.")
    result = run("index", notes, "--index", out)
    assert result.exit_code == 0 and "1 added" in result.output, result.output
    home = shard_of(str(notes / "kites.txt"), 2)
    assert Index.open(out / f"shard-{home}", load_model=False).get_document(str(notes / "kites.txt")) is not None
    assert run("delete", str(notes / "kites.txt"), "--index", out).output.startswith("1 of 1")
    for args, message in [((single.path, "--shards", 0, "--out", tmp_path / "x"), "from 1 to"),
                          ((tmp_path / "notes", "--shards", 2, "--out", tmp_path / "y"), "no index in"),
                          ((single.path, "--shards", 2, "--out", out), "not an empty folder"),
                          ((out, "--shards", 2, "--out", tmp_path / "z"), "already a sharded index")]:
        result = run("shard", *args)
        assert result.exit_code != 0 and message in result.output, result.output
    assert run("eval", tmp_path, "--index", out).exit_code != 0
    with pytest.raises(IndexNotFoundError, match="sharded index"):
        Index.open(out)
    with pytest.raises(IndexExistsError, match="sharded index"):
        Index.create(out, device="cpu")


def test_a_served_sharded_index_and_connect(single, sharded):
    with serving(create_app(sharded)) as url:
        client = searcher.connect(url)
        assert len(client) == len(DOCS)
        for mode in ("dense", "keyword", "hybrid"):
            assert ids(client.search("garden vegetables", k=5, mode=mode)) == \
                ids(sharded.search("garden vegetables", k=5, mode=mode))
        assert ids(client.search("tomato", k=3, mode="dense")) == ids(single.search("tomato", k=3, mode="dense"))
        assert ids(client.search("music", k=3, where={"type": "music"})) == \
            ids(sharded.search("music", k=3, where={"type": "music"}))
        assert ids(client.similar("music-0", k=3)) == ids(single.similar("music-0", k=3))
        assert client.get_document("sport-2")["text"] == TOPICS["sport"][2]
        app = create_app(sharded)
        web = app.test_client()
        assert web.get("/?q=garlic").status_code == 200 and b"garden-5" in web.get("/?q=garlic").data
        assert web.get("/document?id=cook-1&q=garlic").status_code == 200
        about = web.get("/api/about").get_json()
        assert about["counts"]["documents"] == len(DOCS) and "/" in str(about["index"]["generation"])
        assert web.get("/about").status_code == 200
        answer = web.get("/api/map")
        assert answer.status_code == 501 and "sharded" in answer.get_json()["message"]
        assert web.get("/api/health").get_json() == {"status": "ok", "documents": len(DOCS)}


def test_connect_to_a_single_index_server_gives_index_search_s_hits(single):
    with serving(create_app(single)) as url:
        client = searcher.connect(url)
        for mode in ("dense", "keyword", "hybrid"):
            local, far = single.search("stars and planets", k=5, mode=mode), client.search("stars and planets", k=5, mode=mode)
            assert ids(far) == ids(local)
            assert [h.score for h in far] == pytest.approx([h.score for h in local], abs=1e-6)
            assert [h.passage for h in far] == [h.passage for h in local]
        bare = searcher.connect(url.removeprefix("http://"))  # HOST:PORT, as serve prints it
        assert ids(bare.search("stars and planets", k=5)) == ids(single.search("stars and planets", k=5))
    with pytest.raises(ValueError, match="http://127.0.0.1:8000"):
        searcher.connect("ftp://127.0.0.1:8000")
    with pytest.raises(ValueError, match="http://127.0.0.1:8000"):
        searcher.connect("my server")
    with pytest.raises(SearcherError, match="cannot reach"):
        searcher.connect("http://127.0.0.1:9", timeout=2)


def test_a_sharded_index_of_fts5_shards_searches_with_each_shard_s_statistics(tmp_path, encoder):
    idx = Index.create(tmp_path / "fts", device="cpu", keyword_engine="fts5", index_type="flat")
    idx.add_documents(DOCS[:12])
    split_index(idx.path, tmp_path / "sharded", 2)
    with open_index(tmp_path / "sharded", device="cpu") as sharded:
        assert sharded.keyword_stats("bread") is None  # fts5 takes no outside statistics
        assert set(ids(sharded.search("bread", k=3, mode="keyword"))) <= {d["id"] for d in DOCS[:12]}
        assert ids(sharded.search("bread", k=5, mode="dense")) == ids(idx.search("bread", k=5, mode="dense"))
    idx.close()
    shutil.rmtree(tmp_path / "sharded")


@pytest.mark.parametrize("index_type", ["hnsw", "ivf", "ivfpq"])
def test_every_index_type_splits_into_copies_of_its_vectors(tmp_path, fake_encoder, monkeypatch, index_type):
    import searcher.storage.vectors.faiss_backend as V

    monkeypatch.setattr(V, "IVFPQ_TRAIN_AT", 5)  # train the small corpus's ivfpq index
    monkeypatch.setattr(V, "MIN_POINTS_PER_LIST", 2)
    idx = Index.create(tmp_path / "idx", encoder=fake_encoder, index_type=index_type)
    idx.add_documents([{"id": f"d{n}", "text": f"note {n} on {TOPICS['code'][n % 6]} and {TOPICS['music'][n % 5]}"}
                       for n in range(300)])  # PQ training needs 256 vectors
    _, source_ids, source_vectors = idx.chunk_vectors()
    source = dict(zip(source_ids.tolist(), source_vectors))
    split_index(idx.path, tmp_path / "sharded", 2)
    assert check_sharded(tmp_path / "sharded").ok
    with ShardedIndex.open(tmp_path / "sharded", encoder=fake_encoder) as sharded:
        for shard in sharded.shards:
            assert shard.vectors.kind == index_type
            _, chunk_ids, vectors = shard.chunk_vectors()  # ivfpq: its codes decoded, the source's codes
            assert all(np.array_equal(v, source[c]) for c, v in zip(chunk_ids.tolist(), vectors))
        assert sum(len(s.vectors) for s in sharded.shards) == len(source)
        assert sharded.search("note 7", k=3, mode="keyword")[0].doc_id == "d7"
    idx.close()


class Gone:
    """A shard whose connection is lost: every call raises ConnectionError."""

    def __getattr__(self, name):
        def call(*args, **kwargs):
            raise ConnectionError("connection refused")
        return call

    def close(self):
        pass


def test_a_shard_that_does_not_answer_leaves_a_partial_answer_naming_it(single, sharded_dir):
    layout = read_layout(sharded_dir)
    idx = open_index(sharded_dir, device="cpu")
    try:
        lost = ShardedIndex(sharded_dir, layout, [idx.shards[0], Gone(), idx.shards[2]], queries=idx.queries)
        for mode in ("dense", "keyword", "hybrid"):
            hits = lost.search("water", k=5, mode=mode)
            assert hits.partial and hits.missing_shards == ("shard-1",)
            assert hits and all(shard_of(h.doc_id, SHARDS) != 1 for h in hits)
        assert not idx.search("tomato", k=5).partial and idx.search("tomato", k=5).missing_shards == ()
        hits, counts = lost.search_with_facets("tomato", k=5, fields=["type"])
        assert hits.partial and sum(counts["type"].values()) <= len(DOCS)
        with pytest.raises(searcher.ShardUnavailable, match="shard-1"):
            len(lost)
        with pytest.raises(searcher.ShardUnavailable, match="shard-1"):
            lost.get_document(next(d["id"] for d in DOCS if shard_of(d["id"], SHARDS) == 1))
        every = ShardedIndex(sharded_dir, layout, [Gone()] * SHARDS, queries=idx.queries)
        with pytest.raises(searcher.ShardUnavailable, match="no shard answered"):
            every.search("tomato")
        web = create_app(lost).test_client()
        answer = web.get("/api/search?q=tomato&k=3")
        assert answer.status_code == 200 and answer.get_json()["partial"] is True
        assert answer.get_json()["missing_shards"] == ["shard-1"] and len(answer.get_json()["results"]) == 3
        page = web.get("/?q=tomato")
        assert page.status_code == 200 and b"Partial results: shard-1" in page.data
        health = web.get("/api/health")
        assert health.status_code == 503 and health.get_json()["missing_shards"] == ["shard-1"]
        assert web.get("/api/documents?id=" + next(d["id"] for d in DOCS if shard_of(d["id"], SHARDS) == 1)) \
            .status_code == 503
        assert "partial" not in create_app(idx).test_client().get("/api/search?q=tomato").get_json()
    finally:
        idx.close()


def test_a_sharded_index_skips_a_file_over_the_chunk_bound(writable, tmp_path):
    """--max-file-chunks holds for a sharded index too (issue 30 item 9)."""
    from pathlib import Path

    from searcher.readers.options import LoadOptions

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "long.txt").write_text(" ".join(f"Sentence {n} about the ferry and the island." for n in range(300)))
    (folder / "short.txt").write_text("The ferry leaves at seven.")
    report = writable.add_paths([folder], LoadOptions(workers=0, max_chunks=2))
    assert report.added == 1 and report.chunks == 1
    assert [Path(s.path).name for s in report.skipped] == ["long.txt"]
    assert "--max-file-chunks" in report.skipped[0].reason
