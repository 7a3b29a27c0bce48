"""One search over several indexes (searcher/search/several.py): rankings fused by reciprocal
rank fusion, worked out by hand here; by date with sort="modified"; facets summed."""

from __future__ import annotations

import pytest

from searcher.search.fusion import RRF_K
from searcher.search.results import Hit
from searcher.search.several import FusedHit, fuse_rankings, merge_facets


def hit(doc_id: str, score: float = 0.5, modified: str | None = None) -> Hit:
    return Hit(doc_id, score, doc_id.title(), "", "text", 0, 4, 1, {"modified": modified} if modified else {})


def test_reciprocal_rank_fusion_by_hand():
    # k=1: rank 1 scores 1/2, rank 2 1/3, rank 3 1/4. "a" of notes and "a" of mail are two
    # documents (ids are per index), and a higher score of its own index counts for nothing.
    notes = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)]
    mail = [hit("x", 12.0), hit("a", 11.0)]
    fused = fuse_rankings({"notes": notes, "mail": mail}, k=1)
    assert [(f.index, f.hit.doc_id) for f in fused] == [
        ("notes", "a"), ("mail", "x"),  # 1/2 each: ties in the order the indexes were given
        ("notes", "b"), ("mail", "a"),  # 1/3 each
        ("notes", "c"),  # 1/4
    ]
    assert [f.score for f in fused] == pytest.approx([1 / 2, 1 / 2, 1 / 3, 1 / 3, 1 / 4])
    assert fused[0] == FusedHit("notes", notes[0], pytest.approx(1 / 2))
    assert fused[1].hit is mail[0]


def test_the_default_constant_and_the_order_of_indexes():
    fused = fuse_rankings({"mail": [hit("x")], "notes": [hit("a"), hit("b")]})
    assert [(f.index, f.hit.doc_id, f.score) for f in fused] == [
        ("mail", "x", pytest.approx(1 / (RRF_K + 1))), ("notes", "a", pytest.approx(1 / (RRF_K + 1))),
        ("notes", "b", pytest.approx(1 / (RRF_K + 2)))]
    assert fuse_rankings({}) == [] and fuse_rankings({"notes": []}) == []


def test_sort_modified_orders_by_date_then_by_fusion():
    notes = [hit("old", modified="2020-01-01T00:00:00+00:00"), hit("undated"), hit("new", modified="2024-05-01")]
    mail = [hit("mid", modified="2022-03-01T00:00:00+00:00"), hit("also-new", modified="2024-05-01T00:00:00Z")]
    fused = fuse_rankings({"notes": notes, "mail": mail}, sort="modified")
    # "new" and "also-new" are the same instant (no zone is UTC): fusion decides, 1/63 < 1/62.
    assert [f.hit.doc_id for f in fused] == ["also-new", "new", "mid", "old", "undated"]
    assert fuse_rankings({"notes": notes}, sort="relevance") == fuse_rankings({"notes": notes})
    with pytest.raises(ValueError):
        fuse_rankings({"notes": notes}, sort="size")


def test_merge_facets_sums_each_value_most_frequent_first():
    merged = merge_facets([{"type": {"pdf": 2, "md": 1}}, {"type": {"md": 3, "txt": 2}, "year": {"2024": 1}}])
    assert merged == {"type": {"md": 4, "pdf": 2, "txt": 2}, "year": {"2024": 1}}
    assert list(merged["type"]) == ["md", "pdf", "txt"]  # ties by value
