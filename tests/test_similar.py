"""More like this: Index.similar, `searcher similar`, /api/similar."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.web import create_app

DOCS = [
    {"id": "cats", "title": "Cats", "text": "Kittens chase mice and nap in sunny windows.", "metadata": {"kind": "pet"}},
    {"id": "kittens", "title": "Young cats", "text": "A kitten plays with yarn and purrs on a lap.", "metadata": {"kind": "pet"}},
    {"id": "dogs", "title": "Dogs", "text": "Puppies fetch sticks and bark at the postman.", "metadata": {"kind": "pet"}},
    {"id": "engines", "title": "Engines", "text": "A diesel engine burns fuel to turn the wheels.", "metadata": {"kind": "machine"}},
    {"id": "bread", "title": "Baking", "text": "Dough of flour and yeast rises before baking.", "metadata": {"kind": "food"}},
]


@pytest.fixture(scope="module")
def pets(tmp_path_factory, encoder):
    index = Index.create(tmp_path_factory.mktemp("similar") / "idx", device="cpu")
    index.add_documents(DOCS)
    yield index
    index.close()


def test_similar_documents_are_the_nearest_never_the_document_itself(pets):
    hits = pets.similar("cats", k=4)
    ids = [h.doc_id for h in hits]
    assert "cats" not in ids and len(ids) == 4
    assert ids[0] == "kittens"  # the other text about cats, by meaning
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert [h.doc_id for h in pets.similar("cats", k=10, where={"kind": "pet"})] == ["kittens", "dogs"]
    with pytest.raises(KeyError, match="no document with id 'nope'"):
        pets.similar("nope")


def test_similar_on_the_command_line_and_the_api(pets):
    out = CliRunner().invoke(main, ["similar", "cats", "--index", str(pets.path), "-k", "2", "--json"])
    assert out.exit_code == 0, out.output
    assert [r["doc_id"] for r in json.loads(out.output)] == [h.doc_id for h in pets.similar("cats", k=2)]
    missing = CliRunner().invoke(main, ["similar", "nope", "--index", str(pets.path)])
    assert missing.exit_code == 1 and "no document with id" in missing.output
    client = create_app(pets).test_client()
    body = client.get("/api/similar?id=cats&k=3").get_json()
    assert body["id"] == "cats" and [r["doc_id"] for r in body["results"]] == [h.doc_id for h in pets.similar("cats", k=3)]
    assert client.get("/api/similar?id=nope").status_code == 404
    assert client.get("/api/similar?id=cats&k=0").status_code == 400
    assert client.get("/api/similar").status_code == 400
