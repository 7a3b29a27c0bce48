"""Typos, readable scores and "no close match" (issue 25 items 3 and 5): the speller on its
own, then through every interface (library, CLI, JSON API, page, MCP's answer shape, the
thin client) on the web test index (real model)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from click.testing import CliRunner

from searcher.cli import main
from searcher.remote import RemoteIndex
from searcher.search.closeness import MARGIN, is_close, noise_floor, probe_queries
from searcher.search.query import parse_query, plain_query
from searcher.search.spelling import Speller, corrected_text
from searcher.web.server import serving
from tests.web_support import web_app, web_index  # noqa: F401 (fixtures)

MODES = ("dense", "keyword", "hybrid")

# -- the speller ------------------------------------------------------------------------

WORDS = {"protein": 40, "proteins": 12, "folding": 9, "cells": 30, "cell": 50, "myelodysplasia": 2,
         "lymphocytes": 7, "flour": 3, "retain": 5, "there": 1}


@pytest.mark.parametrize("typed, meant", [
    ("protien", "protein"),          # two letters swapped: one edit
    ("proein", "protein"),           # a letter missing
    ("prottein", "protein"),         # a letter extra
    ("protein", None),               # a word the index holds is never changed
    ("Protien", "protein"),          # folded
    ("celss", "cells"),              # swapped
    ("celle", "cell"),               # cells and cell are both one edit: the one more chunks hold (cell) wins
    ("myelodysplsia", "myelodysplasia"),
    ("myelodisplsia", "myelodysplasia"),  # two edits, for a long word
    ("rotein", "protein"),           # the first letter missed: one edit beats "retain" at two
    ("colour", None),                # "flour" is two edits away: too far for a six-letter word
    ("cel", None),                   # too short to correct
    ("c3lls", None),                 # digits: a code, typed as meant
    ("zzqxv", None),                 # nothing near
    ("thare", None),                 # near a stop word, which is never a correction ("there" left out)
])
def test_the_speller_reads_a_typo_as_the_nearest_word_the_index_holds(typed, meant):
    speller = Speller({w: n for w, n in WORDS.items() if w != "there"})
    assert speller.correct(typed) == meant


def test_corrections_keep_the_query_as_typed_around_them():
    assert corrected_text('Protien "celss" -x title:y', {"Protien": "protein"}) == 'Protein "celss" -x title:y'
    query = parse_query('protien "celss folding" pre* title:lymphocyets a OR b celss')
    # a phrase, a prefix, a title term and alternatives are matched as written: not loose
    assert query.loose_words() == ["protien"]
    fixed = query.corrected({"protien": "protein"}, "protein ...")
    assert fixed.words[0] == "protein" and fixed.phrases == query.phrases and fixed.text == "protein ..."
    assert plain_query("kitens chase").loose_words() == ["kitens", "chase"]


def test_the_noise_floor_is_the_best_probe_and_close_is_above_it():
    probes = probe_queries()
    assert probes == probe_queries() and len(set(probes)) == len(probes)  # seeded: every run asks the same
    assert noise_floor(lambda q: 0.2 + 0.01 * len(q)) == pytest.approx(max(0.2 + 0.01 * len(q) for q in probes))
    assert noise_floor(lambda q: None) is None
    assert is_close(0.6, 0.3) and not is_close(0.3 + MARGIN / 2, 0.3) and is_close(None, 0.3) is None


# -- through the index and every interface ----------------------------------------------

TYPED, MEANT = "kitens chase mise", "kittens chase mice"


@pytest.mark.parametrize("mode", MODES)
def test_a_typo_finds_what_the_word_finds_and_says_what_it_read(web_index, mode):  # noqa: F811
    clean = web_index.search(MEANT, k=3, mode=mode)
    typed = web_index.search(TYPED, k=3, mode=mode)
    assert clean.suggestion is None
    assert typed.suggestion == MEANT
    assert [h.doc_id for h in typed] == [h.doc_id for h in clean] and typed[0].doc_id == "cat"
    assert web_index.search(TYPED, k=3, mode=mode, syntax=False).suggestion == MEANT
    # quoted, a word is searched as typed: nothing holds "kitens"
    assert web_index.search('"kitens"', k=3, mode=mode).suggestion is None
    assert list(web_index.search('"kitens"', k=3, mode=mode)) == []


def test_each_hit_carries_its_cosine_and_bm25_and_the_search_whether_it_is_close(web_index):  # noqa: F811
    hybrid = web_index.search("kittens chase mice", k=3)
    assert hybrid.close_match is True
    first = hybrid[0]
    assert 0.3 < first.cosine <= 1.0 and first.bm25 > 0
    assert [h.doc_id for h in hybrid] == [h.doc_id for h in web_index.search("kittens chase mice", k=3)]
    dense = {h.doc_id: h.score for h in web_index.search("kittens chase mice", k=7, mode="dense")}
    for hit in hybrid:  # the cosine is the dense score of the document, beside the fused one
        assert hit.cosine == pytest.approx(dense[hit.doc_id], abs=1e-5)
    keyword = web_index.search("kittens chase mice", k=3, mode="keyword")
    assert keyword[0].cosine is None and keyword[0].bm25 == pytest.approx(keyword[0].score)
    assert keyword.close_match is None  # nothing was encoded
    nonsense = web_index.search("zqxwv plorbt", k=3)
    assert nonsense.close_match is False and nonsense.suggestion is None
    assert nonsense[0].cosine < first.cosine  # the fused score of both firsts is near 1; the cosine tells
    assert web_index.search('"line by line"', k=3).close_match is True  # the phrase held


def test_the_json_api_the_thin_client_and_the_cli_say_it_too(web_app, web_index, tmp_path):  # noqa: F811
    client = web_app.test_client()
    body = client.get("/api/search", query_string={"q": TYPED, "k": 3}).get_json()
    assert body["suggestion"] == MEANT and body["close_match"] is True
    assert body["results"][0]["doc_id"] == "cat" and isinstance(body["results"][0]["cosine"], float)
    clean = client.get("/api/search", query_string={"q": MEANT, "k": 3}).get_json()
    assert "suggestion" not in clean
    assert client.get("/api/search", query_string={"q": "zqxwv plorbt"}).get_json()["close_match"] is False
    assert "close_match" not in client.get("/api/search", query_string={"q": MEANT, "mode": "keyword"}).get_json()
    with serving(web_app) as url:
        far = RemoteIndex(url).search(TYPED, k=3)
        assert far.suggestion == MEANT and far.close_match is True
        assert far[0].cosine == pytest.approx(web_index.search(TYPED, k=3)[0].cosine, abs=1e-5)

    result = CliRunner().invoke(main, ["search", TYPED, "--index", str(web_index.path), "-k", "2"])
    assert result.exit_code == 0, result.output
    assert f"Did you mean: {MEANT}" in result.output and "similarity" in result.output
    result = CliRunner().invoke(main, ["search", "zqxwv plorbt", "--index", str(web_index.path), "-k", "1"])
    assert "No close match" in result.output


def test_the_page_offers_did_you_mean_and_says_no_close_match(web_app):  # noqa: F811
    client = web_app.test_client()
    html = client.get("/", query_string={"q": TYPED}).get_data(as_text=True)
    assert "Did you mean" in html and MEANT in html and "similarity" in html
    assert "No close match" not in html
    assert "No close match" in client.get("/", query_string={"q": "zqxwv plorbt"}).get_data(as_text=True)
    assert "Did you mean" not in client.get("/", query_string={"q": MEANT}).get_data(as_text=True)


def test_the_page_s_did_you_mean_links_search_the_correction_and_the_words_as_typed(web_app):  # noqa: F811
    from html.parser import HTMLParser

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.found = {}

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if tag == "a" and attrs.get("class") in ("did-you-mean", "exactly"):
                self.found[attrs["class"]] = attrs["href"]

    client = web_app.test_client()
    links = Links()
    links.feed(client.get("/", query_string={"q": TYPED}).get_data(as_text=True))
    assert parse_qs(urlparse(links.found["did-you-mean"]).query)["q"] == [MEANT]
    exact = parse_qs(urlparse(links.found["exactly"]).query)["q"][0]
    assert exact == '"kitens" chase "mise"'
    assert "Did you mean" not in client.get(links.found["exactly"]).get_data(as_text=True)
