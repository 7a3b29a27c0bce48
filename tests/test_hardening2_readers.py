"""Issue 30, the readers: symlinks out of the tree, per-file bounds, linear-time patterns,
long CSV fields, checked page_starts, empty EPUB metadata."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from searcher.readers.documents import Document, Skipped
from searcher.readers.loaders import load_paths
from searcher.readers.text import markdown_title

ROOT = Path(__file__).resolve().parent.parent


def docs_and_skips(paths, opts=None):
    items = list(load_paths(paths, opts))
    return [i for i in items if isinstance(i, Document)], [i for i in items if isinstance(i, Skipped)]


def run_bounded(code: str, limit: float = 60.0) -> str:
    """Run `code` in a child Python under a time limit far above what linear work needs (a
    few milliseconds) and far below what the old backtracking patterns took (hours)."""
    try:
        done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                              text=True, timeout=limit, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {limit:g} s: the pattern backtracks") from None
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_long_markdown_heading_line_is_read_in_linear_time():
    # 20,000 spaces in a heading line: the cubic pattern took 20 s on 4,500 (hours on this).
    out = run_bounded("""
        from searcher.readers.text import markdown_title
        print(repr(markdown_title("# a" + " " * 20000 + "b")))
    """)
    assert out.strip() == repr("a" + " " * 20000 + "b")


def test_a_long_mbox_from_line_full_of_times_is_split_in_linear_time():
    # 100,000 times on the last 'From ' line (no newline): the quadratic pattern took 48 s on 16,000.
    out = run_bounded("""
        from pathlib import Path
        from searcher.readers.options import LoadOptions
        from searcher.readers.email import read_mbox
        items = list(read_mbox(Path("m.mbox"), b"From a " + b"10:00 " * 100000, LoadOptions(), {}))
        print(len(items), type(items[0]).__name__)
    """)
    assert out.split() == ["1", "Document"]


def test_markdown_titles_are_read_as_before():
    assert markdown_title("Intro\n\n# The Title #\n\nBody") == "The Title"
    assert markdown_title("   ## Two ##  \n") == "Two"
    assert markdown_title("    # code, not a heading\n####### seven\n#no space\n# \n### Third") == "Third"
    assert markdown_title("#\tTabbed  title\t###\t") == "Tabbed  title"
    assert markdown_title("no heading") == ""


def test_a_csv_field_over_128_kib_is_read_and_so_are_the_rows_after_it(tmp_path):
    big = "word " * 40_000  # 200,000 characters: over csv's default field limit of 131,072
    (tmp_path / "t.csv").write_text(f'id,text\n1,first\n2,"{big}"\n3,third\n4,fourth\n')
    docs, skipped = docs_and_skips([tmp_path])
    assert not skipped
    assert [d.id for d in docs] == ["1", "2", "3", "4"]
    assert docs[1].text == big and docs[3].metadata["row"] == 5


def test_a_malformed_csv_row_is_skipped_alone(tmp_path, monkeypatch):
    import csv

    from searcher.readers import loaders

    class Strict(csv.excel):
        strict = True  # a quote inside an unquoted field is an error, not text

    monkeypatch.setattr(csv.Sniffer, "sniff", lambda *a, **k: Strict)
    (tmp_path / "t.csv").write_text('id,text\n1,first\n2,"bad"x\n3,third\n')
    docs, skipped = docs_and_skips([tmp_path], loaders.LoadOptions(workers=0))
    assert [d.id for d in docs] == ["1", "3"]
    assert [s.path for s in skipped] == [f"{tmp_path / 't.csv'}:3"]
    assert "malformed CSV row" in skipped[0].reason and "the other rows are read" in skipped[0].reason


def test_an_epub_with_an_empty_title_and_creator_gets_no_title_or_author_none(tmp_path):
    epub = pytest.importorskip("ebooklib.epub", reason="ebooklib makes the EPUB fixture")
    book = epub.EpubBook()
    book.set_identifier("id-1")
    book.set_title("")  # written as <dc:title></dc:title>
    book.add_author("")  # <dc:creator></dc:creator>
    book.add_author("Ann Archivist")  # a second creator, not empty
    chapter = epub.EpubHtml(title="One", file_name="c1.xhtml")
    chapter.content = "<p>The ship left the harbour at dawn.</p>"
    book.add_item(chapter)
    book.spine = [chapter]
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(tmp_path / "sea.epub"), book)
    docs, skipped = docs_and_skips([tmp_path])
    assert not skipped and docs[0].title == "sea.epub" and docs[0].metadata["author"] == "Ann Archivist"
    book.metadata[epub.NAMESPACES["DC"]]["creator"] = book.metadata[epub.NAMESPACES["DC"]]["creator"][:1]
    epub.write_epub(str(tmp_path / "sea.epub"), book)
    docs, _ = docs_and_skips([tmp_path])
    assert docs[0].title == "sea.epub" and "author" not in docs[0].metadata


def test_page_starts_are_page_data_only_strictly_ascending_and_within_the_text():
    from searcher.readers.documents import page_starts

    assert page_starts({"page_starts": [0, 5, 9]}, 9) == [0, 5, 9]  # an empty last page starts at the end
    assert page_starts({"page_starts": [0, 5, 9]}) == [0, 5, 9]
    assert page_starts({"page_starts": [0] * 300_000}, 100) is None  # not ascending
    assert page_starts({"page_starts": [0, 5, 5, 9]}, 100) is None
    assert page_starts({"page_starts": [0, 5, 101]}, 100) is None  # beyond the text
    assert page_starts({"page_starts": [-1, 5]}, 100) is None
    assert page_starts({"page_starts": [0, True]}, 100) is None


def test_bad_page_starts_are_not_pages_in_the_document_view_or_the_chunks(fake_index):
    from searcher.web import create_app

    text = "First page about gardens.\n\nSecond page about oceans."
    fake_index.add_documents([
        {"id": "good", "text": text, "metadata": {"page_starts": [0, 27]}},
        {"id": "zeros", "text": text, "metadata": {"page_starts": [0] * 3000}},
        {"id": "beyond", "text": text, "metadata": {"page_starts": [0, 27, 10_000]}},
    ])
    client = create_app(fake_index).test_client()
    marks = {}
    for doc_id in ("good", "zeros", "beyond"):
        r = client.get(f"/document?id={doc_id}")
        assert r.status_code == 200
        marks[doc_id] = r.get_data(as_text=True).count('class="page-mark"')
    assert marks == {"good": 2, "zeros": 0, "beyond": 0}
    # A paged document's chunks end at a page; bad page data is one run of text.
    starts = {doc_id: [c.start for c in fake_index.store.chunks(
        [cid for cid, owner in fake_index.store.chunk_owners() if owner == doc_id]).values()]
        for doc_id in ("good", "zeros", "beyond")}
    assert sorted(starts["good"]) == [0, 27] and starts["zeros"] == starts["beyond"] == [0]


@pytest.fixture
def linked_tree(tmp_path):
    """notes/ with a link that stays inside (sub/alias.txt -> ../a.txt) and two that lead out: a
    folder link (etc -> ../outside) and a file link (passwd.txt -> ../outside/secret.txt)."""
    notes, outside = tmp_path / "notes", tmp_path / "outside"
    (notes / "sub").mkdir(parents=True)
    outside.mkdir()
    (notes / "a.txt").write_text("Herons wait in the reeds.")
    (notes / "sub" / "b.txt").write_text("Kestrels hover above the verge.")
    (outside / "secret.txt").write_text("root:x:0:0 a secret")
    (outside / "other-file.txt").write_text("another file beyond the link")
    (notes / "sub" / "alias.txt").symlink_to(Path("..") / "a.txt")
    (notes / "etc").symlink_to(outside)
    (notes / "passwd.txt").symlink_to(outside / "secret.txt")
    for path in (*notes.rglob("*.txt"), *outside.iterdir()):
        os.utime(path, (time.time() - 60, time.time() - 60), follow_symlinks=True)  # long quiet (the watcher)
    return notes


def listed(items_or_report) -> str:
    items = getattr(items_or_report, "skipped", items_or_report)
    return " ".join(f"{getattr(i, 'source', '')} {getattr(i, 'path', '')}" for i in items)


def test_symlinks_out_of_the_folder_are_reported_and_nothing_beyond_them_is_read(linked_tree):
    from searcher.readers.options import LoadOptions

    docs, skipped = docs_and_skips([linked_tree], LoadOptions(workers=0))
    assert sorted(d.id for d in docs) == [str(linked_tree / p) for p in ("a.txt", "sub/alias.txt", "sub/b.txt")]
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert set(reasons) == {"etc", "passwd.txt"}
    assert all("leads out of" in r and "--follow-links" in r for r in reasons.values()), reasons
    assert "secret" not in listed(docs + skipped) and "other-file" not in listed(docs + skipped)
    # A path given inside a tree (a watcher's event) is walked as part of it.
    _, skipped = docs_and_skips([linked_tree / "etc"], LoadOptions(workers=0, within=[linked_tree]))
    assert [Path(s.path).name for s in skipped] == ["etc"]
    # Given directly, a link is what the user asked for; --follow-links follows them all.
    docs, _ = docs_and_skips([linked_tree / "etc"], LoadOptions(workers=0))
    assert len(docs) == 2
    docs, skipped = docs_and_skips([linked_tree], LoadOptions(workers=1, follow_links=True))
    assert not skipped and len(docs) == 6 and str(linked_tree / "etc" / "secret.txt") in listed(docs)


def test_the_watcher_stays_inside_its_folders(linked_tree, fake_index):
    pytest.importorskip("watchfiles")
    from searcher.readers.options import LoadOptions
    from searcher.index.watch import Watcher

    watcher = Watcher(fake_index, [linked_tree], LoadOptions(workers=0), reconcile_every=None, debounce=0.1, settle=0.1)
    report = watcher.reconcile()
    assert report.added == 3 and sorted(Path(s.path).name for s in report.skipped) == ["etc", "passwd.txt"]
    # The events a link made, or a file beyond it, name paths inside the folder.
    report = watcher.index_changes([linked_tree / "etc", linked_tree / "etc" / "secret.txt"])
    assert report.added == 0 and "leads out of" in report.skipped[0].reason
    assert "other-file" not in listed(report) and len(fake_index) == 3
    follow = Watcher(fake_index, [linked_tree], LoadOptions(workers=0, follow_links=True), reconcile_every=None,
                     debounce=0.1, settle=0.1)
    assert follow.index_changes([linked_tree / "etc"]).added == 2 and len(fake_index) == 5


def test_the_cli_takes_follow_links(linked_tree, tmp_path, encoder, monkeypatch):
    from click.testing import CliRunner

    from searcher.cli import main

    run = CliRunner().invoke(main, ["index", str(linked_tree), "--index", str(tmp_path / "idx"), "--workers", "0",
                                    "--json"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.output)
    assert out["added"] == 3 and sorted(Path(s["path"]).name for s in out["skipped"]) == ["etc", "passwd.txt"]
    assert "secret" not in run.output and "other-file" not in run.output
    run = CliRunner().invoke(main, ["index", str(linked_tree), "--index", str(tmp_path / "idx"), "--workers", "0",
                                    "--follow-links", "--json"])
    assert run.exit_code == 0 and json.loads(run.output)["added"] == 3, run.output  # etc/ (2) and passwd.txt
    bad = CliRunner().invoke(main, ["serve", "--index", str(tmp_path / "idx"), "--follow-links"])
    assert bad.exit_code == 2 and "give --watch PATH too" in bad.output


def page_tree_pdf(copies: int, text: str = "Hello page") -> bytes:
    """A PDF whose page tree lists one page object `copies` times (the issue's 1.2 MB file
    listed it 200,000 times and was read as 200,000 pages)."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + b"3 0 R " * copies + b"] /Count " + str(copies).encode() + b" >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(content)).encode() + b" >>\nstream\n" + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def test_a_pdf_over_the_page_bound_is_skipped_before_a_page_is_read(tmp_path):
    from searcher.readers.options import DEFAULT_MAX_PAGES, LoadOptions

    (tmp_path / "tree.pdf").write_bytes(page_tree_pdf(2 * DEFAULT_MAX_PAGES))
    (tmp_path / "small.pdf").write_bytes(page_tree_pdf(3))
    docs, skipped = docs_and_skips([tmp_path], LoadOptions(workers=0))
    assert [d.metadata["pages"] for d in docs] == [3]
    [skip] = skipped
    assert Path(skip.path).name == "tree.pdf"
    assert skip.reason == (f"PDF has {2 * DEFAULT_MAX_PAGES:,} pages, over the limit of {DEFAULT_MAX_PAGES:,} "
                           "a file (--max-pages); skipped")
    _, skipped = docs_and_skips([tmp_path / "small.pdf"], LoadOptions(workers=1, max_pages=2))
    assert "PDF has 3 pages" in skipped[0].reason


def test_a_file_over_the_character_bound_is_skipped_and_rows_before_it_kept(tmp_path):
    from searcher.readers.options import LoadOptions

    assert LoadOptions(max_file_bytes=1000).max_chars == 1000  # by default: the size limit's bytes
    (tmp_path / "p.pdf").write_bytes(page_tree_pdf(3))  # "Hello page" three times: 34 characters
    (tmp_path / "rows.jsonl").write_text("".join(f'{{"id": "r{n}", "text": "{"x" * 10}"}}\n' for n in range(4)))
    (tmp_path / "short.txt").write_text("fits")
    docs, skipped = docs_and_skips([tmp_path], LoadOptions(workers=0, max_chars=25))
    assert sorted(d.id for d in docs) == sorted(["r0", "r1", str(tmp_path / "short.txt")])
    reasons = {Path(s.path).name: s.reason for s in skipped}
    assert reasons["p.pdf"] == "its text is over 25 characters, the limit of a file (--max-file-chars); skipped"
    assert reasons["rows.jsonl"].endswith("; the 2 documents before that point were kept")


def test_an_epub_over_the_chapter_bound_is_skipped(tmp_path):
    epub = pytest.importorskip("ebooklib.epub", reason="ebooklib makes the EPUB fixture")
    from searcher.readers.options import LoadOptions

    book = epub.EpubBook()
    book.set_identifier("id-1")
    chapter = epub.EpubHtml(title="One", file_name="c1.xhtml")
    chapter.content = "<p>The ship left the harbour at dawn.</p>"
    book.add_item(chapter)
    book.spine = [chapter] * 3  # one chapter listed three times
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(tmp_path / "sea.epub"), book)
    _, skipped = docs_and_skips([tmp_path], LoadOptions(workers=0, max_pages=2))
    assert skipped[0].reason.startswith("EPUB has 3 chapters in its reading order, over the limit of 2")
    _, skipped = docs_and_skips([tmp_path], LoadOptions(workers=0, max_chars=50))
    assert "--max-file-chars" in skipped[0].reason


def test_the_cli_takes_the_page_and_character_bounds(tmp_path, encoder):
    from click.testing import CliRunner

    from searcher.cli import main

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "p.pdf").write_bytes(page_tree_pdf(3))
    (tmp_path / "docs" / "a.txt").write_text("Herons wait in the reeds.")
    args = ["index", str(tmp_path / "docs"), "--index", str(tmp_path / "idx"), "--workers", "0", "--json"]
    run = CliRunner().invoke(main, [*args, "--max-pages", "2", "--max-file-chars", "30"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.output)
    assert out["added"] == 1 and [s["reason"].split(",")[0] for s in out["skipped"]] == ["PDF has 3 pages"]
    run = CliRunner().invoke(main, [*args, "--max-file-chars", "20"])
    assert "--max-file-chars" in json.loads(run.output)["skipped"][0]["reason"]


def test_a_document_over_the_chunk_bound_is_skipped_before_encoding(tmp_path, fake_index, fake_encoder):
    """Issue 30 item 9: --max-file-chunks. A file whose text makes more chunks than the bound
    is skipped with the reason before any of its chunks reaches the encoder; the others are
    indexed; a JSON Lines file is bounded row by row (each row a document)."""
    from searcher.readers.options import DEFAULT_MAX_FILE_CHUNKS, LoadOptions

    docs = tmp_path / "docs"
    docs.mkdir()
    book = " ".join(f"Chapter {n} tells how the heron waited by the river for a fish." for n in range(400))
    (docs / "book.txt").write_text(book)
    (docs / "note.txt").write_text("Herons wait in the reeds.")
    (docs / "rows.jsonl").write_text('{"id": "r1", "text": "a short row"}\n{"id": "r2", "text": "' + book + '"}\n')
    encoded = []
    real = fake_encoder.encode_ids

    def counting(inputs, *a, **kw):
        encoded.extend(inputs)
        return real(inputs, *a, **kw)

    fake_encoder.encode_ids = counting
    try:
        report = fake_index.add_paths([docs], LoadOptions(workers=0, max_chunks=3))
    finally:
        del fake_encoder.encode_ids
    assert sorted(d for d, _ in fake_index.store.document_sources()) == sorted(["r1", str(docs / "note.txt")])
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert reasons == {"book.txt": reasons["book.txt"], "rows.jsonl:2": reasons["rows.jsonl:2"]}
    assert reasons["book.txt"].startswith("more than 3 chunks (--max-file-chunks;")
    assert reasons["book.txt"].endswith("skipped before encoding")
    assert len(encoded) == report.chunks == 2  # only the note's and r1's chunks were encoded
    assert fake_index.chunker.split(book).__len__() > 3
    # the default is generous: the same book is indexed whole
    report = fake_index.add_paths([docs / "book.txt"], LoadOptions(workers=0))
    assert report.added == 1 and report.chunks > 3 and DEFAULT_MAX_FILE_CHUNKS >= 50_000


def test_the_cli_takes_the_chunk_bound(tmp_path, encoder):
    from click.testing import CliRunner

    from searcher.cli import main

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "long.txt").write_text(" ".join(f"Sentence {n} about herons and reeds." for n in range(300)))
    (tmp_path / "docs" / "a.txt").write_text("Herons wait in the reeds.")
    args = ["index", str(tmp_path / "docs"), "--index", str(tmp_path / "idx"), "--workers", "0", "--json"]
    run = CliRunner().invoke(main, [*args, "--max-file-chunks", "2"])
    assert run.exit_code == 0, run.output
    out = json.loads(run.output)
    assert out["added"] == 1 and out["chunks"] == 1
    assert [Path(s["path"]).name for s in out["skipped"]] == ["long.txt"]
    assert "--max-file-chunks" in out["skipped"][0]["reason"]
