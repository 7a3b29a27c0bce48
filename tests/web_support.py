"""A small index for the web tests (real default model), shared by the API and browser tests."""

from __future__ import annotations

import pytest

from searcher import Index
from searcher.web import create_app

XSS_TEXT = "<script>alert(1)</script>"
LONG_ID = "/home/user/notes/python files.md"  # a file id: an absolute path, with a space
FILLER = "\n\n".join(
    f"Section {i}. The garden needs watering in dry weeks; tomatoes and beans grow along the fence."
    for i in range(15)
)
LONG_TEXT = (
    FILLER
    + "\n\nTo read a text file line by line, open it with open(path) and loop over the file object: "
    "each iteration yields one line, newline included. This keeps memory use low for large files.\n\n"
    + FILLER
)


class StandInIndex:
    """What a served index declares besides its reads (searcher/search/protocol.py: ServedIndex),
    for the stand-ins that answer requests without a model or a folder."""

    sharded = False
    path = None
    analyzer = None

    def committed_generation(self):
        return None


def file_facts(kind: str, folder: str, modified: str) -> dict:
    """The metadata a file document carries (searcher/readers/loaders.py FILE_KEYS), for the facets."""
    return {"type": kind, "folder": folder, "modified": modified, "size": 1000}


DOCS = [
    {"id": "cat", "title": "Cats", "text": "Small felines such as kittens chase mice and nap in sunny windows.",
     "metadata": file_facts("md", "/home/user/notes/pets", "2023-05-01T10:00:00+00:00")},
    {"id": "car", "title": "Engines", "text": "An automobile engine burns petrol so that the wheels turn.",
     "metadata": file_facts("pdf", "/home/user/notes/machines", "2024-02-03T10:00:00+00:00")},
    {"id": "bread", "title": "Baking", "text": "Dough of flour, water and yeast rises before it is baked in an oven.",
     "metadata": file_facts("md", "/home/user/notes/kitchen", "2024-06-10T10:00:00+00:00")},
    {"id": "sea", "title": "Oceans", "text": "Salt water covers most of the planet, with deep trenches and coral reefs.",
     "metadata": file_facts("pdf", "/home/user/notes/planet", "2022-08-20T10:00:00+00:00")},
    {"id": "code", "title": "Compilers", "text": "A compiler translates source code into machine instructions.",
     "metadata": file_facts("txt", "/home/user/notes/machines", "2024-09-30T10:00:00+00:00")},
    {"id": "xss", "title": "<b>Injected</b> & \"markup\" <img src=x onerror=alert(2)>",
     "source": "<i>evil</i>.html",
     "text": f"Beware of injected web page markup. {XSS_TEXT} must show as text and never run as a script.",
     "metadata": file_facts("<b>html</b>", "/home/user/<i>web</i>", "2021-01-01T10:00:00+00:00")},
    {"id": LONG_ID, "title": "Python notes", "source": LONG_ID, "text": LONG_TEXT,
     "metadata": file_facts("md", "/home/user/notes", "2025-01-15T10:00:00+00:00")},
]


@pytest.fixture(scope="session")
def web_index(tmp_path_factory):
    idx = Index.create(tmp_path_factory.mktemp("web") / "idx", device="cpu")
    report = idx.add_documents(DOCS)
    assert report.added == len(DOCS), report.summary()
    yield idx
    idx.close()


@pytest.fixture(scope="session")
def web_app(web_index):
    return create_app(web_index)


@pytest.fixture
def web_client(web_app):
    return web_app.test_client()
