"""PDF documents, page by page (fixtures made here with fpdf2; PDFium reads them)."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner

from searcher import Index
from searcher.cli import main
from searcher.readers.loaders import load_paths
from searcher.readers.pdf import pdf_date

fpdf = pytest.importorskip("fpdf", reason="fpdf2 (a test dependency) makes the PDF fixtures")

FILLER = "The committee reviewed the quarterly figures and approved the budget for the coming year."


def make_pdf(path, pages: list[str], title: str | None = None, password: str | None = None, image: bool = False):
    pdf = fpdf.FPDF()
    pdf.set_font("Helvetica", size=11)
    if title:
        pdf.set_title(title)
    if password:
        pdf.set_encryption(owner_password="owner", user_password=password)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 6, text)
        if image:
            pdf.rect(20, 20, 100, 60, style="F")  # drawing only: no text layer
    pdf.output(str(path))
    return path


def documents(folder):
    items = list(load_paths([folder]))
    return [d for d in items if hasattr(d, "text")], [s for s in items if not hasattr(s, "text")]


def test_a_sentence_on_page_seven_is_found_with_its_page(tmp_path, fake_encoder):
    pages = [f"Page {n}. {FILLER}" for n in range(1, 11)]
    pages[6] = "Page 7. The lighthouse keeper logged a comet over the northern harbour."
    make_pdf(tmp_path / "report.pdf", pages, title="Annual report")
    [doc], skipped = documents(tmp_path)
    assert not skipped and doc.title == "Annual report"
    assert doc.metadata["pages"] == 10 and len(doc.metadata["page_starts"]) == 10
    assert doc.metadata["type"] == "pdf" and doc.metadata["size"] == (tmp_path / "report.pdf").stat().st_size
    assert doc.metadata["folder"] == str(tmp_path)
    with Index.create(tmp_path / "idx", encoder=fake_encoder, chunk_tokens=48, overlap=0) as index:
        report = index.add_paths([tmp_path / "report.pdf"])
        assert report.pages == 10 and "10 pages (" in report.summary()
        hit = index.search("lighthouse keeper comet harbour", k=1, mode="keyword")[0]
        assert hit.doc_id == str(tmp_path / "report.pdf") and "lighthouse" in hit.passage
        assert hit.page == 7 and hit.to_dict()["page"] == 7
        assert "page_starts" not in hit.metadata  # offsets stay in the stored document
        other = index.search("Page 2 committee", k=5, mode="keyword")
        assert {h.page for h in other} <= set(range(1, 11))


def test_the_cli_and_the_api_carry_the_page(tmp_path, encoder):
    make_pdf(tmp_path / "docs" / "a.pdf" if (tmp_path / "docs").mkdir() is None else None,
             [FILLER, "The lighthouse keeper logged a comet."])
    run = CliRunner().invoke(main, ["index", str(tmp_path / "docs"), "--index", str(tmp_path / "idx")])
    assert run.exit_code == 0, run.output
    out = CliRunner().invoke(main, ["search", "lighthouse comet", "--index", str(tmp_path / "idx"), "--json",
                                    "--mode", "keyword"])
    assert json.loads(out.output)[0]["page"] == 2
    from searcher.web import create_app

    with Index.open(tmp_path / "idx", device="cpu") as index:
        client = create_app(index).test_client()
        assert client.get("/api/search?q=lighthouse+comet&mode=keyword").get_json()["results"][0]["page"] == 2
        assert "page 2" in client.get("/?q=lighthouse+comet&mode=keyword").get_data(as_text=True)


def test_bad_pdfs_are_skipped_with_their_reason_and_the_rest_is_indexed(tmp_path):
    make_pdf(tmp_path / "good.pdf", ["A perfectly ordinary page about gardens."])
    make_pdf(tmp_path / "locked.pdf", ["Secret minutes of the meeting."], password="letmein")
    make_pdf(tmp_path / "scan.pdf", ["", ""], image=True)
    good = (tmp_path / "good.pdf").read_bytes()
    (tmp_path / "truncated.pdf").write_bytes(good[: len(good) // 3])
    (tmp_path / "garbage.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
    docs, skipped = documents(tmp_path)
    assert [d.id for d in docs] == [str(tmp_path / "good.pdf")]
    reasons = {os.path.basename(s.path): s.reason for s in skipped}
    assert reasons["locked.pdf"].startswith("encrypted")
    assert reasons["scan.pdf"].startswith("no text layer (scanned?)")
    assert reasons["truncated.pdf"].startswith("damaged PDF") and reasons["garbage.pdf"].startswith("damaged PDF")


def test_touching_a_file_costs_no_encoding_but_its_facts_follow(tmp_path, fake_encoder):
    note = tmp_path / "note.md"
    note.write_text("# Birds\n\nHerons wait in the reeds.")
    with Index.create(tmp_path / "idx", encoder=fake_encoder) as index:
        index.add_paths([note])
        before = index.get_document(str(note))["metadata"]["modified"]
        later = time.time() + 3600
        os.utime(note, (later, later))
        report = index.add_paths([note])
        assert (report.unchanged, report.chunks) == (1, 0)  # nothing encoded
        after = index.get_document(str(note))["metadata"]
        assert after["modified"] != before and after["modified"].startswith(time.strftime("%Y", time.gmtime(later)))
        assert after["type"] == "md" and after["size"] == note.stat().st_size


def test_pdf_dates_become_iso_8601():
    assert pdf_date("D:20250208122313Z") == "2025-02-08T12:23:13+00:00"
    assert pdf_date("D:2024") == "2024-01-01T00:00:00+00:00"
    assert pdf_date("yesterday") is None and pdf_date(None) is None


def test_the_document_view_marks_pages_and_the_hit_on_its_page(tmp_path, fake_encoder):
    from searcher.web import create_app

    make_pdf(tmp_path / "p.pdf", ["First page text.", "Second page has the heron.", "Third page."])
    with Index.create(tmp_path / "idx", encoder=fake_encoder) as index:
        index.add_paths([tmp_path / "p.pdf"])
        hit = index.search("heron", k=1, mode="keyword")[0]
        assert hit.page == 2
        client = create_app(index).test_client()
        html = client.get(f"/document?id={hit.doc_id}&start={hit.start}&end={hit.end}&q=heron").get_data(as_text=True)
    assert [f'id="page-{n}"' in html for n in (1, 2, 3)] == [True, True, True]
    assert html.index('id="page-2"') < html.index('id="hit"') < html.index('id="page-3"')


def scanned_pdf(path, words: str):
    """A PDF whose only page is a picture of `words` (no text layer)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (1400, 300), 255)
    try:
        font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 56)
    except OSError:
        font = ImageFont.load_default(size=56)
    ImageDraw.Draw(image).text((40, 110), words, fill=0, font=font)
    picture = path.with_suffix(".png")
    image.save(picture)
    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.image(str(picture), x=10, y=10, w=190)
    pdf.output(str(path))
    picture.unlink()


def test_ocr_without_ocrmypdf_says_how_to_install_it(tmp_path, monkeypatch):
    from searcher.readers import pdf as pdf_reader

    monkeypatch.setattr(pdf_reader, "ocr_available", lambda: False)
    (tmp_path / "docs").mkdir()
    result = CliRunner().invoke(main, ["index", str(tmp_path / "docs"), "--index", str(tmp_path / "idx"), "--ocr"])
    assert result.exit_code == 1 and "pip install -e '.[ocr]'" in result.output and "tesseract-ocr" in result.output
    assert not (tmp_path / "idx").exists()  # refused before anything was made


def test_ocr_reads_a_scanned_page_when_ocrmypdf_is_installed(tmp_path):
    from searcher.readers.options import LoadOptions
    from searcher.readers.pdf import ocr_available

    if not ocr_available():
        pytest.skip("OCRmyPDF and Tesseract are not installed (pip install -e '.[ocr]'; apt-get install tesseract-ocr)")
    scanned_pdf(tmp_path / "scan.pdf", "The lighthouse keeper saw a comet")
    [skipped] = list(load_paths([tmp_path], LoadOptions(workers=0)))
    assert skipped.reason.startswith("no text layer (scanned?)") and "--ocr" in skipped.reason
    [doc] = list(load_paths([tmp_path], LoadOptions(workers=0, ocr=True)))
    assert "lighthouse" in doc.text.lower() and doc.metadata["ocr"] is True and doc.metadata["pages"] == 1
