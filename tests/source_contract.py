"""The contract every source (searcher/sources/base.py) keeps, one suite run against each kind.

A kind's test module subclasses `SourceContract` and gives a `world` fixture: an object with

    source() -> Source          a freshly opened source over the world's items
    put(name, text) -> None      add an item, or change it when it is there (name: "a.txt", "b.md";
                                 a kind whose items have no file names may ignore the suffix)
    remove(name) -> None         delete it
    put_broken(name) -> None     an item that cannot be read or whose bytes no reader takes
    key(name) -> str             the key the source gives the item `name`

with no items in it at the start (a fresh bucket, mailbox or site per test). IMAP and web
sources plug in the same way: a class `TestImapContract(SourceContract)` with its `world`.
"""

from __future__ import annotations

import pytest

from searcher.readers.documents import Document, Skipped
from searcher.readers.loaders import load_item
from searcher.readers.options import LoadOptions
from searcher.sources import Item, Source, SourceError


def listing(source) -> dict[str, Item]:
    items = list(source.items())
    assert all(isinstance(i, (Item, Skipped)) for i in items), items
    found = [i for i in items if isinstance(i, Item)]
    assert len({i.key for i in found}) == len(found), "keys are unique"
    return {i.key: i for i in found}


class SourceContract:
    """The behaviours every source must have (see the module's docstring)."""

    def test_it_is_a_source_whose_url_and_options_hold_no_secret(self, world):
        source = world.source()
        assert isinstance(source, Source)
        # a user name may say whose account it is (imaps://ann@host/INBOX), a password never
        netloc = source.url.split("://", 1)[1].split("/", 1)[0]
        assert "://" in source.url and ":" not in netloc.rpartition("@")[0]
        assert all(not any(w in k.lower() for w in ("secret", "password", "token")) for k in source.options)
        source.close()

    def test_it_lists_items_with_stable_keys_and_versions(self, world):
        world.put("a.txt", "Kittens purr when they are content.")
        world.put("b.md", "# Gardens\n\nTomatoes need sun and water.")
        first, second = listing(world.source()), listing(world.source())
        assert set(first) == {world.key("a.txt"), world.key("b.md")}
        assert {k: i.version for k, i in first.items()} == {k: i.version for k, i in second.items()}
        assert all(i.version and i.name for i in first.values())

    def test_a_changed_item_gets_a_new_version_and_the_others_keep_theirs(self, world):
        world.put("a.txt", "Kittens purr when they are content.")
        world.put("b.md", "# Gardens\n\nTomatoes need sun and water.")
        before = listing(world.source())
        world.put("a.txt", "Puppies bark when they are excited, and wag their tails.")
        after = listing(world.source())
        assert after[world.key("a.txt")].version != before[world.key("a.txt")].version
        assert after[world.key("b.md")].version == before[world.key("b.md")].version

    def test_a_deleted_item_is_no_longer_listed(self, world):
        world.put("a.txt", "Kittens purr when they are content.")
        world.put("b.md", "# Gardens\n\nTomatoes need sun and water.")
        world.remove("a.txt")
        assert set(listing(world.source())) == {world.key("b.md")}

    def test_read_gives_bytes_the_readers_take(self, world):
        world.put("a.txt", "Kittens purr when they are content.")
        source = world.source()
        [item] = listing(source).values()
        data = source.read(item)
        assert isinstance(data, bytes)
        docs = [d for d in load_item(item.key, item.name, data, {}, LoadOptions(workers=0)) if isinstance(d, Document)]
        assert docs and docs[0].source == item.key and "Kittens purr" in docs[0].text
        source.close()

    def test_a_broken_item_does_not_stop_the_listing_or_the_others(self, world):
        world.put("a.txt", "Kittens purr when they are content.")
        world.put_broken("broken.pdf")
        world.put("c.txt", "Sailing boats cross the harbour.")
        source = world.source()
        items = listing(source)
        assert {world.key("a.txt"), world.key("c.txt")} <= set(items)
        read = {}
        for key, item in items.items():
            try:
                read[key] = load_item(key, item.name, source.read(item), {}, LoadOptions(workers=0))
            except SourceError as e:  # the item alone fails, with its reason
                read[key] = [Skipped(key, str(e))]
        assert any(isinstance(d, Document) for d in read[world.key("a.txt")])
        assert any(isinstance(d, Document) for d in read[world.key("c.txt")])
        broken = world.key("broken.pdf")
        assert broken not in read or all(isinstance(d, Skipped) and d.reason for d in read[broken])

    def test_an_unknown_scheme_is_a_clear_error(self, world):
        from searcher.sources import open_source

        with pytest.raises(SourceError, match="no source reads nosuch:// URLs"):
            open_source("nosuch://x/y")
