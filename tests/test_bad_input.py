"""Every kind of bad input is skipped with a reason; the rest of the run goes on."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from searcher.encoding.chunker import Chunker
from searcher.readers.formats import READERS
from searcher.readers.documents import Document, Skipped
from searcher.readers.loaders import load_file
from searcher.readers.options import LoadOptions


def run(index, tmp_path, name: str, content: bytes | str, **opts):
    """Index a folder holding one good file and the bad one; return the report."""
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    (folder / "good.txt").write_text("A perfectly good document about lighthouses.")
    bad = folder / name
    bad.write_bytes(content if isinstance(content, bytes) else content.encode())
    return index.add_paths([folder], LoadOptions(**opts)), bad


def reasons(report):
    return {Path(s.path.split(":")[0]).name: s.reason for s in report.skipped}


def test_binary_file(fake_index, tmp_path):
    report, _ = run(fake_index, tmp_path, "data.txt", bytes(range(256)) * 4)
    assert report.added == 1 and "binary" in reasons(report)["data.txt"]


def test_other_encodings_are_read(fake_index, tmp_path):
    report, bad = run(fake_index, tmp_path, "legacy.txt", "Crème brûlée — déjà vu".encode("cp1252"))
    assert report.added == 2 and fake_index.get_document(str(bad))["text"] == "Crème brûlée — déjà vu"
    report, bad = run(fake_index, tmp_path, "wide.txt", "UTF-16 text here".encode("utf-16"))
    assert fake_index.get_document(str(bad))["text"] == "UTF-16 text here"


def test_invalid_utf8_is_decoded_not_crashed(fake_index, tmp_path):
    report, bad = run(fake_index, tmp_path, "broken.md", b"valid start \xff\xfe\xfd then more text")
    assert report.added == 2 and "then more text" in fake_index.get_document(str(bad))["text"]


def test_empty_file(fake_index, tmp_path):
    report, _ = run(fake_index, tmp_path, "empty.md", b"")
    assert report.added == 1 and reasons(report)["empty.md"] == "empty file"


def test_html_with_no_text(fake_index, tmp_path):
    report, _ = run(fake_index, tmp_path, "blank.html", "<html><body><script>x()</script><img src=a></body></html>")
    assert reasons(report)["blank.html"] == "HTML page has no visible text"


def test_file_over_size_limit(fake_index, tmp_path):
    report, _ = run(fake_index, tmp_path, "huge.txt", "word " * 1000, max_file_bytes=1000)
    assert "over the 1,000-byte limit" in reasons(report)["huge.txt"]


def test_unreadable_file(fake_index, tmp_path, monkeypatch):
    real = Path.read_bytes

    def read_bytes(self):
        if self.name == "locked.txt":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    report, _ = run(fake_index, tmp_path, "locked.txt", "secret")
    assert report.added == 1 and "Permission denied" in reasons(report)["locked.txt"]


def test_dangling_link_and_symlink_loop(fake_index, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "sub").mkdir()
    (folder / "sub" / "up").symlink_to(folder)
    (folder / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    report, _ = run(fake_index, tmp_path, "ok.md", "# fine")
    r = reasons(report)
    assert "symlink loop" in r["up"] and "not a regular file" in r["dangling.txt"]
    assert report.added == 2


def test_jsonl_malformed_line_keeps_good_lines(fake_index, tmp_path):
    report, _ = run(fake_index, tmp_path, "rows.jsonl", '{"id": "1", "text": "one"}\n{"id": "2", "te\n{"id": "3", "text": "three"}\n')
    assert report.added == 3  # good.txt and rows 1, 3
    [skip] = report.skipped
    assert skip.path.endswith("rows.jsonl:2") and "malformed JSON" in skip.reason


def test_csv_without_text_column(fake_index, tmp_path):
    report, _ = run(fake_index, tmp_path, "table.csv", "name,age\nann,3\n")
    assert report.added == 1 and "no text column" in reasons(report)["table.csv"]


def test_duplicate_ids_in_one_run(fake_index, tmp_path):
    report, _ = run(fake_index, tmp_path, "dups.jsonl", '{"id": "x", "text": "first"}\n{"id": "x", "text": "second"}\n')
    assert report.added == 2 and "duplicate id 'x'" in report.skipped[0].reason
    assert fake_index.get_document("x")["text"] == "first"


def test_whitespace_and_control_characters_only(fake_index, tmp_path):
    report, _ = run(fake_index, tmp_path, "ctrl.txt", " \t\x01\x02\x7f\n\u200b\n")
    assert report.added == 1 and "no text" in reasons(report)["ctrl.txt"]


def test_very_long_line_without_spaces(fake_index, tmp_path):
    report, bad = run(fake_index, tmp_path, "long.txt", "a" * 300_000 + "b" * 300_000)
    assert report.added == 2 and fake_index.get_document(str(bad)) is not None
    for chunk in fake_index.store.chunks(fake_index.store.chunk_ids_of([str(bad)])).values():
        assert len(chunk.text) > 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000), suffix=st.sampled_from(sorted(READERS)))
def test_loaders_never_raise_on_arbitrary_bytes(tmp_path, data, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    for item in load_file(path):
        assert isinstance(item, (Document, Skipped))
        if isinstance(item, Document):
            assert isinstance(item.text, str) and item.text.strip()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=600), max_tokens=st.integers(8, 64), overlap_share=st.floats(0, 0.5))
def test_chunker_on_arbitrary_text(tokenizer, text, max_tokens, overlap_share):
    chunker = Chunker(tokenizer, max_tokens, int((max_tokens - 2) * overlap_share))
    chunks = chunker.split(text)
    for chunk in chunks:
        assert chunk.text == text[chunk.start:chunk.end]
        assert 0 < len(chunk.ids) <= max_tokens - 2
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
