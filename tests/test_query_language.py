"""The query language (searcher/search/query.py): what each piece of syntax parses to, that
malformed syntax is plain words and nothing raises, and that phrases and exclusions hold in
every mode, for a single index and a sharded one."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from searcher import Index, open_index
from searcher.cluster.shards import split_index
from searcher.search.filters import compile_where
from searcher.search.query import ParsedQuery, escape, field_names, parse_query, plain_query
from tests.web_support import web_app, web_index  # noqa: F401 (fixtures)

MODES = ("dense", "keyword", "hybrid")


def parsed(text: str, fields=("kind", "size", "pages")) -> dict:
    """The parse's non-empty parts (text left out)."""
    query = parse_query(text, fields)
    return {name: value for name, value in vars(query).items() if value and name != "text"
            and not name.startswith("_")}


# -- the parser --------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("kittens chase mice", {"words": ("kittens", "chase", "mice")}),
    ('"nap in sunny windows"', {"words": ("nap", "in", "sunny", "windows"), "phrases": ("nap in sunny windows",)}),
    ('read "line  by\tline" fast', {"words": ("read", "line", "by", "line", "fast"), "phrases": ("line by line",)}),
    ('mice -owls -"barn owl"', {"words": ("mice",), "excluded_words": ("owls",), "excluded_phrases": ("barn owl",)}),
    ("compil* -deprec*", {"words": ("compil",), "prefixes": ("compil",), "excluded_prefixes": ("deprec",)}),
    ('cats OR "barn owl" OR mo*', {"words": ("cats", "barn", "owl", "mo"),
                                   "alternatives": (("cats", '"barn owl"', "mo*"),)}),
    ("title:zipfile compress", {"words": ("zipfile", "compress"), "title_phrases": ("zipfile",)}),
    ('title:"line by line"', {"words": ("line", "by", "line"), "title_phrases": ("line by line",)}),
    ("-title:draft notes", {"words": ("notes",), "excluded_title_phrases": ("draft",)}),
    ("type:pdf budget", {"words": ("budget",), "where": {"type": "pdf"}}),
    ("type:.PDF,docx budget", {"words": ("budget",), "where": {"type": {"$in": ["pdf", "docx"]}}}),
    ("-type:pdf budget", {"words": ("budget",), "where": {"$not": {"type": "pdf"}}}),
    ("kind:animal mice", {"words": ("mice",), "where": {"kind": "animal"}}),
    ('kind:"big cat" mice', {"words": ("mice",), "where": {"kind": "big cat"}}),
    ("size:>=1000 x", {"words": ("x",), "where": {"size": {"$gte": 1000}}}),
    ("size:<1.5 x", {"words": ("x",), "where": {"size": {"$lt": 1.5}}}),
    ("pages:10 x", {"words": ("x",), "where": {"pages": {"$in": [10, "10"]}}}),
    ("year:2024 x", {"words": ("x",), "where": {"modified": {"$gte": "2024", "$lt": "2024\uffff"}}}),
    ("year:>2023 x", {"words": ("x",), "where": {"modified": {"$gt": "2023\uffff"}}}),
    ("year:<=2023 x", {"words": ("x",), "where": {"modified": {"$lt": "2023\uffff"}}}),
    ("year:2023,2025 x", {"words": ("x",), "where": {"$or": [
        {"modified": {"$gte": "2023", "$lt": "2023\uffff"}}, {"modified": {"$gte": "2025", "$lt": "2025\uffff"}}]}}),
    ("modified:>=2024-06-01 x", {"words": ("x",), "where": {"modified": {"$gte": "2024-06-01"}}}),
    ("modified:2024-06 x", {"words": ("x",), "where": {"modified": {"$gte": "2024-06", "$lt": "2024-06\uffff"}}}),
    ("folder:/home/ann/docs x", {"words": ("x",), "where": {"folder": {"$under": "/home/ann/docs"}}}),
    ("id:a,b x", {"words": ("x",), "where": {"id": {"$in": ["a", "b"]}}}),
    ("type:pdf OR type:md x", {"words": ("x",), "where": {"$or": [{"type": "pdf"}, {"type": "md"}]}}),
    ("type:pdf kind:animal", {"where": {"$and": [{"type": "pdf"}, {"kind": "animal"}]}}),
])
def test_each_piece_of_syntax_parses(text, expected):
    assert parsed(text) == expected


@pytest.mark.parametrize("text, words", [
    ('"unclosed quote -owls', ('"unclosed', "quote", "-owls")),  # an unclosed quote: the rest is words
    ("kind: something", ("kind:", "something")),  # a field with no value
    ("kind:", ("kind:",)),
    ("year:=>2020 x", ("year:=>2020", "x")),  # an unknown operator
    ("size:!5 x", ("size:!5", "x")),
    ("size:>=1,2 x", ("size:>=1,2", "x")),  # a list compared
    ("year:nineteen x", ("year:nineteen", "x")),  # a year that is not one
    ("note: something", ("note:", "something")),  # not a field at all
    ("http://example.com/a?b=c", ("http://example.com/a?b=c",)),
    (r"C:\Users\ann", (r"C:\Users\ann",)),
    ("e-mail -5 degrees", ("e-mail", "-5", "degrees")),  # a minus inside a word, before a digit
    ("OR cats OR", ("OR", "cats", "OR")),  # OR with nothing on one side
    (r"\"quoted\" \-minus \OR star\* kind\:animal", ('"quoted"', "-minus", "OR", "star*", "kind:animal")),
    ("- -- * **", ("-", "--", "*", "**")),
])
def test_malformed_or_escaped_syntax_is_plain_words(text, words):
    query = parse_query(text, ("kind", "size"))
    assert query.words == words and query.where is None and not query.constrained


def test_plain_queries_and_escaping_read_the_words_only():
    text = 'kind:animal "nap in" -owls a OR b pre* \\x'
    assert plain_query(text).search_text == text and not plain_query(text).constrained
    query = parse_query(escape(text), ("kind",))
    assert query.words == tuple(text.split()) and query.where is None and not query.constrained
    assert parse_query("mice -owls").search_text == "mice"
    assert parse_query("type:pdf").search_text == "type:pdf"  # nothing else to rank by: the text
    assert field_names('kind:a -size:>3 "x" http://y note: z') == {"kind", "size", "http", "note"}


def test_a_document_is_matched_by_whole_words_and_phrases_across_punctuation():
    assert parse_query('"line by line"').matches("", "Read it Line-by-line,\nthen stop.")
    assert not parse_query('"line by line"').matches("", "line by the line")
    assert parse_query('"line by line"').matches("Line by line", "nothing here")  # the title counts
    assert parse_query("-owl").matches("", "Barn owls hunt")  # whole words: owls is not owl
    assert not parse_query("-owls").matches("", "Barn OWLS hunt")
    assert not parse_query("-cafe").matches("", "a small Café")  # case and accents folded
    assert parse_query("compil*").matches("", "compilers") and not parse_query("compil*").matches("", "a pile")
    assert parse_query("title:zip").matches("ZIP archives", "") and not parse_query("title:zip").matches("", "zip")
    assert parse_query("cats OR dogs").matches("", "dogs bark") and not parse_query("cats OR dogs").matches("", "owls")


# -- nothing raises ----------------------------------------------------------------------

SYNTAX = st.sampled_from(['"', "-", "*", ":", ",", "\\", " ", "OR", "title:", "kind:", "year:", ">=", "<", "=",
                          "!", "type:", "folder:", "a", "é", "1", "\t", "\n", "\u00a0", "\x00", "\ud800"])
RANDOM_TEXT = st.one_of(st.text(max_size=80), st.lists(SYNTAX, max_size=30).map("".join))
# a URL carries no lone surrogate
URL_TEXT = st.lists(SYNTAX.filter(lambda s: s != "\ud800"), min_size=1, max_size=20).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=RANDOM_TEXT, title=st.text(max_size=30), body=st.text(max_size=80))
def test_parsing_never_raises_and_gives_a_valid_filter(text, title, body):
    query = parse_query(text, ("kind",))
    assert isinstance(query, ParsedQuery) and isinstance(query.search_text, str)
    if query.where is not None:
        compile_where(query.where)
    assert isinstance(query.matches(title, body), bool)
    again = parse_query(escape(text), ("kind",))
    assert again.words == tuple(text.split()) and not again.constrained and again.where is None


@settings(max_examples=25, deadline=None)
@given(text=URL_TEXT)
def test_the_api_never_answers_500_to_a_query(web_app, text):  # noqa: F811
    client = web_app.test_client()
    for mode in MODES:
        response = client.get("/api/search", query_string={"q": text, "mode": mode})
        assert response.status_code in (200, 400), response.get_data(as_text=True)


# -- hard constraints in every mode ----------------------------------------------------

DOCS = [
    {"id": "exact", "title": "Reading files", "text": "To read a text file line by line, loop over the file object."},
    {"id": "hyphen", "title": "Streams", "text": "Parse the stream line-by-line and keep memory use low."},
    {"id": "scattered", "title": "Lines", "text": "Each line of the log is written by a worker; the last line wins."},
    {"id": "json", "title": "JSON",
     "text": "json.dump writes an object to a file; json.load reads it back line by line."},
    {"id": "csv", "title": "CSV files", "text": "The csv module reads rows from a file, one row at a time."},
    {"id": "pickle", "title": "Pickle", "text": "pickle turns objects into bytes and back, for files and sockets."},
    {"id": "titled", "title": "Line by line", "text": "Iterate over lines and strip the newline from each."},
]


def ranked_ids(index, query, mode, k=10, **options):
    return [h.doc_id for h in index.search(query, k=k, mode=mode, **options)]


@pytest.fixture(scope="module")
def small(tmp_path_factory, encoder):
    index = Index.create(tmp_path_factory.mktemp("syntax") / "small", encoder=encoder)
    index.add_documents([{**doc, "metadata": {"kind": "doc" if i % 2 else "note"}} for i, doc in enumerate(DOCS)])
    yield index
    index.close()


@pytest.fixture(scope="module")
def small_sharded(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("syntax") / "sharded"
    split_index(small.path, out, 2)
    index = open_index(out, encoder=small.encoder)
    yield index
    index.close()


def holds(doc: dict, pattern: str) -> bool:
    return re.search(pattern, f"{doc['title']}\n{doc['text']}", re.IGNORECASE) is not None


@pytest.mark.parametrize("mode", MODES)
def test_phrases_and_exclusions_hold_in_every_mode(small, small_sharded, mode):
    phrase = {d["id"] for d in DOCS if holds(d, r"\bline\W+by\W+line\b")}
    assert phrase == {"exact", "hyphen", "json", "titled"}
    for index in (small, small_sharded):
        # the words alone find more; the phrase keeps exactly the documents holding it
        assert set(ranked_ids(index, "line by line", "dense")) - phrase
        assert set(ranked_ids(index, '"line by line"', mode)) == phrase
        assert set(ranked_ids(index, '"line by line"', mode, syntax=False)) - phrase
        found = ranked_ids(index, "read a file line by line -json -title:streams", mode)
        assert found and not {"json", "hyphen"} & set(found)
        found = ranked_ids(index, 'reading files -"line by line"', mode)
        assert found and not set(found) & phrase
        docs = {d["id"] for i, d in enumerate(DOCS) if i % 2}  # kind "doc" (the fixture)
        assert set(ranked_ids(index, '"line by line" kind:doc', mode)) == phrase & docs
        found = ranked_ids(index, "files pick* OR csv", mode)
        assert found and set(found) <= {"pickle", "csv"}


@pytest.mark.parametrize("mode", MODES)
def test_a_sharded_index_answers_as_the_single_one(small, small_sharded, mode):
    for query in ('"line by line"', "reading a file -json", "files pick* OR csv", 'lines -"line by line"'):
        assert ranked_ids(small_sharded, query, mode) == ranked_ids(small, query, mode), query


def test_the_semantic_best_is_still_first_within_the_constraints(small):
    # the meaning ranks the documents that pass: the one about reading a file comes first
    assert ranked_ids(small, '"line by line" how do I read a text file', "dense")[0] == "exact"
    assert ranked_ids(small, "serialise objects to bytes -json", "dense")[0] == "pickle"


def test_a_rare_phrase_is_found_however_deep_it_ranks(tmp_path, fake_encoder):
    """Meaning does not matter here (the fake encoder): the phrase's document ranks below the
    first round of candidates, and deeper rounds find it."""
    filler = [{"id": f"f{i}", "title": f"Note {i}", "text": f"garden note {i}: water the beans and tomatoes"}
              for i in range(300)]
    target = {"id": "target", "title": "Odd one", "text": "the quick brown fox jumps over the lazy dog"}
    with Index.create(tmp_path / "deep", encoder=fake_encoder) as index:
        index.add_documents(filler + [target])
        ranking = ranked_ids(index, "garden beans quick fox", "dense", k=301)
        assert ranking.index("target") > 50  # beyond the first round (50 chunks)
        for mode in MODES:
            assert ranked_ids(index, 'garden beans "quick brown fox"', mode, k=5) == ["target"]
            found = ranked_ids(index, "garden beans quick fox -garden", mode, k=5)
            assert found == ["target"]


def test_fields_are_only_the_index_s_own(small):
    assert small.known_fields({"kind", "colour", "title", "metadata.kind"}) == {"kind", "title", "metadata.kind"}
    assert small.parse("kind:doc x").where == {"kind": "doc"}
    assert small.parse("colour:red x").words == ("colour:red", "x")
    assert small.parse("kind:doc x", syntax=False).where is None
    with pytest.raises(ValueError, match="empty"):
        small.search("   ")


@pytest.mark.parametrize("mode", MODES)
def test_narrowing_to_the_documents_holding_the_rarest_required_word_changes_no_answer(small, mode, monkeypatch):
    """A phrase's or title term's rarest word narrows the candidates before ranking (only
    documents holding it can pass); the answers are those of the whole index, checked one by one."""
    from searcher.index import querying

    queries = ['"line by line"', '"text file line by line"', 'title:pickle objects', '"no such words here"',
               'read "line by line" -json', '"line by line" kind:doc']
    narrowed = {q: ranked_ids(small, q, mode) for q in queries}
    parsed = small.parse('"text file line by line"')
    held = small.queried.holding_rarest(small.store, parsed)
    owners = set(small.store.chunk_doc_ids([int(c) for c in held]).values())
    assert owners == {"exact"}  # "text" is the rarest word: only that document holds it
    assert len(small.queried.holding_rarest(small.store, small.parse('"no such words here"'))) == 0
    monkeypatch.setattr(querying, "NARROW_UP_TO", -1)  # never narrow
    assert small.queried.holding_rarest(small.store, parsed) is None
    assert {q: ranked_ids(small, q, mode) for q in queries} == narrowed


def test_the_passage_of_a_phrase_search_holds_the_phrase(tmp_path, encoder):
    """A long document's nearest chunk in meaning is not where the quoted words are: the hit
    shows the chunk that holds them (in every mode)."""
    about = " ".join(["Bees visit flowers in the meadow and carry pollen back to the hive."] * 40)
    far = "Later, the keeper wrote that the queen sleeps under a copper lid in winter."
    with Index.create(tmp_path / "long", encoder=encoder, chunk_tokens=64, overlap=8) as index:
        index.add_documents([{"id": "bees", "title": "Bees", "text": about + " " + far + " " + about}])
        assert len(index.store.chunk_ids_of(["bees"])) > 3
        for mode in MODES:
            plain = index.search("bees pollen meadow", k=1, mode=mode)[0]
            assert "copper lid" not in plain.passage  # the nearest chunk is about bees
            hit = index.search('bees pollen meadow "copper lid"', k=1, mode=mode)[0]
            assert "copper lid" in hit.passage
            assert index.get_document("bees")["text"][hit.start:hit.end] == hit.passage
