import json

from searcher.readers.documents import Document, Skipped
from searcher.readers.loaders import LoadOptions, load_paths
from searcher.readers.html_text import html_to_text


def docs_and_skips(paths, opts=None):
    items = list(load_paths(paths, opts))
    return [i for i in items if isinstance(i, Document)], [i for i in items if isinstance(i, Skipped)]


def test_plain_text_and_markdown(tmp_path):
    (tmp_path / "a.txt").write_text("Hello plain text.\nSecond line.")
    (tmp_path / "b.md").write_text("Intro\n\n# The Title #\n\nBody **bold**.")
    docs, skipped = docs_and_skips([tmp_path])
    by_name = {d.source.rsplit("/", 1)[-1]: d for d in docs}
    assert not skipped
    assert by_name["a.txt"].text == "Hello plain text.\nSecond line."
    assert by_name["a.txt"].id == str(tmp_path / "a.txt")  # a file's id is its absolute path
    assert by_name["b.md"].title == "The Title"


def test_html_visible_text_and_title(tmp_path):
    (tmp_path / "p.html").write_text(
        "<html><head><title>My  Page</title><style>p{color:red}</style></head>"
        "<body><h1>Heading</h1><p>Visible &amp; kept</p><script>var hidden=1;</script></body></html>"
    )
    (tmp_path / "empty.htm").write_text("<html><head><title>x</title></head><body><script>1</script></body></html>")
    docs, skipped = docs_and_skips([tmp_path])
    assert len(docs) == 1
    assert docs[0].title == "My Page"
    assert "Visible & kept" in docs[0].text and "Heading" in docs[0].text
    assert "hidden" not in docs[0].text and "color" not in docs[0].text
    assert [s.reason for s in skipped] == ["HTML page has no visible text"]


def test_html_to_text_keeps_blocks_apart():
    title, text = html_to_text("<p>one</p><p>two</p>")
    assert title == "" and text == "one\n\ntwo"


def test_jsonl_beir_layout_metadata_and_bad_lines(tmp_path):
    lines = [
        json.dumps({"_id": "d1", "title": "T1", "text": "first", "year": 2020}),
        "{not json",
        json.dumps({"id": "d2", "text": "second"}),
        json.dumps(["a", "list"]),
        json.dumps({"_id": "d3", "title": "no text"}),
    ]
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    docs, skipped = docs_and_skips([path])
    assert [(d.id, d.title, d.text) for d in docs] == [("d1", "T1", "first"), ("d2", "", "second")]
    facts = {"type": "jsonl", "size": path.stat().st_size, "folder": str(tmp_path)}
    assert {k: v for k, v in docs[0].metadata.items() if k != "modified"} == {"year": 2020, "line": 1, **facts}
    assert docs[0].metadata["modified"].endswith("+00:00")  # the file's, in ISO 8601 UTC
    assert {s.path.rsplit(":", 1)[-1] for s in skipped} == {"2", "4", "5"}
    assert any("malformed JSON" in s.reason for s in skipped)


def test_csv_default_and_chosen_columns(tmp_path):
    (tmp_path / "rows.csv").write_text('id,title,body,tag\n7,Seven,"text, with comma",x\n8,Eight,more,y\n')
    docs, skipped = docs_and_skips([tmp_path / "rows.csv"])
    assert [(d.id, d.title, d.text, d.metadata["tag"]) for d in docs] == [
        ("7", "Seven", "text, with comma", "x"), ("8", "Eight", "more", "y")]
    opts = LoadOptions(csv_text_column="tag", csv_id_column="title")
    docs, _ = docs_and_skips([tmp_path / "rows.csv"], opts)
    assert [(d.id, d.text) for d in docs] == [("Seven", "x"), ("Eight", "y")]


def test_csv_without_text_column_is_skipped_with_reason(tmp_path):
    (tmp_path / "nums.csv").write_text("a,b\n1,2\n")
    docs, skipped = docs_and_skips([tmp_path])
    assert docs == [] and "no text column" in skipped[0].reason


def test_broken_and_unsupported_files_are_skipped(tmp_path):
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / "binary.txt").write_bytes(b"abc\x00\x01\x02def")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.md").write_text("  \n\t\x01\x02\n")
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    (tmp_path / "big.txt").write_text("x " * 2000)
    docs, skipped = docs_and_skips([tmp_path, tmp_path / "missing.txt"], LoadOptions(max_file_bytes=1000))
    reasons = {s.path.rsplit("/", 1)[-1]: s.reason for s in skipped}
    assert [d.text for d in docs] == ["café au lait"]
    assert "unsupported" in reasons["image.png"]
    assert "binary" in reasons["binary.txt"]
    assert reasons["empty.txt"] == "empty file"
    assert "no text" in reasons["blank.md"]
    assert "limit" in reasons["big.txt"]
    assert "no such file" in reasons["missing.txt"]


def test_symlink_loop_is_reported_not_followed(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("inside")
    (tmp_path / "d" / "loop").symlink_to(tmp_path / "d")
    docs, skipped = docs_and_skips([tmp_path])
    assert [d.text for d in docs] == ["inside"]
    assert any("symlink loop" in s.reason for s in skipped)


PAGE_WITH_CHROME = """<html><head><title>Pruning roses</title><meta name="date" content="2023-04-05"></head>
<body><nav><a href="/">Home</a> <a href="/about">About us</a> <a href="/shop">Shop</a></nav>
<div id="cookie-banner" class="cookie-consent">We use cookies to improve your experience. Accept all cookies</div>
<main><article><h1>Pruning roses</h1>
<p>Roses are pruned in late winter, just as the buds begin to swell along the canes.</p>
<p>Cut each cane a little above an outward-facing bud, at an angle that sheds the rain.</p>
</article></main>
<footer>Copyright 2024 Example Gardens Ltd. All rights reserved. Privacy policy</footer></body></html>"""


def test_html_main_text_drops_navigation_footer_and_cookie_banner(tmp_path):
    (tmp_path / "roses.html").write_text(PAGE_WITH_CHROME)
    docs, skipped = docs_and_skips([tmp_path])
    assert not skipped and len(docs) == 1
    doc = docs[0]
    assert "buds begin to swell" in doc.text and "outward-facing bud" in doc.text
    for chrome in ("About us", "cookies", "Copyright", "Privacy policy"):
        assert chrome not in doc.text, chrome
    assert doc.title == "Pruning roses"
    assert doc.metadata["date"] == "2023-04-05" and doc.metadata["extraction"] == "main"
    assert doc.metadata["type"] == "html"  # the file's own facts are still there


def test_html_main_text_falls_back_to_the_visible_text():
    from searcher.readers.html_text import main_text

    # trafilatura finds no main text in a page of links alone: every visible word is kept
    page = main_text('<html><body><ul><li><a href="a">Alpha</a></li><li><a href="b">Beta</a></li></ul></body></html>')
    assert "Alpha" in page.text and "Beta" in page.text
    assert page.metadata["extraction"] in ("main", "visible")
    assert main_text("<html><body><script>x()</script></body></html>").text == ""


def test_html_main_text_logs_nothing_when_it_falls_back(caplog):
    """trafilatura's own ERROR lines for a page with no main text are not shown: the fallback
    to the visible text handles that page."""
    import logging

    from searcher.readers.html_text import main_text

    with caplog.at_level(logging.INFO):
        assert main_text("<p>x</p>").text == "x"
        assert main_text("\x00\x01garbage<<<>>>").metadata["extraction"] == "visible"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
