"""Remote sources of documents (S3-compatible object stores, web sites, IMAP mailboxes): each
an implementation of `searcher.sources.base.Source`, found by its URL's scheme
(`open_source`). Their items go through the same readers as files (searcher/readers/); the
index keeps them in line (searcher/index/sources.py)."""

from searcher.sources.base import (Item, Source, SourceError, canonical_url, is_source_url,  # noqa: F401
                                   open_source, register, scheme_of, schemes)
