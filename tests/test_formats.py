"""Word, PowerPoint and e-mail documents (fixtures made here with python-docx, python-pptx
and the standard library's email package)."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage

import pytest

from searcher import Index
from searcher.readers.loaders import load_paths

docx = pytest.importorskip("docx", reason="python-docx makes the Word fixtures")
pptx = pytest.importorskip("pptx", reason="python-pptx makes the PowerPoint fixtures")


def read(folder):
    items = list(load_paths([folder]))
    return ({d.id: d for d in items if hasattr(d, "text")},
            {s.path.rsplit("/", 1)[-1]: s.reason for s in items if not hasattr(s, "text")})


def make_docx(path):
    document = docx.Document()
    document.core_properties.author = "Ann Archivist"
    document.add_heading("Garden plan", level=1)
    document.add_paragraph("Tomatoes go along the south fence, beans beside them.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "crop", "sown"
    table.cell(1, 0).text, table.cell(1, 1).text = "kohlrabi", "April"
    document.add_paragraph("Water twice a week in dry spells.")
    document.save(str(path))


def make_pptx(path):
    deck = pptx.Presentation()
    for title, body, notes in (("Quarterly review", "Sales grew in the north.", ""),
                               ("Risks", "The warehouse roof leaks.", "Mention the insurance claim.")):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    deck.save(str(path))


def message(subject: str, body: str, attachment: tuple[str, bytes] | None = None) -> bytes:
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "ann@example.org", "bob@example.org", subject
    m["Date"] = "Tue, 01 Dec 2026 10:00:00 +0100"
    m.set_content(body)
    if attachment:
        m.add_attachment(attachment[1], maintype="text", subtype="plain", filename=attachment[0])
    return bytes(m)


def test_a_docx_is_read_in_reading_order_with_its_properties(tmp_path):
    make_docx(tmp_path / "plan.docx")
    docs, skipped = read(tmp_path)
    doc = docs[str(tmp_path / "plan.docx")]
    assert not skipped and doc.title == "Garden plan" and doc.metadata["author"] == "Ann Archivist"
    assert doc.metadata["created"].endswith("+00:00") and doc.metadata["type"] == "docx"
    text = doc.text
    assert text.index("Tomatoes") < text.index("kohlrabi | April") < text.index("Water twice")


def test_a_slide_is_a_page_and_its_notes_are_searchable(tmp_path, fake_encoder):
    make_pptx(tmp_path / "review.pptx")
    docs, _ = read(tmp_path)
    doc = docs[str(tmp_path / "review.pptx")]
    assert doc.title == "Quarterly review" and doc.metadata["pages"] == 2
    with Index.create(tmp_path / "idx", encoder=fake_encoder) as index:
        index.add_paths([tmp_path / "review.pptx"])
        hit = index.search("insurance claim", k=1, mode="keyword")[0]
        assert hit.page == 2 and "Notes: Mention the insurance claim." in hit.passage
        assert index.search("sales north", k=1, mode="keyword")[0].page == 1


def test_an_mbox_gives_a_document_a_message_and_one_for_its_attachment(tmp_path):
    messages = [message("Invoice 17", "Please find the invoice attached.", ("invoice.txt", b"Total due: 42 euros.")),
                message("Lunch", "Shall we meet at noon?"),
                message("Minutes", "The board approved the plan.")]
    (tmp_path / "inbox.mbox").write_bytes(b"".join(b"From ann@example.org Tue Dec  1 10:00:00 2026\n" + m + b"\n"
                                                   for m in messages))
    (tmp_path / "one.eml").write_bytes(message("Single", "Just this one."))
    docs, skipped = read(tmp_path)
    mbox = str(tmp_path / "inbox.mbox")
    assert not skipped
    assert [docs[f"{mbox}#{n}"].title for n in (1, 2, 3)] == ["Invoice 17", "Lunch", "Minutes"]
    first = docs[f"{mbox}#1"]
    assert first.metadata["from"] == "ann@example.org" and first.metadata["date"] == "2026-12-01T10:00:00+01:00"
    attachment = docs[f"{mbox}#1/1-invoice.txt"]
    assert "42 euros" in attachment.text and attachment.metadata["parent"] == f"{mbox}#1"
    assert attachment.source == mbox and attachment.metadata["type"] == "txt"
    assert docs[str(tmp_path / "one.eml")].title == "Single"
    assert len([d for d in docs if d.startswith(mbox)]) == 4


def test_bad_office_files_and_mail_are_skipped_and_the_rest_indexed(tmp_path, monkeypatch):
    from searcher.readers import office as office_reader

    monkeypatch.setattr(office_reader, "MAX_UNPACKED_BYTES", 4 * 1024 * 1024)  # a small bomb will do
    make_docx(tmp_path / "good.docx")
    good = (tmp_path / "good.docx").read_bytes()
    (tmp_path / "truncated.docx").write_bytes(good[: len(good) // 2])
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("word/document.xml", b"\0" * (16 * 1024 * 1024))  # 16 MB of zeros, 16 KB packed
    (tmp_path / "bomb.docx").write_bytes(bomb.getvalue())
    (tmp_path / "notzip.pptx").write_bytes(b"this is not a presentation")
    (tmp_path / "junk.mbox").write_bytes(b"\x00\x01 no messages here")
    docs, skipped = read(tmp_path)
    assert list(docs) == [str(tmp_path / "good.docx")]
    assert skipped["truncated.docx"].startswith("damaged DOCX")
    assert "zip bomb" in skipped["bomb.docx"]
    assert skipped["notzip.pptx"].startswith("damaged PPTX")
    assert skipped["junk.mbox"].startswith("not an mbox file")


def _hangs(path, data, opts):
    import time

    time.sleep(60)
    yield from ()


def _dies(path, data, opts):
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)
    yield from ()


def test_a_file_that_hangs_or_kills_its_reader_is_skipped_and_the_rest_is_read(tmp_path, monkeypatch):
    import time

    from searcher.readers import loaders

    monkeypatch.setitem(loaders.READERS, ".slow", _hangs)  # worker processes fork: they see it too
    monkeypatch.setitem(loaders.READERS, ".boom", _dies)
    (tmp_path / "a.txt").write_text("first good file")
    (tmp_path / "b.slow").write_text("a file whose parser loops")
    (tmp_path / "c.boom").write_text("a file whose parser crashes")
    (tmp_path / "d.txt").write_text("second good file")
    started = time.monotonic()
    items = list(loaders.load_paths([tmp_path], loaders.LoadOptions(workers=2, file_timeout=2)))
    assert time.monotonic() - started < 30  # not the minute the reader sleeps
    assert [getattr(i, "text", None) for i in items if hasattr(i, "text")] == ["first good file", "second good file"]
    reasons = {i.path.rsplit("/", 1)[-1]: i.reason for i in items if not hasattr(i, "text")}
    assert "took over 2 s (--file-timeout)" in reasons["b.slow"]
    assert "process died" in reasons["c.boom"]


def test_the_cli_takes_a_file_timeout(tmp_path, encoder):
    from click.testing import CliRunner

    from searcher.cli import main

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("Herons wait in the reeds.")
    result = CliRunner().invoke(main, ["index", str(tmp_path / "docs"), "--index", str(tmp_path / "idx"),
                                       "--file-timeout", "5", "--workers", "1"])
    assert result.exit_code == 0 and "1 documents indexed" in result.output, result.output
    bad = CliRunner().invoke(main, ["index", str(tmp_path / "docs"), "--index", str(tmp_path / "idx"),
                                    "--file-timeout", "0"])
    assert bad.exit_code == 2


def test_an_epub_is_read_chapter_by_chapter_in_spine_order(tmp_path):
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("id-1")
    book.set_title("Sea Stories")
    book.add_author("Ann Archivist")
    chapters = []
    for n, body in ((1, "The ship left the harbour at dawn."), (2, "A storm rose over the reef.")):
        chapter = epub.EpubHtml(title=f"Chapter {n}", file_name=f"c{n}.xhtml")
        chapter.content = f"<h1>Chapter {n}</h1><p>{body}</p>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.spine = list(reversed(chapters))  # the reading order is the spine's, not the files'
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    epub.write_epub(str(tmp_path / "sea.epub"), book)
    docs, skipped = read(tmp_path)
    doc = docs[str(tmp_path / "sea.epub")]
    assert not skipped and doc.title == "Sea Stories" and doc.metadata["author"] == "Ann Archivist"
    assert doc.metadata["chapters"] == 2 and doc.text.index("storm") < doc.text.index("harbour")
    (tmp_path / "broken.epub").write_bytes((tmp_path / "sea.epub").read_bytes()[:300])
    _, skipped = read(tmp_path)
    assert skipped["broken.epub"].startswith("damaged EPUB")


def test_an_mbox_survives_a_from_line_in_a_body_a_broken_header_and_twin_attachments(tmp_path):
    twins = EmailMessage()
    twins["Subject"], twins["From"] = "Twins", "ann@example.org"
    twins.set_content("Two notes attached.")
    for text in (b"first note", b"second note"):
        twins.add_attachment(text, maintype="text", subtype="plain", filename="notes.txt")
    broken = b"Subject: Broken\nMessage-ID: <[\nFrom: x@example.org\n\nA body.\n"
    chatty = message("Chatty", "Hello.\nFrom what I heard, the meeting moved.\nBye.")
    separator = b"From ann@example.org Tue Dec  1 10:00:00 2026\n"
    (tmp_path / "box.mbox").write_bytes(b"\n".join(separator + m for m in (chatty, broken, bytes(twins))))
    docs, skipped = read(tmp_path)
    box = str(tmp_path / "box.mbox")
    assert docs[f"{box}#1"].title == "Chatty" and "From what I heard" in docs[f"{box}#1"].text
    assert docs[f"{box}#3"].title == "Twins"
    assert {docs[f"{box}#3/1-notes.txt"].text, docs[f"{box}#3/2-notes.txt"].text} == {"first note", "second note"}
    assert f"{box}#2" not in docs  # the message with the broken header is skipped alone,
    assert any(r.startswith("unreadable message") for r in skipped.values())  # with its reason
