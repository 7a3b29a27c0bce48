"""PDF text extraction: pypdfium2 (what searcher uses) against pdfminer.six, on real PDFs.

    python benchmarks/extract.py                       # the PDFs Debian's doc packages installed
    python benchmarks/extract.py a.pdf b.pdf --repeat 3
    python benchmarks/extract.py --index            # also `searcher index` on them, end to end

Prints pages a second for each library (best of --repeat runs, each file read from memory),
the characters each extracts, and how alike their words are (the share of pdfminer's words
that pypdfium2 also finds, after both are cleaned as searcher cleans them). pdfminer.six is
only needed here: `pip install pdfminer.six`.
"""

from __future__ import annotations

import argparse
import glob
import io
import re
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from searcher.readers.pdf import page_text  # noqa: E402

WORDS = re.compile(r"[^\W_]+")


def with_pdfium(data: bytes) -> list[str]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    pages = []
    for i in range(len(pdf)):
        page = pdf[i]
        textpage = page.get_textpage()
        pages.append(page_text(textpage.get_text_bounded()))
        textpage.close()
        page.close()
    pdf.close()
    return pages


def with_pdfminer(data: bytes) -> list[str]:
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LTTextContainer

    return ["".join(e.get_text() for e in page if isinstance(e, LTTextContainer)).strip()
            for page in extract_pages(io.BytesIO(data))]


def two_column_pdf() -> bytes:
    """A page set in two columns (fpdf2's text_columns), each sentence numbered, to see whether
    a library reads the left column to its end before the right one."""
    import fpdf

    pdf = fpdf.FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    with pdf.text_columns(ncols=2, gutter=8) as columns:
        columns.write(text=" ".join(f"Left{i:02d} alpha words continue here." for i in range(30)))
        columns.new_column()
        columns.write(text=" ".join(f"Right{i:02d} beta words continue there." for i in range(30)))
    return bytes(pdf.output())


def reads_columns_in_order(pages: list[str]) -> bool:
    marks = re.findall(r"(Left|Right)(\d\d)", " ".join(pages))
    expected = [("Left", f"{i:02d}") for i in range(30)] + [("Right", f"{i:02d}") for i in range(30)]
    return marks == expected


def best_time(fn, data: bytes, repeat: int) -> tuple[float, list[str]]:
    best, pages = float("inf"), []
    for _ in range(repeat):
        started = time.perf_counter()
        pages = fn(data)
        best = min(best, time.perf_counter() - started)
    return best, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pdfs", nargs="*", help="default: /usr/share/doc/**/*.pdf")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--index", action="store_true",
                        help="also index the PDFs with the default model (as `searcher index` does) and time it")
    args = parser.parse_args()
    files = args.pdfs or sorted(glob.glob("/usr/share/doc/**/*.pdf", recursive=True))
    if not files:
        raise SystemExit("no PDFs given and none under /usr/share/doc")
    print("| file | pages | pypdfium2 pages/s | pdfminer.six pages/s | characters (pdfium / pdfminer) | pdfminer's words found by pdfium |")
    print("| --- | --- | --- | --- | --- | --- |")
    totals = {"pages": 0, "pdfium": 0.0, "pdfminer": 0.0}
    for name in files:
        data = Path(name).read_bytes()
        t1, a = best_time(with_pdfium, data, args.repeat)
        t2, b = best_time(with_pdfminer, data, args.repeat)
        wa = Counter(w.lower() for w in WORDS.findall(" ".join(a)))
        wb = Counter(w.lower() for w in WORDS.findall(" ".join(b)))
        shared = sum((wa & wb).values()) / max(1, sum(wb.values()))
        totals["pages"] += len(a)
        totals["pdfium"] += t1
        totals["pdfminer"] += t2
        print(f"| {Path(name).name} | {len(a)} | {len(a) / t1:.0f} | {len(b) / t2:.0f} | "
              f"{sum(map(len, a)):,} / {sum(map(len, b)):,} | {shared:.3f} |")
    print(f"| all | {totals['pages']} | {totals['pages'] / totals['pdfium']:.0f} | "
          f"{totals['pages'] / totals['pdfminer']:.0f} | | |")
    try:
        page = two_column_pdf()
        print(f"\ntwo columns read in order (a generated page): pypdfium2 {reads_columns_in_order(with_pdfium(page))}, "
              f"pdfminer.six {reads_columns_in_order(with_pdfminer(page))}")
    except ImportError:
        print("\n(fpdf2 is not installed: no two-column check)")
    if args.index:
        import shutil
        import tempfile

        from searcher import Index

        with tempfile.TemporaryDirectory() as tmp:
            for name in files:
                shutil.copy(name, tmp)
            with Index.create(Path(tmp) / "idx", device="cpu") as index:
                index.search("warm up", k=1)
                report = index.add_paths([tmp])
            print(f"\nsearcher index, end to end (default model, CPU): {report.pages} pages, {report.chunks} chunks "
                  f"in {report.seconds:.1f} s: {report.pages / report.seconds:.1f} pages/s")


if __name__ == "__main__":
    main()
