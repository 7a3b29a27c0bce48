"""The errors a user can act on; the CLI prints them without a traceback."""

from __future__ import annotations


class SearcherError(Exception):
    """Base of the errors a user can act on; the CLI prints them without a traceback."""


class IndexNotFoundError(SearcherError):
    pass


class IndexExistsError(SearcherError):
    pass


class ModelMismatchError(SearcherError):
    pass


class IndexLockedError(SearcherError):
    pass


class IndexCorruptError(SearcherError):
    """The index folder's files are damaged or disagree; the message says what to run."""


class DatabaseCorruptError(IndexCorruptError):
    """content.db is missing, empty or damaged. `check --repair` cannot rebuild it: it can only
    salvage what SQLite's `.recover` reads from it (searcher/index/check.py); the rest must be indexed
    again from the source files."""


class IndexIOError(SearcherError, OSError):
    """A file of the index folder could not be written or read (a full disk, an I/O error):
    an OSError with the errno, naming the file and the step, and saying what still holds
    (a failed commit leaves the last committed generation live)."""

    # Set by a server's write queue (searcher/web/write_queue.py) when a write failed: whether an
    # earlier commit of the same write was kept (None: that cannot be told).
    in_write: bool = False
    written: bool | None = None


class ShardUnavailable(SearcherError):
    """A shard of a sharded index did not answer: no live replica, a lost connection, a
    timeout. A search leaves that shard out and marks its answer partial
    (`Results.missing_shards`); a call only that shard can answer (get_document) raises this.
    `shards`: the names of the shards that did not answer."""

    def __init__(self, message: str, shards=()):
        super().__init__(message)
        self.shards = tuple(shards)


class BackupError(SearcherError):
    """A backup cannot be written or restored: the folder is not a complete backup, a file of it
    is missing or fails its checksum, or the restored copy fails `searcher check`; the message
    says which."""
