"""searcher.remote.RemoteIndex against a real waitress server over the web test index."""

from __future__ import annotations

import pytest

from searcher import SearcherError
from searcher.remote import RemoteIndex
from searcher.web.server import serving

from .web_support import DOCS, web_app, web_index  # noqa: F401  (fixtures)


def test_a_remote_index_answers_as_the_index_does(web_app, web_index):  # noqa: F811
    with serving(web_app) as url:
        remote = RemoteIndex(url)
        for mode in (None, "dense", "keyword"):
            local = web_index.search("kittens chase mice", k=3, mode=mode)
            far = remote.search("kittens chase mice", k=3, mode=mode)
            assert [h.doc_id for h in far] == [h.doc_id for h in local]
            assert [(h.passage, h.start, h.end) for h in far] == [(h.passage, h.start, h.end) for h in local]
            # the server sends scores rounded to 6 decimals (searcher/web/requests.py): compare to that, not by rounding twice
            assert [h.score for h in far] == pytest.approx([h.score for h in local], abs=1e-6)
        assert remote.get_document("cat")["text"] == DOCS[0]["text"]
        where = {"id": {"$in": ["car", "sea"]}}
        assert [h.doc_id for h in remote.search("kittens", k=5, where=where)] == \
            [h.doc_id for h in web_index.search("kittens", k=5, where=where)]
        with pytest.raises(ValueError, match="unknown filter operator"):
            remote.search("cats", where={"id": {"$like": "c"}})
        assert remote.get_document("no such id") is None
        assert [h.doc_id for h in remote.similar("cat", k=3)] == [h.doc_id for h in web_index.similar("cat", k=3)]
        assert {h.doc_id for h in remote.similar("cat", where={"type": "pdf"})} == {"car", "sea"}
        with pytest.raises(KeyError):
            remote.similar("no such id")
        newest = remote.search("water", k=7, mode="dense", sort="modified")
        assert [h.doc_id for h in newest] == [h.doc_id for h in web_index.search("water", k=7, mode="dense", sort="modified")]
        assert len(remote) == len(DOCS) and remote.check() == len(DOCS)
        wrong = RemoteIndex(url + "/search")  # a wrong path is not an empty index
        with pytest.raises(SearcherError, match="is .* a searcher server"):
            wrong.search("cats")
        with pytest.raises(SearcherError, match="is .* a searcher server"):
            wrong.get_document("cat")
        with pytest.raises(ValueError, match="k must be an integer from 1 to 100"):
            remote.search("cats", k=0)
        with pytest.raises(ValueError, match="unknown search mode"):
            remote.search("cats", mode="fuzzy")


def test_an_unreachable_or_malformed_url_is_a_clear_error():
    with pytest.raises(ValueError, match="http://127.0.0.1:8000"):
        RemoteIndex("localhost:8000")
    with pytest.raises(SearcherError, match="cannot reach"):
        RemoteIndex("http://127.0.0.1:9", timeout=2).search("cats")
