"""A sharded index on disk: N ordinary index folders and the manifest that names them.

    DIR/shards.json     format, shard count, the hash rule, the shard folders in order, the
                        model (name, fingerprint, dimension), keyword engine and index type,
                        and how keyword statistics are kept across shards
    DIR/shard-0/ ...    each an ordinary searcher index (manifest.json, content.db, vectors)

A document lives in exactly one shard, `shard_of(id, N)`: the first 8 bytes of the SHA-256 of
its id (UTF-8), big-endian, modulo N. Stable across processes, machines and Python versions
(Python's hash() is salted per process), so any writer routes a document where every other
writer and reader expects it.

`split_index` makes a sharded index from a single one without re-encoding anything: each
shard gets the source's rows as stored (the same document and chunk ids, content hashes and
times) and a copy of the source's FAISS index with the other shards' chunk ids removed (the
exact vectors, or ivfpq's codes with their trained quantiser), re-planned for its size; its
keyword index is built from its chunks. It holds the source's write lock throughout (no
commit lands halfway), writes everything into a temporary folder beside DIR and renames it
into place last, so a crash leaves DIR absent (and a `.DIR.tmp-*` folder to delete), never
half a sharded index.

`check_sharded` checks the manifest, every shard (searcher/index/check.py) and the routing (every
document in the shard its id hashes to). Searching and writing: searcher/cluster/sharded.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from searcher.index.check import CheckReport, check_index, repair_hint
from searcher.errors import IndexCorruptError, IndexExistsError, IndexNotFoundError, SearcherError
from searcher.storage.files import fsync_dir, write_atomic
from searcher.storage.folder import (DATABASE, SHARDS_MANIFEST, exclusive_lock, load_generation, manifest_checksum, read_manifest,
                     write_manifest, write_vectors)
from searcher.storage.keywords import open_keywords
from searcher.sanitize import document_id
from searcher.storage.store import ContentStore, readable
from searcher.sanitize import one_of

SHARDS_FORMAT = 1
HASH_RULE = "sha256-64-mod"  # the first 8 bytes of SHA-256(id as UTF-8), big-endian, mod the shard count
MAX_SHARDS = 256
KEYWORD_STATISTICS = ("dfs", "shard")  # see searcher/cluster/sharded.py
DEFAULT_KEYWORD_STATISTICS = "dfs"
COPY_BATCH = 2000  # rows read and written at a time while splitting
_FOLDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def shard_of(doc_id, count: int) -> int:
    """The shard (0..count-1) that document `doc_id` lives in; ids are taken as stored
    (searcher/sanitize.py document_id), so any value routes as the index will store it."""
    digest = hashlib.sha256(document_id(doc_id).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count


def check_shard_count(shards) -> int:
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"the number of shards must be an integer from 1 to {MAX_SHARDS}, not {shards!r}")
    return shards


def check_keyword_statistics(name: str | None) -> str:
    return one_of(name, KEYWORD_STATISTICS, DEFAULT_KEYWORD_STATISTICS, "keyword statistics")


def is_sharded(path) -> bool:
    """Whether folder `path` holds a sharded index (its shards.json)."""
    return (Path(path) / SHARDS_MANIFEST).is_file()


def shard_folder_name(number: int) -> str:
    return f"shard-{number}"


# -- the manifest -----------------------------------------------------------------------------
def write_layout(path: Path, layout: dict) -> None:
    """Write shards.json atomically, with the checksum of its fields (as manifest.json has)."""
    layout = {**{k: v for k, v in layout.items() if k != "checksum"}, "checksum": manifest_checksum(layout)}
    write_atomic(Path(path) / SHARDS_MANIFEST, lambda tmp: tmp.write_text(json.dumps(layout, indent=2)))


def read_layout(path) -> dict:
    """A sharded index's shards.json, checked: IndexNotFoundError without one, IndexCorruptError
    naming what is wrong (an unknown format or hash rule, a count that does not match the
    folders, a folder name that is not a plain name, a changed field)."""
    path = Path(path)
    mf = path / SHARDS_MANIFEST
    if not mf.is_file():
        raise IndexNotFoundError(f"no sharded index in {path} (no {SHARDS_MANIFEST}); make one with `searcher shard`")
    try:
        layout = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise IndexCorruptError(f"{mf} cannot be read ({e}); restore it from a backup") from e
    if not isinstance(layout, dict):
        raise IndexCorruptError(f"{mf} is not a JSON object")
    if layout.get("format_version") != SHARDS_FORMAT:
        raise IndexCorruptError(f"{mf} has format {layout.get('format_version')!r}, this searcher reads {SHARDS_FORMAT}")
    if layout.get("hash") != HASH_RULE:
        raise IndexCorruptError(f"{mf}: unknown hash rule {layout.get('hash')!r} (this searcher routes by {HASH_RULE})")
    folders = layout.get("folders")
    count = layout.get("shards")
    if not isinstance(folders, list) or not isinstance(count, int) or isinstance(count, bool) \
            or count != len(folders) or not 1 <= count <= MAX_SHARDS:
        raise IndexCorruptError(f"{mf}: 'shards' ({count!r}) must count the 'folders' listed ({folders!r})")
    for name in folders:
        if not isinstance(name, str) or not _FOLDER.fullmatch(name):
            raise IndexCorruptError(f"{mf}: {name!r} is not a shard folder name (a plain name inside {path})")
    if len(set(folders)) != len(folders):
        raise IndexCorruptError(f"{mf}: a shard folder is listed twice")
    if layout.get("keyword_statistics", DEFAULT_KEYWORD_STATISTICS) not in KEYWORD_STATISTICS:
        raise IndexCorruptError(f"{mf}: unknown keyword_statistics {layout['keyword_statistics']!r}")
    if "checksum" in layout and layout["checksum"] != manifest_checksum(layout):
        raise IndexCorruptError(f"{mf} does not match its checksum: the file is damaged (or was edited by hand: "
                                f"if on purpose, delete its \"checksum\" field)")
    return layout


def shard_paths(path, layout: dict) -> list[Path]:
    return [Path(path) / name for name in layout["folders"]]


# -- splitting ----------------------------------------------------------------------------------
@dataclass
class SplitReport:
    """What `split_index` made."""

    path: str
    source: str
    documents: list[int] = field(default_factory=list)  # per shard
    chunks: list[int] = field(default_factory=list)
    factories: list[str] = field(default_factory=list)  # each shard's FAISS index
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"path": self.path, "source": self.source, "shards": len(self.documents),
                "documents": self.documents, "chunks": self.chunks, "index_factories": self.factories,
                "seconds": round(self.seconds, 2)}

    def summary(self) -> str:
        lines = [f"{self.path}: {len(self.documents)} shards of {self.source}, {sum(self.documents)} documents, "
                 f"{sum(self.chunks)} chunks, nothing re-encoded ({self.seconds:.1f}s)"]
        lines += [f"  {shard_folder_name(i)}: {d} documents, {c} chunks ({f})"
                  for i, (d, c, f) in enumerate(zip(self.documents, self.chunks, self.factories))]
        return "\n".join(lines)


def check_out_folder(source: Path, out: Path) -> None:
    """`out` may be made: absent or an empty folder, and neither inside the source nor around it."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise IndexExistsError(f"{out} already exists and is not an empty folder: give a new --out folder")
    src, dst = source.resolve(), out.resolve()
    if src == dst or src in dst.parents or dst in src.parents:
        raise ValueError(f"--out {out} must lie outside the index it splits ({source}), and not around it")


def split_index(source, out, shards: int, keyword_statistics: str | None = None,
                progress: Callable[[str], None] | None = None) -> SplitReport:
    """Split the index in folder `source` into `shards` shards in the new folder `out` (see the
    module doc); the source is left as it was. `progress(message)` hears each step."""
    started = time.perf_counter()
    source, out = Path(source), Path(out)
    shards = check_shard_count(shards)
    keyword_statistics = check_keyword_statistics(keyword_statistics)
    if is_sharded(source):
        raise ValueError(f"{source} is already a sharded index; split the single index it was made from")
    manifest = read_manifest(source)  # IndexNotFoundError when SRC is no index
    check_out_folder(source, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    say = progress or (lambda message: None)
    try:
        with exclusive_lock(source), readable(source / DATABASE):
            report = _split(source, manifest, tmp, shards, say)
        report.path, report.source = str(out), str(source)
        write_layout(tmp, {
            "format_version": SHARDS_FORMAT, "shards": shards, "hash": HASH_RULE,
            "folders": [shard_folder_name(i) for i in range(shards)],
            "model": manifest["model"], "model_fingerprint": manifest["model_fingerprint"],
            "dimension": manifest["dimension"], "keyword_engine": manifest.get("keyword_engine", "fts5"),
            "index_type": manifest.get("index_type", "flat"), "keyword_statistics": keyword_statistics,
            "split_from": str(source.resolve()),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })
        fsync_dir(tmp)
        if out.exists():
            out.rmdir()  # checked empty above
        os.rename(tmp, out)
        fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.seconds = time.perf_counter() - started
    return report


def _split(source: Path, manifest: dict, tmp: Path, count: int, say) -> SplitReport:
    """Under the source's write lock: every shard folder written in `tmp`, each verified."""
    store = ContentStore(source / DATABASE, readonly=True)
    stores: list[ContentStore] = []
    try:
        generation, vectors = load_generation(source, manifest, store)  # checksum and counts verified
        say(f"splitting {store.count_documents()} documents, {len(vectors)} vectors (generation {generation}) "
            f"into {count} shards")
        folders = [tmp / shard_folder_name(i) for i in range(count)]
        for folder in folders:
            folder.mkdir()
            stores.append(ContentStore(folder / DATABASE, create=True))
        report = SplitReport("", "", [0] * count, [0] * count)
        for rows in store.stored_rows("documents", COPY_BATCH):
            parts: list[list[tuple]] = [[] for _ in range(count)]
            for row in rows:
                parts[shard_of(row[0], count)].append(row)
            for i, part in enumerate(parts):
                if part:
                    stores[i].insert_stored_rows("documents", part)
                    report.documents[i] += len(part)
        chunk_ids: list[list[int]] = [[] for _ in range(count)]
        last_doc, last_shard = None, 0
        for rows in store.stored_rows("chunks", COPY_BATCH):
            parts = [[] for _ in range(count)]
            for row in rows:
                if row[1] != last_doc:  # a document's chunks mostly follow one another
                    last_doc, last_shard = row[1], shard_of(row[1], count)
                parts[last_shard].append(row)
                chunk_ids[last_shard].append(row[0])
            for i, part in enumerate(parts):
                if part:
                    stores[i].insert_stored_rows("chunks", part)
        next_chunk_id = store.state("next_chunk_id")
        for i, (folder, shard_store) in enumerate(zip(folders, stores)):
            report.chunks[i] = len(chunk_ids[i])
            shard_manifest = {k: v for k, v in manifest.items() if k != "checksum"}
            shard_manifest["created_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            others = [np.asarray(ids, np.int64) for j, ids in enumerate(chunk_ids) if j != i]
            part = vectors.copy()
            part.remove(np.concatenate(others) if others else np.zeros(0, np.int64))
            part = part.prepare_commit(shard_manifest)  # re-planned for its size (ivf lists, hnsw compaction)
            if len(part) != len(chunk_ids[i]):
                raise IndexCorruptError(f"{source}: shard {i} got {len(part)} vectors for {len(chunk_ids[i])} "
                                        f"chunks; run `searcher check --index {source}`")
            shard_manifest["index_factory"] = part.describe()
            checksums = write_vectors(folder, 1, part)
            with shard_store.db.atomic():
                shard_store.set_state(1, next_chunk_id, checksums)
            open_keywords(folder, shard_manifest).prepare(shard_store)  # built from its chunks
            write_manifest(folder, shard_manifest)  # last: a folder without one is not an index yet
            report.factories.append(part.describe())
            say(f"{shard_folder_name(i)}: {report.documents[i]} documents, {report.chunks[i]} chunks")
        total = store.count_chunks()
        if sum(report.chunks) != total or sum(report.documents) != store.count_documents():
            raise IndexCorruptError(f"{source}: the shards hold {sum(report.documents)} documents and "
                                    f"{sum(report.chunks)} chunks, the index {store.count_documents()} and {total}")
        return report
    finally:
        for shard_store in stores:
            shard_store.close()
        store.close()


# -- checking ---------------------------------------------------------------------------------
@dataclass
class ShardedCheckReport:
    """`check` of a sharded index: the manifest's problems, each shard's CheckReport, and the
    routing (documents in a shard their id does not hash to)."""

    path: str
    problems: list[str] = field(default_factory=list)
    shards: list[tuple[str, CheckReport]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.ok for _, r in self.shards)

    @property
    def repaired(self) -> list[str]:
        return [f"{name}: {line}" for name, r in self.shards for line in r.repaired]

    def repair_hint(self) -> str | None:
        """As CheckReport's; the sharded index's own problems (its manifest, the routing) are
        beyond repair."""
        shards = [r for _, r in self.shards]
        return repair_hint(len(self.problems) + sum(len(r.problems) for r in shards),
                           len(self.problems) + sum(len(r.beyond_repair) for r in shards),
                           any(r.salvage for r in shards))

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "problems": self.problems,
                "documents": sum(r.documents for _, r in self.shards),
                "chunks": sum(r.chunks for _, r in self.shards),
                "shards": {name: r.to_dict() for name, r in self.shards}}

    def summary(self) -> str:
        head = "OK" if self.ok else "problems"
        documents = sum(r.documents for _, r in self.shards)
        lines = [f"{self.path}: {head} ({len(self.shards)} shards, {documents} documents)"]
        lines += [f"  problem: {p}" for p in self.problems]
        for _, r in self.shards:
            lines += ["  " + line for line in r.summary().splitlines()]
        return "\n".join(lines)


def check_sharded(path, repair: bool = False, device: str = "auto") -> ShardedCheckReport:
    """Check (with `repair`, repair: searcher/index/check.py) every shard of the sharded index in
    `path`, its manifest (the shards' model and settings must be the manifest's) and the
    routing. Misrouted documents are reported, never moved: delete them and index them again."""
    path = Path(path)
    report = ShardedCheckReport(str(path))
    try:
        layout = read_layout(path)
    except SearcherError as e:
        report.problems.append(str(e))
        return report
    count = layout["shards"]
    for number, folder in enumerate(shard_paths(path, layout)):
        shard = check_index(folder, repair=repair, device=device)
        report.shards.append((folder.name, shard))
        try:
            manifest = read_manifest(folder)
        except SearcherError:
            continue  # the shard's own report says so
        for name in ("model_fingerprint", "dimension", "keyword_engine"):
            if manifest.get(name, "fts5" if name == "keyword_engine" else None) != layout.get(name):
                report.problems.append(f"{folder.name}: its {name} is {manifest.get(name)!r}, the sharded "
                                       f"index's {layout.get(name)!r}")
        if not shard.ok:
            continue
        try:
            store = ContentStore(folder / DATABASE, readonly=True)
        except SearcherError as e:
            report.problems.append(f"{folder.name}: {e}")
            continue
        try:
            stray = [d for d in store.document_ids() if shard_of(d, count) != number]
        finally:
            store.close()
        if stray:
            home = shard_folder_name(shard_of(stray[0], count))
            report.problems.append(
                f"{folder.name} holds {len(stray)} documents whose ids hash to other shards (e.g. {stray[0]!r}, "
                f"which belongs in {home}): searches still find them, but a new version of one would land in "
                f"its own shard beside the old; delete them (`searcher delete`) and index their files again")
    return report
