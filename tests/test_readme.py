"""The README's Python example runs as written (in a scratch folder)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_python_example_runs(tmp_path, monkeypatch, encoder):
    [example] = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "pets.md").write_text("# Pets\n\nA kitten is a young cat.")
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    hits = namespace["hits"]
    assert hits and hits[0].doc_id in ("a1", str(tmp_path / "docs" / "pets.md"))
    assert len(namespace["index"]) == 1  # a1 was deleted at the end of the example
