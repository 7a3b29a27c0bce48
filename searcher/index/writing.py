"""The write session of one index folder: documents and files in (read, chunked, encoded,
committed in batches by searcher/index/writer.py), documents out. One writer at a time, in
this process (a lock) and across processes (the folder's lock); each batch becomes the next
generation through the live generation (searcher/index/live.py) while searches go on."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from searcher.errors import ModelMismatchError, SearcherError
from searcher.index.live import LiveGeneration
from searcher.index.writer import (COMMIT_CHUNKS, IndexReport, Writer, bound_chunks, check_additions,
                                   prefix_token_ids)
from searcher.readers.documents import Document, Skipped
from searcher.readers.options import LoadOptions
from searcher.readers.path_run import PathRun
from searcher.sanitize import document_id


class WriteSession:
    """Writes to one index folder. `encoder` None: opened without its model (it can delete,
    not encode). `commit_chunks`: chunks per commit (a kill loses at most that much encoding)."""

    def __init__(self, path: Path, live: LiveGeneration, chunker, encoder, batch_size: int = 32):
        self.path = path
        self.live = live
        self.chunker = chunker
        self.encoder = encoder
        self.batch_size = batch_size
        self.commit_chunks = COMMIT_CHUNKS

    def add_paths(self, paths: Iterable[str | os.PathLike], options: LoadOptions | None = None, progress=None,
                  prune: bool = False, on_conflict: str = "skip", accept: Callable[[str], bool] | None = None,
                  encoder=None) -> IndexReport:
        run = PathRun(paths, options, accept)
        options = options or LoadOptions()
        documents = run.documents()
        if self.chunker is not None:  # (without its model, add_documents refuses)
            documents = bound_chunks(documents, self.chunker, options.max_chunks, options.file_timeout,
                                     prefix_token_ids(self.chunker.tokenizer, self.live.manifest.get("document_prefix", "")))
        report = self.add_documents(documents, progress=progress, on_conflict=on_conflict, encoder=encoder)
        if prune:
            gone = run.gone(self.live.read_store().document_sources())
            with self.writer() as writer:
                report.removed = writer.delete(gone)
                report.generation = self.live.generation
        return report

    def add_documents(self, documents: Iterable[Document | dict | Skipped], progress=None,
                      on_conflict: str = "skip", encoder=None) -> IndexReport:
        check_additions(documents, on_conflict)
        if self.encoder is None:
            raise SearcherError(f"{self.path} was opened without its model: it cannot encode documents")
        manifest = self.live.manifest
        if encoder is not None and encoder.fingerprint != manifest["model_fingerprint"]:
            raise ModelMismatchError(f"{self.path} was built with model {manifest['model']}; the encoder "
                                     f"given runs {encoder.name} (fingerprint {encoder.fingerprint})")
        report = IndexReport()
        started = time.perf_counter()
        with self.writer(encoder) as writer:
            writer.add(documents, report, progress, on_conflict)
            report.generation = self.live.generation
        report.seconds = time.perf_counter() - started
        return report

    def delete(self, doc_ids: str | Iterable[str]) -> int:
        if isinstance(doc_ids, (str, bytes, int)):
            doc_ids = [doc_ids]
        doc_ids = list(dict.fromkeys(document_id(d) for d in doc_ids))
        with self.writer() as writer:
            return writer.delete(doc_ids)

    @contextmanager
    def writer(self, encoder=None) -> Iterator[Writer]:
        """A Writer for one run of writes under the write locks (`encoder`: the writer's,
        instead of the index's own)."""
        with self.live.write_session() as store:
            writer = Writer(store, self.chunker, encoder or self.encoder, self.live, self.batch_size,
                            self.commit_chunks, self.live.manifest.get("document_prefix", ""))
            try:
                yield writer
            finally:
                writer.close()
