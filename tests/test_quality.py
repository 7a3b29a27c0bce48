"""Search quality: metrics, keyword (FTS5/BM25) search, hybrid fusion and the `eval` command.

Uses the real default model on tiny hand-made collections (never the shared datasets); the
tests of keyword search and of the keyword table, which no vector decides, use the fake encoder
(tests/fake_encoder.py).
"""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.quality.evaluate import check_index_holds, compute_metrics, load_dataset
from searcher.search.fusion import (MOST_CONFIDENT, Fusion, adaptive_fusion, clip_below, keyword_confidence, reciprocal_rank_fusion,
                             score_fusion)
from searcher.index.facade import DEFAULT_MODE, SEARCH_MODES, get_encoder
from searcher.storage.keywords.fts5 import Fts5Engine, match_expression
from searcher.storage.store import ContentStore

DOCS = [
    {"id": "cat", "title": "Cats", "text": "Small felines such as kittens chase mice and nap in sunny windows."},
    {"id": "car", "title": "Engines", "text": "An automobile engine burns petrol so that the wheels turn."},
    {"id": "bread", "title": "Baking", "text": "Dough of flour, water and yeast rises before it is baked in an oven."},
    {"id": "sea", "title": "Oceans", "text": "Salt water covers most of the planet, with deep trenches and coral reefs."},
    {"id": "code", "title": "Compilers", "text": "A compiler translates source code into machine instructions."},
    {"id": "order", "title": "Shipping note",
     "text": "Order XQ-7781 left the warehouse on Tuesday; the courier expects to deliver the parcel on Friday."},
    {"id": "part", "title": "Part XQ-7718", "text": "Part XQ-7718 is a valve."},
]


@pytest.fixture(scope="module")
def encoder():
    return get_encoder(None, "cpu")


@pytest.fixture
def idx(tmp_path, encoder):
    index = Index.create(tmp_path / "idx", device="cpu")
    index.add_documents(DOCS)
    yield index
    index.close()


@pytest.fixture
def fake_idx(tmp_path, fake_encoder):
    """DOCS in an index on the fake encoder (its vectors only share words, they mean nothing)."""
    index = Index.create(tmp_path / "idx", encoder=fake_encoder)
    index.add_documents(DOCS)
    yield index
    index.close()


def ids(hits):
    return [h.doc_id for h in hits]


# -- metrics -----------------------------------------------------------------------------------

QRELS = {
    "q1": {"d1": 1},
    "q2": {"d4": 1, "d5": 1},
    "q3": {"d7": 1, "d8": 1, "d0": 0},
}
RUN = {
    "q1": ["d2", "d1", "d3"],  # the one relevant doc at rank 2
    "q2": ["d4", "d6", "d5"],  # both relevant, at ranks 1 and 3
    "q3": ["d9", "d7", "d0"],  # one of two relevant, at rank 2 (d0 is judged not relevant)
}


def test_metrics_on_a_collection_worked_out_by_hand():
    m = compute_metrics(QRELS, RUN)
    # nDCG@10 (gain 1 per relevant doc, discount 1/log2(rank + 1)):
    #   q1: (1/log2 3) / 1                    = 0.63093
    #   q2: (1 + 1/log2 4) / (1 + 1/log2 3)   = 1.5 / 1.63093 = 0.91972
    #   q3: (1/log2 3) / (1 + 1/log2 3)       = 0.63093 / 1.63093 = 0.38685
    #   mean = 1.93750 / 3 = 0.64583
    assert m["nDCG@10"] == pytest.approx(0.64583, abs=1e-5)
    assert m["nDCG@10"] == pytest.approx(
        (1 / math.log2(3) + 1.5 / (1 + 1 / math.log2(3)) + (1 / math.log2(3)) / (1 + 1 / math.log2(3))) / 3
    )
    # Recall@100: 1/1, 2/2, 1/2 -> 2.5 / 3
    assert m["Recall@100"] == pytest.approx(0.83333, abs=1e-5)
    # MRR@10: first relevant at ranks 2, 1, 2 -> (0.5 + 1 + 0.5) / 3
    assert m["MRR@10"] == pytest.approx(0.66667, abs=1e-5)


def test_metrics_count_a_judged_query_with_no_results_as_zero():
    m = compute_metrics(QRELS, {"q1": RUN["q1"], "q2": RUN["q2"], "q3": []})
    assert m["MRR@10"] == pytest.approx((0.5 + 1) / 3)
    assert m["Recall@100"] == pytest.approx(2 / 3)


def test_metrics_cut_off_at_10_for_ndcg_and_mrr():
    run = {"q1": [f"x{i}" for i in range(10)] + ["d1"]}  # relevant at rank 11
    m = compute_metrics({"q1": {"d1": 1}}, run)
    assert m["nDCG@10"] == 0 and m["MRR@10"] == 0 and m["Recall@100"] == 1


# -- keyword search --------------------------------------------------------------------------------


def test_keyword_search_finds_an_exact_rare_identifier_that_dense_search_misses(idx):
    # A sentence model sees XQ-7781 and XQ-7718 as near neighbours (it ranks the short text
    # about the other code first); BM25 matches the exact tokens.
    assert ids(idx.search("XQ-7781", k=1, mode="keyword")) == ["order"]
    assert ids(idx.search("XQ-7781", k=1, mode="dense")) == ["part"]
    hit = idx.search("xq 7781", k=1, mode="keyword")[0]
    assert hit.doc_id == "order" and "XQ-7781" in hit.passage and hit.score > 0


def test_keyword_search_stems_and_ignores_query_syntax(fake_idx):
    idx = fake_idx
    assert ids(idx.search("compiling compilers", k=1, mode="keyword")) == ["code"]
    for nasty in ['"foo AND (', "NEAR(a b", "title:cats OR *", "a)b\"c'd", "-", "NOT"]:
        idx.search(nasty, mode="keyword")  # never a syntax error
        idx.search(nasty, mode="hybrid")
    assert idx.search("(*)", mode="keyword") == []
    assert ids(idx.search('"kittens AND (', k=1, mode="keyword")) == ["cat"]


def test_match_expression_quotes_every_word():
    words = Fts5Engine().analyzer.query_words
    assert match_expression(words('"foo AND (')) == '"foo"'  # AND is a stop word... and just a word
    assert match_expression(words("XQ-7781 cells")) == '"xq" OR "7781" OR "cells"'
    assert match_expression(words("the of")) == '"the" OR "of"'  # only stop words: kept
    assert match_expression(words("  ()  ")) is None


def test_search_modes(fake_idx):
    idx = fake_idx  # "kittens" is a word of the cat document: the fake's vectors find it too
    assert DEFAULT_MODE in SEARCH_MODES
    assert ids(idx.search("kittens", k=1)) == ids(idx.search("kittens", k=1, mode=DEFAULT_MODE))
    with pytest.raises(ValueError, match="unknown search mode 'fuzzy'.*dense, keyword, hybrid"):
        idx.search("kittens", mode="fuzzy")
    for mode in SEARCH_MODES:
        hits = idx.search("kittens", k=3, mode=mode)
        assert hits[0].doc_id == "cat"
        assert len(set(ids(hits))) == len(hits)  # documents, not chunks
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        # offset pages through the same ranking
        assert ids(idx.search("kittens", k=1, offset=1, mode=mode)) == ids(hits)[1:2]


def test_keyword_hits_are_documents_scored_by_their_best_chunk(tmp_path, fake_encoder):
    index = Index.create(tmp_path / "small", chunk_tokens=16, overlap=0, encoder=fake_encoder)
    long = " ".join(["Rivers carry silt to the delta."] * 6 + ["A heron waits in the reeds."])
    index.add_documents([{"id": "long", "text": long}, {"id": "short", "text": "A heron and a river."}])
    assert index.store.count_chunks() > 3
    hits = index.search("heron river", k=10, mode="keyword")
    assert sorted(ids(hits)) == ["long", "short"]
    long_hit = next(h for h in hits if h.doc_id == "long")
    assert "heron" in long_hit.passage  # the chunk with the rare word, not the first chunk
    assert long_hit.start > 0 and long_hit.chunk_id in index.store.chunk_ids_of(["long"])
    index.close()


# -- hybrid ----------------------------------------------------------------------------------------


def test_hybrid_returns_what_either_side_alone_finds(idx):
    query = "kitty XQ-7781"  # "kitty" is in no document: only the vectors link it to cats
    dense = ids(idx.search(query, k=3, mode="dense"))
    keyword = ids(idx.search(query, k=3, mode="keyword"))
    assert "cat" in dense and dense[0] != "order"  # dense finds the cat, but not the order first
    assert keyword[0] == "order" and "cat" not in keyword  # keyword finds the order, not the cat
    hybrid = idx.search(query, k=3, mode="hybrid")
    assert {"cat", "order"} <= set(ids(hybrid))
    scores = [h.score for h in hybrid]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    order = next(h for h in hybrid if h.doc_id == "order")
    assert "XQ-7781" in order.passage


def test_rank_fusion_and_score_fusion_by_hand():
    dense = {"a": 0.9, "b": 0.8, "c": 0.1}
    keyword = {"c": 12.0, "d": 3.0}
    rrf = reciprocal_rank_fusion([dense, keyword], k=60)
    assert rrf["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert rrf["a"] == pytest.approx(1 / 61) and rrf["d"] == pytest.approx(1 / 62)
    assert list(rrf)[0] == "c"
    fused = score_fusion([dense, keyword], weights=[0.5, 0.5], method="minmax")
    # min-max: dense a=1, b=0.875, c=0; keyword c=1, d=0; a missing doc gets the list's floor (0)
    assert fused == pytest.approx({"a": 0.5, "b": 0.4375, "c": 0.5, "d": 0.0})



def test_keyword_confidence_is_the_drop_from_the_first_to_the_tenth_score():
    twelve = {f"d{i}": 20.0 - i for i in range(12)}  # 20, 19, ..., 9: the 10th is 11
    assert keyword_confidence(twelve) == pytest.approx((20 - 11) / 20)
    assert keyword_confidence({"a": 10.0, "b": 8.0, "c": 2.0}) == pytest.approx(0.8)  # shorter: the last
    assert keyword_confidence({"a": 5.0}) == 0.0 and keyword_confidence({}) == 0.0
    # a complete list (every document holding the words) lacks the 10th: it scores 0 there
    assert keyword_confidence({"a": 10.0, "b": 8.0, "c": 2.0}, complete=True) == MOST_CONFIDENT
    assert keyword_confidence({"a": 5.0}, complete=True) == MOST_CONFIDENT


def test_a_word_only_one_document_holds_puts_it_first_in_hybrid_fusion():
    """The keyword list of a rare token (an error code) holds one document: it comes first,
    not tied with every dense candidate at the keyword list's own floor."""
    dense = {"a": 0.5, "b": 0.45, "code": 0.2}
    fused = Fusion().fuse(dense, {"code": 9.0})
    assert list(fused)[0] == "code"
    assert fused["a"] < fused["code"]
    # the same list as the top of a longer one (not complete) keeps the old reading
    assert list(adaptive_fusion(dense, {"code": 9.0}))[0] == "a"


def test_adaptive_fusion_by_hand():
    dense = {"a": 0.8, "b": 0.6, "c": 0.4}
    # A peaked keyword list: confidence (10 - 2) / 10 = 0.8, so weights 0.2 dense / 0.8 keyword.
    # Divided by the best: dense a=1, b=0.75, c=0.5 (floor 0.5); keyword c=1, d=0.8, e=0.2 (floor 0.2).
    fused = adaptive_fusion(dense, {"c": 10.0, "d": 8.0, "e": 2.0})
    assert fused == pytest.approx({"a": 0.36, "b": 0.31, "c": 0.9, "d": 0.74, "e": 0.26})
    assert list(fused) == ["c", "d", "a", "b", "e"]
    # A flat one: confidence (10 - 9) / 10 = 0.1, weights 0.9 / 0.1; keyword c=1, d=0.95, e=0.9 (floor 0.9).
    fused = adaptive_fusion(dense, {"c": 10.0, "d": 9.5, "e": 9.0})
    assert fused == pytest.approx({"a": 0.99, "b": 0.765, "c": 0.55, "d": 0.545, "e": 0.54})
    assert list(fused) == ["a", "b", "c", "d", "e"]
    # It is the default, and its weights bias the per-query ones: 0.25*0.2 / 0.75*0.8, scaled to sum 1.
    assert Fusion().method == "adaptive"
    # (depth 3: these lists are the top of longer ones, as adaptive_fusion reads them by default)
    assert Fusion(depth=3).fuse(dense, {"c": 10.0, "d": 8.0, "e": 2.0}) == adaptive_fusion(dense, {"c": 10.0, "d": 8.0, "e": 2.0})
    biased = Fusion(weights=(0.25, 0.75), depth=3).fuse(dense, {"c": 10.0, "d": 8.0, "e": 2.0})
    wd, wk = 0.05 / 0.65, 0.6 / 0.65
    assert biased["a"] == pytest.approx(wd * 1 + wk * 0.2) and biased["d"] == pytest.approx(wd * 0.5 + wk * 0.8)
    # A flat keyword list with a zero dense bias leaves no weight: the given ones (keyword only), no 0/0.
    only = Fusion(weights=(0.0, 1.0), depth=2).fuse(dense, {"d": 3.0, "e": 3.0})
    assert only == pytest.approx(dict.fromkeys("abcde", 1.0))


def test_adaptive_fusion_counts_scores_only_down_to_the_evidence_depth():
    dense = {"a": 0.8, "b": 0.6, "c": 0.4}
    keyword = {"c": 10.0, "d": 8.0, "e": 2.0}  # confidence 0.8 from the whole list, as before
    # Counted to rank 2: dense c counts as b (0.6), keyword e as d (8). Divided by the best: dense
    # a=1, b=c=0.75 (floor 0.75); keyword c=1, d=e=0.8 (floor 0.8). Weights 0.2 / 0.8.
    fused = adaptive_fusion(dense, keyword, evidence=2)
    assert fused == pytest.approx({"a": 0.84, "b": 0.79, "c": 0.95, "d": 0.79, "e": 0.79})
    assert list(fused) == ["c", "a", "b", "d", "e"]  # ties keep the dense list's order, then the keyword's
    assert clip_below(dense, 2) == {"a": 0.8, "b": 0.6, "c": 0.6} and clip_below(dense, 3) == dense
    # The default counts 50 ranks: these short lists are fused whole, and the order differs (d above a).
    assert Fusion().evidence == 50 and list(Fusion(depth=3).fuse(dense, keyword)) == ["c", "d", "a", "b", "e"]
    assert list(Fusion(evidence=2, depth=3).fuse(dense, keyword)) == ["c", "a", "b", "d", "e"]
    with pytest.raises(ValueError, match="evidence"):
        Fusion(evidence=0)

# -- the keyword table stays in step with the chunks --------------------------------------------


def fts_ids(index):
    return index.keywords.ids(index.store)


def test_keyword_rows_follow_chunks_on_replace_and_delete(fake_idx):
    idx = fake_idx
    assert fts_ids(idx) == idx.store.all_chunk_ids()
    idx.add_documents([{"id": "order", "title": "Shipping note", "text": "Order ZZ-1234 was cancelled."}])
    assert fts_ids(idx) == idx.store.all_chunk_ids()
    assert "order" not in ids(idx.search("XQ-7781", mode="keyword"))
    assert ids(idx.search("ZZ-1234", mode="keyword")) == ["order"]
    assert idx.delete(["order", "cat"]) == 2
    assert fts_ids(idx) == idx.store.all_chunk_ids()
    assert idx.search("ZZ-1234 kittens", mode="keyword") == []
    # the titles are searchable too, and follow their documents
    assert ids(idx.search("oceans", mode="keyword")) == ["sea"]


def test_rebuilding_the_keyword_table_repairs_it(tmp_path, fake_encoder):
    idx = Index.create(tmp_path / "fts5", encoder=fake_encoder, keyword_engine="fts5")
    idx.add_documents(DOCS)
    store = ContentStore(idx.path / "content.db")
    store.db.execute("delete from chunks_fts where rowid = (select min(id) from chunks)")
    store.db.conn.commit()
    assert fts_ids(idx) != idx.store.all_chunk_ids()
    idx.keywords.rebuild(store)
    store.close()
    assert fts_ids(idx) == idx.store.all_chunk_ids()
    assert ids(idx.search("kittens", k=1, mode="keyword")) == ["cat"]
    idx.close()


def test_an_index_without_keyword_table_gets_one_at_the_first_write(tmp_path, fake_encoder):
    from searcher import SearcherError
    from searcher.index.check import check_index

    path = tmp_path / "old"
    index = Index.create(path, encoder=fake_encoder, keyword_engine="fts5")
    index.add_documents(DOCS)
    index.close()
    with sqlite3.connect(path / "content.db") as conn:  # what an index from before FTS looks like
        conn.execute("drop table chunks_fts")
    index = Index.open(path, encoder=fake_encoder)  # opening reads only: nothing is added yet
    with pytest.raises(SearcherError, match="no keyword table"):
        index.search("XQ-7781", k=1, mode="keyword")
    assert ids(index.search("parcel", k=1, mode="dense"))
    assert check_index(path, repair=True).ok  # a write (here: repair, re-encoding nothing) adds the table
    assert fts_ids(index) == index.store.all_chunk_ids()
    assert ids(index.search("XQ-7781", k=1, mode="keyword")) == ["order"]
    index.close()


# -- eval ------------------------------------------------------------------------------------------


def write_beir(folder, corpus=DOCS):
    folder.mkdir()
    (folder / "qrels").mkdir()
    with open(folder / "corpus.jsonl", "w") as fh:
        for d in corpus:
            fh.write(json.dumps({"_id": d["id"], "title": d["title"], "text": d["text"]}) + "\n")
    queries = {"1": "kittens chasing mice", "2": "baking bread in an oven", "3": "where is parcel XQ-7781",
               "4": "a query without judgements"}
    with open(folder / "queries.jsonl", "w") as fh:
        for qid, text in queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n1\tcat\t1\n2\tbread\t1\n3\torder\t1\n"
    )
    return folder


def test_eval_command_on_a_tiny_beir_collection(tmp_path, encoder):
    data = write_beir(tmp_path / "tiny")
    runner = CliRunner()
    result = runner.invoke(main, ["eval", str(data), "--mode", "keyword", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["queries"] == 3 and out["documents"] == len(DOCS) and out["mode"] == "keyword"
    assert out["nDCG@10"] == out["MRR@10"] == out["Recall@100"] == 1.0
    assert out["search_seconds"] >= 0

    # --index: built the first time, reused (nothing indexed) the next
    folder = tmp_path / "kept"
    first = runner.invoke(main, ["eval", str(data), "--index", str(folder), "--json", "--mode", "hybrid"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["indexed"] == len(DOCS)
    again = runner.invoke(main, ["eval", str(data), "--index", str(folder), "--mode", "dense"])
    assert again.exit_code == 0, again.output
    assert "nDCG@10" in again.output and "Recall@100" in again.output and "MRR@10" in again.output
    assert "indexing" not in again.output

    # an index of another corpus is refused, not silently evaluated
    other = write_beir(tmp_path / "other", corpus=DOCS[:3] + [{"id": "new", "title": "", "text": "Something else."}])
    refused = runner.invoke(main, ["eval", str(other), "--index", str(folder)])
    assert refused.exit_code == 1
    assert "not in this corpus" in refused.output or "not built from it" in refused.output

    bad = runner.invoke(main, ["eval", str(data), "--mode", "fuzzy"])
    assert bad.exit_code == 2


def test_reused_index_must_hold_the_same_documents(fake_idx, tmp_path):
    idx = fake_idx
    data = load_dataset(write_beir(tmp_path / "tiny"))
    assert check_index_holds(idx, data.corpus) == 0
    changed = [dict(d, text=d["text"] + " Changed.") if d["id"] == "sea" else d for d in data.corpus]
    with pytest.raises(Exception, match="differ from the corpus"):
        check_index_holds(idx, changed)
    assert check_index_holds(idx, data.corpus + [{"id": "more", "title": "", "text": "More."}]) == 1


def test_search_command_takes_a_mode(idx):
    runner = CliRunner()
    result = runner.invoke(main, ["search", "XQ-7781", "--index", str(idx.path), "--mode", "keyword",
                                  "--json", "-k", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert [h["doc_id"] for h in json.loads(result.stdout)] == ["order"]


def test_eval_reuses_an_index_built_by_searcher_index_from_the_corpus_file(tmp_path, encoder):
    """The README's order: `searcher index corpus.jsonl --index X`, then `searcher eval --index X`."""
    data = write_beir(tmp_path / "tiny")
    folder = tmp_path / "built"
    runner = CliRunner()
    built = runner.invoke(main, ["index", str(data / "corpus.jsonl"), "--index", str(folder), "--device", "cpu"])
    assert built.exit_code == 0, built.output
    result = runner.invoke(main, ["eval", str(data), "--index", str(folder), "--mode", "keyword", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["nDCG@10"] == 1.0 and out.get("indexed", 0) == 0  # reused: nothing indexed again


def test_fusion_settings_are_per_search_or_per_index_never_global(tmp_path, fake_idx):
    from searcher.search.fusion import Fusion

    idx = fake_idx
    other = Index.open(idx.path, encoder=idx.encoder)
    default = idx.search("kittens chasing mice", k=3)
    rrf = idx.search("kittens chasing mice", k=3, fusion=Fusion(method="rrf"))
    # RRF scores are sums of 1/(60 + rank) over two lists; min-max averages lie in [0, 1] and reach 1
    assert all(h.score <= 2 / 61 + 1e-9 for h in rrf) and default[0].score > 2 / 61
    assert idx.search("kittens chasing mice", k=3) == default  # the call's setting did not stick
    idx.fusion = Fusion(method="rrf")
    assert [h.score for h in idx.search("kittens chasing mice", k=3)] == [h.score for h in rrf]
    assert [h.score for h in other.search("kittens chasing mice", k=3)] == [h.score for h in default]
    keyword_only = idx.search("kittens chasing mice", k=1, fusion=Fusion(weights=(0.0, 1.0)))
    assert keyword_only[0].doc_id == idx.search("kittens chasing mice", k=1, mode="keyword")[0].doc_id
    other.close()
    with pytest.raises(ValueError, match="unknown fusion method"):
        Fusion(method="magic")
    with pytest.raises(ValueError, match="depth"):
        Fusion(depth=0)
