"""Zip-packaged documents: Word (.docx, python-docx), PowerPoint (.pptx, python-pptx) and
EPUB e-books (.epub, ebooklib).

A DOCX is read in reading order: paragraphs and tables as they come in the body (a table
row by row, its cells separated by " | "). A PPTX slide is a page: its shapes' text, then
its speaker notes, and `metadata["page_starts"]` gives each slide's offset, so a hit carries
its slide number as `page`. An EPUB's chapters are read in spine (reading) order. All are zip files: one whose parts would unpack to more than
MAX_UNPACKED_BYTES (a zip bomb dressed as a document) is skipped before it is parsed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Iterator

from searcher.readers.documents import Document, Skipped, TooLarge, check_chars, check_pages, join_pages
from searcher.readers.html_text import html_to_text

MAX_UNPACKED_BYTES = 100 * 1024 * 1024  # a parsed XML tree takes several times this in memory


def unpack_problem(data: bytes, kind: str) -> str | None:
    """Why a zip-based document must not be opened (damaged, or unpacking too large), or None."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            total = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        return f"damaged {kind}: not a valid zip package ({e})"
    if total > MAX_UNPACKED_BYTES:
        return f"{kind} would unpack to {total:,} bytes, over the {MAX_UNPACKED_BYTES:,}-byte limit (a zip bomb?)"
    return None


def core_metadata(props) -> dict:
    """The Office core properties a filter can use: author, created, modified_by, subject, keywords."""
    out = {}
    for name, key in (("author", "author"), ("last_modified_by", "modified_by"), ("subject", "subject"),
                      ("keywords", "keywords")):
        value = (getattr(props, name, None) or "").strip()
        if value:
            out[key] = value
    created = getattr(props, "created", None)
    if created is not None:
        out["created"] = created.isoformat() if created.tzinfo else created.isoformat() + "+00:00"
    return out


def read_docx(path: Path, data: bytes, opts) -> Iterator[Document | Skipped]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    problem = unpack_problem(data, "DOCX")
    if problem:
        yield Skipped(str(path), problem)
        return
    try:
        document = docx.Document(io.BytesIO(data))
        blocks, heading = [], ""
        def body_blocks(parent):
            """Paragraphs and tables in order, those inside content controls (w:sdt) included."""
            for element in parent.iterchildren():
                tag = element.tag.rsplit("}", 1)[-1]
                if tag == "sdt":
                    for content in element.iterchildren():
                        if content.tag.rsplit("}", 1)[-1] == "sdtContent":
                            yield from body_blocks(content)
                else:
                    yield tag, element

        for tag, element in body_blocks(document.element.body):
            if tag == "p":
                paragraph = Paragraph(element, document)
                text = paragraph.text.strip()
                style = (paragraph.style.name if paragraph.style is not None else "") or ""
                if text and not heading and (style.startswith("Heading") or style == "Title"):
                    heading = text
                if text:
                    blocks.append(text)
            elif tag == "tbl":
                for row in Table(element, document).rows:
                    cells = [cell.text.strip() for cell in row.cells]
                    if any(cells):
                        blocks.append(" | ".join(cells))
        props = document.core_properties
    except Exception as e:  # python-docx raises many kinds (KeyError, lxml errors) on a damaged package
        yield Skipped(str(path), f"damaged DOCX: {type(e).__name__}: {e}")
        return
    title = (props.title or "").strip() or heading or path.name
    yield Document(id=str(path), text="\n\n".join(blocks), title=title, source=str(path),
                   metadata=core_metadata(props))


def _shapes(shapes):
    """A slide's shapes, those inside groups included."""
    for shape in shapes:
        if hasattr(shape, "shapes"):  # a group shape
            yield from _shapes(shape.shapes)
        else:
            yield shape


def read_pptx(path: Path, data: bytes, opts) -> Iterator[Document | Skipped]:
    import pptx

    problem = unpack_problem(data, "PPTX")
    if problem:
        yield Skipped(str(path), problem)
        return
    try:
        deck = pptx.Presentation(io.BytesIO(data))
        check_pages(len(deck.slides), opts, "PPTX", "slides")
        slides, first_title, chars = [], "", 0
        for slide in deck.slides:
            parts = []
            if slide.shapes.title is not None and slide.shapes.title.text.strip() and not first_title:
                first_title = slide.shapes.title.text.strip()
            for shape in _shapes(slide.shapes):
                if shape.has_text_frame and shape.text_frame.text.strip():
                    parts.append(shape.text_frame.text.strip())
                elif getattr(shape, "has_table", False) and shape.has_table:
                    for row in shape.table.rows:
                        parts.append(" | ".join(cell.text.strip() for cell in row.cells))
            if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
                notes = slide.notes_slide.notes_text_frame.text.strip()
                if notes:
                    parts.append(f"Notes: {notes}")
            slides.append("\n".join(parts))
            chars += len(slides[-1]) + 2
            check_chars(chars, opts)
        props = deck.core_properties
    except TooLarge:
        raise
    except Exception as e:
        yield Skipped(str(path), f"damaged PPTX: {type(e).__name__}: {e}")
        return
    text, starts = join_pages(slides)
    metadata = {**core_metadata(props), "pages": len(slides), "page_starts": starts}
    title = (props.title or "").strip() or first_title or path.name
    yield Document(id=str(path), text=text, title=title, source=str(path), metadata=metadata)


def read_epub(path: Path, data: bytes, opts) -> Iterator[Document | Skipped]:
    import ebooklib
    from ebooklib import epub

    problem = unpack_problem(data, "EPUB")
    if problem:
        yield Skipped(str(path), problem)
        return
    try:
        book = epub.read_epub(io.BytesIO(data), options={"ignore_ncx": True})
        check_pages(len(book.spine), opts, "EPUB", "chapters in its reading order")
        chapters, chars = [], 0
        for idref, _linear in book.spine:
            item = book.get_item_with_id(idref)
            if item is not None and item.get_type() == ebooklib.ITEM_DOCUMENT:
                text = html_to_text(item.get_content().decode("utf-8", "replace"))[1]
                if text:
                    chapters.append(text)
                    chars += len(text) + 2
                    check_chars(chars, opts)
    except TooLarge:
        raise
    except Exception as e:  # ebooklib raises many kinds on a damaged book
        yield Skipped(str(path), f"damaged EPUB: {type(e).__name__}: {e}")
        return

    def first(name: str) -> str:
        """The first non-empty value of a Dublin Core field, or '' (ebooklib gives None for
        an empty element such as `<dc:title/>`)."""
        for value, _attributes in book.get_metadata("DC", name):
            if isinstance(value, str) and value.strip():
                return value.strip()
        return ""

    metadata = {"chapters": len(chapters)}
    for name, key in (("creator", "author"), ("language", "language"), ("subject", "subject")):
        if first(name):
            metadata[key] = first(name)
    if first("date"):
        metadata["created"] = first("date")
    yield Document(id=str(path), text="\n\n".join(chapters), title=first("title") or path.name,
                   source=str(path), metadata=metadata)
