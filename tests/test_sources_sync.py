"""The sync rules of sources (searcher/index/sources.py) on an in-memory source and the fake
encoder: what is read, kept, updated and pruned, a listing that fails, an item that cannot be
read, rows that leave an item, a sharded index; the registry; and the contract suite run
against the in-memory source too (tests/source_contract.py: how another kind plugs in)."""

from __future__ import annotations

import pytest

from searcher.cluster.sharded import ShardedIndex
from searcher.cluster.shards import split_index
from searcher.index.sources import SOURCES_FILE, read_sources, sync, sync_recorded, sync_source
from searcher.readers.documents import Skipped
from searcher.readers.options import LoadOptions
from searcher.sources import Item, SourceError, open_source, register
from searcher.sources.base import check_secret_file

from .source_contract import SourceContract

NO_WORKERS = LoadOptions(workers=0)


class Memory:
    """A source over a dict of name -> bytes (its `world` too); `fail_listing` and `unreadable`
    make it fail as a whole or for one item."""

    scheme = "mem"

    def __init__(self, name: str = "box"):
        self.url = f"mem://{name}"
        self.options = {}
        self.files: dict[str, bytes] = {}
        self.versions: dict[str, int] = {}
        self.fail_listing = False
        self.unlisted: set[str] = set()  # listed as Skipped
        self.unreadable: set[str] = set()
        self.reads: list[str] = []

    # the world
    def source(self):
        return self

    def put(self, name, text):
        self.files[name] = text.encode() if isinstance(text, str) else text
        self.versions[name] = self.versions.get(name, 0) + 1

    def remove(self, name):
        del self.files[name]

    def put_broken(self, name):
        self.put(name, b"%PDF-1.4 not a PDF")

    def key(self, name):
        return f"{self.url}/{name}"

    # the Source
    def items(self):
        if self.fail_listing:
            raise SourceError(f"cannot list {self.url}: the server is down")
        for name in sorted(self.files):
            if name in self.unlisted:
                yield Skipped(self.key(name), "permission denied")
            else:
                yield Item(self.key(name), f"v{self.versions[name]}", name, size=len(self.files[name]), folder=self.url)

    def read(self, item):
        name = item.key.rsplit("/", 1)[1]
        self.reads.append(name)
        if name in self.unreadable:
            raise SourceError("cannot read it: access denied")
        return self.files[name]

    def close(self):
        pass


class TestMemoryContract(SourceContract):
    @pytest.fixture
    def world(self):
        return Memory()


@pytest.fixture
def box():
    return Memory()


def ids(index) -> set[str]:
    return set(index.store.document_ids())


def test_unchanged_items_are_not_read_changed_ones_are_and_gone_ones_pruned(fake_index, box):
    box.put("a.txt", "Kittens purr when they are content.")
    box.put("b.md", "# Gardens\n\nTomatoes need sun.")
    box.put("rows.jsonl", '{"id": "r1", "text": "first row"}\n{"id": "r2", "text": "second row", '
                          '"source_url": "mem://elsewhere", "source_version": "mine"}\n')  # fields the sync owns
    report = sync_source(fake_index, box, NO_WORKERS)
    assert (report.added, report.unchanged, report.removed) == (4, 0, 0)
    assert ids(fake_index) == {box.key("a.txt"), box.key("b.md"), "r1", "r2"}

    box.reads.clear()
    report = sync_source(fake_index, box, NO_WORKERS)
    assert (report.added, report.updated, report.unchanged, report.chunks) == (0, 0, 4, 0) and box.reads == []

    box.put("rows.jsonl", '{"id": "r1", "text": "first row"}\n')  # a row left the item
    box.remove("b.md")
    box.put("a.txt", "Kittens purr when they are content.")  # a new version, the same content
    report = sync_source(fake_index, box, NO_WORKERS)
    assert sorted(box.reads) == ["a.txt", "rows.jsonl"]
    assert (report.added, report.updated, report.unchanged, report.removed, report.chunks) == (0, 0, 2, 2, 0)
    assert ids(fake_index) == {box.key("a.txt"), "r1"}
    assert fake_index.get_document(box.key("a.txt"))["metadata"]["source_version"] == "v2"  # no encoding, row moved
    box.reads.clear()
    assert sync_source(fake_index, box, NO_WORKERS).unchanged == 2 and box.reads == []


def test_what_cannot_be_read_keeps_its_documents_and_the_run_goes_on(fake_index, box):
    box.put("a.txt", "Kittens purr when they are content.")
    box.put("b.txt", "Sailing boats cross the harbour.")
    box.put("c.txt", "Owls hunt at night.")
    sync_source(fake_index, box, NO_WORKERS)
    box.put("a.txt", "Changed, but it cannot be read now.")
    box.put("b.txt", "Changed, and not listed now.")
    box.put("c.txt", "Owls hunt mice at night on silent wings.")
    box.unreadable.add("a.txt")
    box.unlisted.add("b.txt")
    box.put("z.xyz", "no reader for this")
    report = sync_source(fake_index, box, NO_WORKERS)
    assert report.updated == 1 and report.removed == 0
    reasons = {s.path: s.reason for s in report.skipped}
    assert reasons == {box.key("a.txt"): "cannot read it: access denied", box.key("b.txt"): "permission denied",
                       box.key("z.xyz"): "unsupported file type '.xyz'"}
    assert fake_index.get_document(box.key("a.txt"))["text"] == "Kittens purr when they are content."
    assert fake_index.get_document(box.key("b.txt"))["text"] == "Sailing boats cross the harbour."
    box.unreadable.clear()  # read at the next sync, its version being still the old one
    assert sync_source(fake_index, box, NO_WORKERS).updated == 1
    assert fake_index.get_document(box.key("a.txt"))["text"].startswith("Changed, but")


def test_a_listing_that_fails_prunes_nothing_and_is_recorded(fake_index, box, monkeypatch):
    from searcher.sources import base

    monkeypatch.setattr(base, "_FACTORIES", dict(base._FACTORIES))  # the registration ends with the test
    register("mem", lambda url, **options: box)
    box.put("a.txt", "Kittens purr when they are content.")
    sync(fake_index, "mem://box", options=NO_WORKERS)
    box.remove("a.txt")
    box.fail_listing = True
    with pytest.raises(SourceError, match="the server is down"):
        sync(fake_index, "mem://box", options=NO_WORKERS)
    assert ids(fake_index) == {box.key("a.txt")}
    [record] = read_sources(fake_index.path)
    assert record["error"] == "cannot list mem://box: the server is down" and record["counts"]["added"] == 1
    assert [error for _, _, error in sync_recorded(fake_index, NO_WORKERS)] == ["cannot list mem://box: the server is down"]
    box.fail_listing = False
    [(url, report, error)] = sync_recorded(fake_index, NO_WORKERS)
    assert (url, report.removed, error) == ("mem://box", 1, None) and not ids(fake_index)
    assert read_sources(fake_index.path)[0]["error"] is None and read_sources(fake_index.path)[0]["documents"] == 0


def test_a_sharded_index_syncs_each_document_to_its_shard(tmp_path, fake_encoder, fake_index, box):
    split_index(fake_index.path, tmp_path / "sharded", 2)
    idx = ShardedIndex.open(tmp_path / "sharded", encoder=fake_encoder)
    try:
        for n in range(6):
            box.put(f"{n}.txt", f"Document number {n} about a topic of its own.")
        assert sync_source(idx, box, NO_WORKERS).added == 6
        assert all(len(shard) for shard in idx.shards) and len(idx) == 6
        box.remove("3.txt")
        report = sync_source(idx, box, NO_WORKERS)
        assert (report.unchanged, report.removed, len(idx)) == (5, 1, 5)
    finally:
        idx.close()


def test_the_registry_and_the_secret_file_rule(tmp_path):
    with pytest.raises(SourceError, match="not a source URL"):
        open_source("/a/path")
    with pytest.raises(SourceError, match="no source reads gopher://"):
        open_source("gopher://x")
    with pytest.raises(SourceError, match="do not take these options"):
        open_source("s3://bucket", {"colour": "red"})
    secret = tmp_path / "creds"
    secret.write_text("[default]\n")
    secret.chmod(0o604)
    with pytest.raises(SourceError, match="mode 0604.*chmod 600"):
        check_secret_file(secret)
    secret.chmod(0o600)
    assert check_secret_file(secret) == secret
    with pytest.raises(SourceError, match="cannot read the credentials file"):
        check_secret_file(tmp_path / "missing")
    assert not (tmp_path / SOURCES_FILE).exists()


def test_a_backup_carries_the_record_of_the_sources(tmp_path, fake_encoder, fake_index, box, monkeypatch):
    from searcher.cluster.backup import backup, restore
    from searcher.sources import base

    monkeypatch.setattr(base, "_FACTORIES", dict(base._FACTORIES))
    register("mem", lambda url, **options: box)
    box.put("a.txt", "Kittens purr when they are content.")
    sync(fake_index, "mem://box", options=NO_WORKERS)
    split_index(fake_index.path, tmp_path / "sharded", 2)
    sharded = ShardedIndex.open(tmp_path / "sharded", encoder=fake_encoder)
    try:
        sync(sharded, "mem://box", options=NO_WORKERS)
    finally:
        sharded.close()
    for folder in (fake_index.path, tmp_path / "sharded"):
        backup(folder, tmp_path / f"{folder.name}-bk")
        restore(tmp_path / f"{folder.name}-bk", tmp_path / f"{folder.name}-back")
        assert read_sources(tmp_path / f"{folder.name}-back") == read_sources(folder) != []


def test_a_document_a_killed_run_left_unfinished_is_read_again(fake_index, box):
    from searcher.index.writer import UNFINISHED

    box.put("a.txt", "Kittens purr when they are content.")
    sync_source(fake_index, box, NO_WORKERS)
    with fake_index.live.write_session() as store:  # as a run killed between a big document's parts leaves it
        store.db.execute("update documents set content_hash = ? || content_hash", [UNFINISHED])
    box.reads.clear()
    report = sync_source(fake_index, box, NO_WORKERS)
    assert box.reads == ["a.txt"] and report.updated == 1
    box.reads.clear()
    assert sync_source(fake_index, box, NO_WORKERS).unchanged == 1 and box.reads == []
