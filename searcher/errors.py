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
