"""Run damaged-file cases in a process of their own (tests/test_faults.py starts it), so that a
crash of the interpreter (a segfault, an abort) or a hang is seen by the test, not suffered by it.

    python -m tests.damage_worker PRISTINE_INDEX SCRATCH CASES_JSON

For each case (`{"id", "target", "damage", "seed"}`) it copies the pristine index, damages one
file, then opens it, searches it (dense, keyword, hybrid), checks it and repairs it, and prints
one JSON line: "start <id>" before, the outcome after (flushed, so the parent knows which case
was running when a process died).
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import traceback
from pathlib import Path

QUERIES = ("kittens chase mice", "engine petrol wheels", "salt water coral reefs")
MODES = ("dense", "keyword", "hybrid")


def target_files(index_dir: Path, target: str) -> list[Path]:
    """The files of one kind in an index folder."""
    if target == "content.db":
        return [index_dir / "content.db"]
    if target == "manifest":
        return [index_dir / "manifest.json"]
    if target == "vectors":
        return sorted(index_dir.glob("vectors.*.faiss"))
    if target.startswith("tantivy:"):  # one file of the tantivy folder, by its kind (meta.json, or a segment's suffix)
        kind = target.split(":", 1)[1]
        folder = index_dir / "keywords.tantivy"
        if kind in ("meta.json", ".managed.json"):
            return [folder / kind]
        return sorted(p for p in folder.iterdir() if p.suffix == "." + kind)
    raise ValueError(target)


def damage(path: Path, how: str, seed: int) -> str:
    """Truncate to 0 or to half, or flip one random bit at each of 4 seeded random positions."""
    data = bytearray(path.read_bytes())
    if how == "truncate0":
        path.write_bytes(b"")
        return "truncated to 0 bytes"
    if how == "truncate_half":
        path.write_bytes(bytes(data[: len(data) // 2]))
        return f"truncated to {len(data) // 2} of {len(data)} bytes"
    rng = random.Random(seed)
    where = []
    for _ in range(4):
        at, bit = rng.randrange(len(data)), rng.randrange(8)
        data[at] ^= 1 << bit
        where.append(f"{at}:{bit}")
    path.write_bytes(bytes(data))
    return "bits flipped at " + ", ".join(where)


def describe(e: BaseException) -> dict:
    from searcher import IndexCorruptError

    return {"type": type(e).__name__, "corrupt": isinstance(e, IndexCorruptError),  # DatabaseCorruptError too
            "searcher": _is_searcher_error(e), "message": str(e)[:3000],
            "where": "".join(traceback.format_exception(e)[-3:])[:1200]}


def _is_searcher_error(e: BaseException) -> bool:
    from searcher import SearcherError

    return isinstance(e, SearcherError)


def run_case(pristine: Path, scratch: Path, case: dict, encoder) -> dict:
    from searcher import Index
    from searcher.index.check import check_index

    folder = scratch / case["id"].replace("/", "_").replace(":", "_")
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(pristine, folder)
    files = target_files(folder, case["target"])
    out: dict = {"id": case["id"], "damaged": {}}
    for p in files:
        out["damaged"][p.name] = damage(p, case["damage"], case["seed"])
    result: dict = {}
    try:
        index = Index.open(folder, encoder=encoder)
        try:
            for mode in MODES:
                result[mode] = [[h.doc_id for h in index.search(q, k=5, mode=mode)] for q in QUERIES]
        finally:
            index.close()
        out["open"] = "ok"
    except BaseException as e:  # noqa: BLE001 - what the engine let escape is the finding
        out["open"] = describe(e)
    out["hits"] = result
    try:
        report = check_index(folder)
        out["check"] = {"ok": report.ok, "problems": report.problems, "notes": report.notes}
    except BaseException as e:  # noqa: BLE001
        out["check"] = {"error": describe(e)}
    try:
        repaired = check_index(folder, repair=True, device="cpu")
        out["repair"] = {"ok": repaired.ok, "problems": repaired.problems, "repaired": repaired.repaired}
        if repaired.ok:
            index = Index.open(folder, encoder=encoder)
            try:
                out["after_repair"] = {mode: [[h.doc_id for h in index.search(q, k=5, mode=mode)] for q in QUERIES]
                                       for mode in MODES}
            finally:
                index.close()
            final = check_index(folder)
            out["after_repair_check"] = {"ok": final.ok, "problems": final.problems}
    except BaseException as e:  # noqa: BLE001
        out["repair"] = {"error": describe(e)}
    shutil.rmtree(folder, ignore_errors=True)
    return out


def main(argv: list[str]) -> None:
    import searcher.index.check

    from tests.fake_encoder import FakeEncoder

    pristine, scratch, cases = Path(argv[0]), Path(argv[1]), json.loads(Path(argv[2]).read_text())
    encoder = FakeEncoder()
    searcher.index.check.get_encoder = lambda *a, **k: encoder  # repair re-encodes with the fake model
    for case in cases:
        print(json.dumps({"start": case["id"]}), flush=True)
        print(json.dumps({"result": run_case(pristine, scratch, case, encoder)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
