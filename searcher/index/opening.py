"""Making a new index folder, and the model checks of opening one: the encoder an index is
opened with must be the one it was built with (its fingerprint and dimension), or its vectors
would be meaningless."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from searcher.encoding.chunker import Chunker
from searcher.encoding.encoder import Encoder, get_encoder, resolve_model_path
from searcher.errors import IndexExistsError, ModelMismatchError
from searcher.storage.folder import (DATABASE, FORMAT_VERSION, MANIFEST, SHARDS_MANIFEST, exclusive_lock,
                                     write_manifest, write_vectors)
from searcher.storage.keywords import check_keyword_engine, open_keywords
from searcher.storage.store import ContentStore
from searcher.storage.vectors import backend_class, check_index_type, empty_vectors


def check_new_folder(path: Path) -> None:
    """Refuse a folder that holds an index already, or a file; checked before the model loads."""
    if (path / MANIFEST).exists():
        raise IndexExistsError(f"an index already exists in {path}; open it instead")
    if path.exists() and not path.is_dir():
        raise IndexExistsError(f"{path} exists and is not a folder; an index is a folder")
    if (path / SHARDS_MANIFEST).exists():
        raise IndexExistsError(f"a sharded index already exists in {path}; open it with searcher.open_index")


def new_manifest(encoder: Encoder, chunk_tokens: int | None, overlap: int | None, index_type: str | None,
                 keyword_engine: str | None, query_prefix: str | None = None,
                 document_prefix: str | None = None) -> dict:
    """The manifest of a new index of `encoder`'s model, its settings checked. The prefixes
    (None: the checkpoint's own `prompts`, searcher/encoding/encoder.py `checkpoint_prompts`;
    "": none) go before every query and every chunk the index encodes."""
    index_type = check_index_type(index_type)
    keyword_engine = check_keyword_engine(keyword_engine)
    chunk_tokens = chunk_tokens or encoder.max_tokens
    if not 8 <= chunk_tokens <= encoder.position_limit:
        raise ValueError(f"chunk_tokens must be between 8 and the model's limit of {encoder.position_limit}")
    if overlap is None:
        overlap = chunk_tokens // 10
    chunker = Chunker(encoder.tokenizer, chunk_tokens, overlap)  # validates the pair
    prompts = getattr(encoder, "prompts", None) or {}
    prefixes = {"query_prefix": prompts.get("query", "") if query_prefix is None else query_prefix,
                "document_prefix": prompts.get("document", "") if document_prefix is None else document_prefix}
    for name, prefix in prefixes.items():
        if not isinstance(prefix, str):
            raise ValueError(f"{name} must be a string, not {type(prefix).__name__}")
        tokens = len(encoder.tokenizer(prefix, add_special_tokens=False, verbose=False)["input_ids"]) if prefix else 0
        if tokens > chunker.budget // 4:
            raise ValueError(f"{name} {prefix[:60]!r} has {tokens} tokens; a chunk of {chunk_tokens} tokens "
                             f"leaves room for at most {chunker.budget // 4}")
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": encoder.name,
        "model_fingerprint": encoder.fingerprint,
        "dimension": encoder.dimension,
        "pooling": encoder.pooling,
        **prefixes,
        "chunk_tokens": chunk_tokens,
        "overlap": overlap,
        "index_type": index_type,
        "vector_backend": "faiss",
        "keyword_engine": keyword_engine,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    manifest.update(backend_class(manifest).manifest_fields(manifest))
    return manifest


def make_folder(path: Path, manifest: dict) -> None:
    """An empty index in `path`: the database, generation 0's empty vectors, the keyword
    engine's files, and the manifest last (a folder without one is not an index yet)."""
    path.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(path):
        store = ContentStore(path / DATABASE, create=True)
        try:
            generation = store.generation
            checksums = write_vectors(path, generation, empty_vectors(manifest))
            with store.db.atomic():
                store.set_state(generation, store.state("next_chunk_id"), checksums)
            open_keywords(path, manifest).prepare(store)
        finally:
            store.close()
        write_manifest(path, manifest)


def model_for(path: Path, manifest: dict, model=None, encoder: Encoder | None = None, *, device: str = "auto",
              batch_size: int = 32, precision: str = "auto") -> Encoder:
    """The encoder to open the index in `path` with: `encoder`, or `model` loaded, each checked
    against the manifest; else the manifest's own model. ModelMismatchError otherwise."""
    if model is not None or encoder is not None:
        if encoder is None:
            encoder = get_encoder(resolve_model_path(model), device, manifest["pooling"], batch_size, precision)
        if encoder.fingerprint != manifest["model_fingerprint"] or encoder.dimension != manifest["dimension"]:
            raise ModelMismatchError(
                f"{path} was built with model {manifest['model']} (fingerprint {manifest['model_fingerprint']}, "
                f"dimension {manifest['dimension']}), not {encoder.name} (fingerprint "
                f"{encoder.fingerprint}, dimension {encoder.dimension}); its vectors would be "
                f"meaningless for this model. Open it without a model, or build a new index."
            )
        return encoder
    try:
        encoder = get_encoder(manifest["model"], device, manifest["pooling"], batch_size, precision)
    except Exception as e:
        raise ModelMismatchError(f"{path} was built with model {manifest['model']}, which cannot be loaded here: {e}"
                                 ) from e
    if encoder.fingerprint != manifest["model_fingerprint"]:
        raise ModelMismatchError(
            f"the model at {manifest['model']} has changed since {path} was built "
            f"(fingerprint {encoder.fingerprint}, expected {manifest['model_fingerprint']})"
        )
    return encoder


def check_reopened(path: Path, manifest: dict, encoder: Encoder | None) -> None:
    """A folder reopened on a loaded model must still hold an index of that model."""
    if encoder is not None and (manifest["model_fingerprint"], manifest["dimension"]) != \
            (encoder.fingerprint, encoder.dimension):
        raise ModelMismatchError(f"{path} now holds an index built with model {manifest['model']}, "
                                 f"not the loaded {encoder.name}")
