"""A short soak (benchmarks/soak.py): search clients against waitress while a writer adds and
deletes documents through the API; no errors, and every answer is of the generation it names."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from searcher import Index
from searcher.web import create_app
from searcher.web.keys import ApiKey, KeyRing, digest
from searcher.web.server import serving

ADMIN = "srch_soak1_" + "s" * 43


def load_soak():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"
    spec = importlib.util.spec_from_file_location("soak", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("soak", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_searches_during_writes_see_one_generation_and_never_fail(tmp_path, fake_encoder):
    soak = load_soak()
    docs = soak.starting_documents(60)
    index = Index.create(tmp_path / "idx", encoder=fake_encoder)
    index.add_documents(docs)
    keys = KeyRing([ApiKey("soak1", digest(ADMIN), "admin")])
    try:
        with serving(create_app(index, keys=keys), threads=6) as url:
            result = soak.soak(url, ADMIN, {d["id"] for d in docs}, index.generation, clients=4, seconds=6, batch=3)
    finally:
        index.close()
    assert result["errors"] == 0, result["error_samples"]
    assert result["inconsistent"] == 0, result["inconsistent_samples"]
    assert result["writes"] >= 3 and result["deleted"] >= 1  # the writer really wrote meanwhile
    assert result["generations_seen"] >= 3 and result["searches"] > 20


def test_the_check_catches_a_hit_from_another_generation():
    soak = load_soak()
    log = soak.Log()
    log.posted_below = {"w-1": 5, "w-2": 5}
    log.deleted_at = {"w-2": 8}
    log.answers = [(6, ["base-0", "w-1", "w-2"]), (5, ["w-1"]), (8, ["w-2"]), (7, ["ghost"])]
    bad = soak.inconsistencies(log, {"base-0"})
    assert len(bad) == 3
    assert "posted when the index was at 5" in bad[0] and "deleted by generation 8" in bad[1]
    assert "never written" in bad[2]
