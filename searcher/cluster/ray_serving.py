"""Serving a sharded index on Ray Serve: one deployment per shard, the usual front before them.

Each shard is a Ray Serve application of one deployment (`ShardReplica`, `replicas` copies):
a replica opens its shard folder as an ordinary `Index`, without a model, and answers the
calls a `ShardedIndex` makes of a shard (rank, fetch, metadata, keyword_statistics,
document_vector, search_vector, get_document, len, info). The front is the process that runs
`searcher serve --ray`: the same Flask app and waitress server as `searcher serve`, whose
index is a `ShardedIndex` whose shards are `ServeShard`s, thin adapters over the
deployments' handles. So the HTTP API, the page and filters are the ones of `searcher
serve`, and the merge is the one of searcher/cluster/sharded.py.

The front loads the model and encodes each query once; its vector goes to every shard
(`Index.rank(query_vector=)`), so replicas hold no model (a few MB each, not hundreds) and
start in a second. The front asks every shard at once (a handle's answers are futures: all
are issued, then gathered).

Faults. Serve routes a call to any live replica of its deployment; a call whose replica died
under it (an actor error) is sent once more, to another. A shard that still does not answer
within `timeout_s` (no live replica: Serve starts new ones, which takes seconds) raises
`ShardUnavailable`, and the search answers from the other shards, marked partial
(`Results.missing_shards`; /api/search: "partial": true, "missing_shards": [...]).

Every node must read the shard folders at the same path (a shared file system, or a copy
on each): replicas open them wherever Serve places them.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from searcher.errors import SearcherError, ShardUnavailable
from searcher.storage.folder import SHARDS_MANIFEST, read_manifest
from searcher.cluster.ray_cluster import RayError, import_ray

log = logging.getLogger(__name__)
MAX_REPLICAS = 64
UNDEPLOY_TIMEOUT_S = 30.0  # the longest the front waits for its shards' applications to be deleted
GRACEFUL_SHUTDOWN_S = 5.0  # a replica's calls are short reads: Serve kills one still busy after this
# The calls a shard answers (searcher/cluster/sharded.py); `__len__` travels as `count`.
SHARD_CALLS = ("rank", "fetch", "metadata", "keyword_statistics", "known_fields", "spelling", "similar_source",
               "search_vector", "get_document", "count", "info")


@dataclass(frozen=True)
class ServeSettings:
    """How the shards are deployed and asked."""

    replicas: int = 1  # copies of each shard (Serve's num_replicas)
    num_cpus: float = 0.25  # each replica's CPU share (Ray's scheduling; searches are short)
    timeout_s: float = 10.0  # how long the front waits for a shard's answer before it is missing
    app_prefix: str = "searcher"  # Serve application names: PREFIX-<folder hash>-<shard folder>
    health_check_period_s: float | None = None  # Serve's default (10 s) when None

    def __post_init__(self):
        check_replicas(self.replicas)
        if not self.num_cpus > 0:
            raise ValueError(f"num_cpus must be above 0, not {self.num_cpus!r}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be above 0, not {self.timeout_s!r}")


def check_replicas(replicas) -> int:
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas must be an integer from 1 to {MAX_REPLICAS}, not {replicas!r}")
    return replicas


class ShardReplica:
    """One replica of one shard: the shard folder opened read-only as an Index without a model
    (queries arrive as vectors). Deployed by `deploy_shards`."""

    def __init__(self, folder: str):
        from searcher.index.facade import Index

        self.folder = folder
        self.index = Index.open(folder, load_model=False)

    def rank(self, query, k=10, mode=None, where=None, keyword_stats=None, query_vector=None):
        return self.index.rank(query, k, mode, where=where, keyword_stats=keyword_stats, query_vector=query_vector)

    def fetch(self, ranking):
        return self.index.fetch(ranking)

    def metadata(self, doc_ids):
        return self.index.metadata(doc_ids)

    def keyword_statistics(self, query):
        return self.index.keyword_statistics(query)

    def known_fields(self, names):
        return self.index.known_fields(names)

    def spelling(self, words):
        return self.index.spelling(words)

    def similar_source(self, doc_id):
        return self.index.similar_source(doc_id)

    def search_vector(self, vector, k=10, where=None):
        return self.index.search_vector(vector, k, where)

    def get_document(self, doc_id):
        return self.index.get_document(doc_id)

    def count(self):
        return len(self.index)

    def info(self):
        return self.index.info()

    def __del__(self):
        index = getattr(self, "index", None)
        if index is not None:
            index.close()


def unavailable_errors() -> tuple[type[BaseException], ...]:
    """What a handle's call raises when its shard cannot answer (not the shard's own errors,
    which arrive as themselves: a bad filter is still a ValueError)."""
    import ray.exceptions as rex
    from ray.serve import exceptions as sex

    return (rex.RayActorError, rex.ActorUnavailableError, sex.DeploymentUnavailableError,
            sex.ReplicaUnavailableError, sex.BackPressureError, TimeoutError)


def actor_errors() -> tuple[type[BaseException], ...]:
    """The errors worth one more try: the replica died or went away under the call."""
    import ray.exceptions as rex
    from ray.serve import exceptions as sex

    return (rex.RayActorError, rex.ActorUnavailableError, sex.ReplicaUnavailableError)


class _Answer:
    """A shard's pending answer: `.result()` waits for it, sends the call once more if its
    replica died, and raises ShardUnavailable if the shard still does not answer."""

    def __init__(self, shard: "ServeShard", method: str, args: tuple, kwargs: dict):
        self.shard, self.method, self.args, self.kwargs = shard, method, args, kwargs
        self.response = shard._call(method, args, kwargs)

    def result(self):
        shard = self.shard
        try:
            return self.response.result(timeout_s=shard.timeout_s)
        except shard.retry_on as e:
            log.warning("%s: a replica failed (%s); asking another", shard.name, type(e).__name__)
            try:
                return shard._call(self.method, self.args, self.kwargs).result(timeout_s=shard.timeout_s)
            except shard.unavailable as e2:
                raise shard.missing(e2) from e2
        except shard.unavailable as e:
            raise shard.missing(e) from e


class _Encoded:
    """A pending `similar_source` answer, encoded into the document's vector when it comes."""

    def __init__(self, answer: _Answer, similar):
        self.answer, self.similar = answer, similar

    def result(self):
        source = self.answer.result()
        return None if source is None else self.similar(*source)


def similar_encoder(encoder, layout_manifest: dict):
    """(title, texts) -> the document's vector, as `Index.document_vector` makes it, with the
    front's encoder and the shards' chunking (a shard's manifest)."""
    from searcher.encoding.chunker import Chunker
    from searcher.index.querying import similar_vector

    budget = Chunker(encoder.tokenizer, layout_manifest["chunk_tokens"], layout_manifest["overlap"]).budget
    return lambda title, texts: similar_vector(encoder, budget, title, texts,
                                               prefix=layout_manifest.get("document_prefix", ""))


class ServeShard:
    """A shard served by a Ray Serve deployment, with the calls of a local shard
    (searcher/cluster/sharded.py); `submit` issues a call without waiting, which the sharded index
    uses to ask every shard at once."""

    def __init__(self, name: str, handle, similar, timeout_s: float = 10.0):
        self.name = name
        self.handle = handle
        self.similar = similar  # (title, texts) -> vector: the front's model (ray_serving.similar_encoder)
        self.timeout_s = timeout_s
        self.unavailable = unavailable_errors()
        self.retry_on = actor_errors()

    def _call(self, method: str, args: tuple, kwargs: dict):
        method = {"__len__": "count", "document_vector": "similar_source"}.get(method, method)
        if method not in SHARD_CALLS:
            raise AttributeError(f"a shard served on Ray answers {', '.join(SHARD_CALLS)}, not {method}")
        return getattr(self.handle, method).remote(*args, **kwargs)

    def submit(self, method: str, *args, **kwargs):
        answer = _Answer(self, method, args, kwargs)
        return _Encoded(answer, self.similar) if method == "document_vector" else answer

    def missing(self, error: BaseException) -> ShardUnavailable:
        return ShardUnavailable(f"{self.name} did not answer within {self.timeout_s:g} s "
                                f"({type(error).__name__}: no live replica?)", [self.name])

    def ask(self, method: str, *args, **kwargs):
        return self.submit(method, *args, **kwargs).result()

    def rank(self, *args, **kwargs):
        return self.ask("rank", *args, **kwargs)

    def fetch(self, ranking):
        return self.ask("fetch", ranking)

    def metadata(self, doc_ids):
        return self.ask("metadata", doc_ids)

    def keyword_statistics(self, query):
        return self.ask("keyword_statistics", query)

    def known_fields(self, names):
        return self.ask("known_fields", names)

    def spelling(self, words):
        return self.ask("spelling", words)

    def document_vector(self, doc_id):
        """The replica gives the document's chunks (`Index.similar_source`); the front's model encodes them."""
        return self.ask("document_vector", doc_id)

    def search_vector(self, vector, k=10, where=None):
        return self.ask("search_vector", vector, k, where)

    def get_document(self, doc_id):
        return self.ask("get_document", doc_id)

    def __len__(self) -> int:
        return self.ask("count")

    def info(self) -> dict:
        return self.ask("info")

    def reopen(self) -> "ServeShard":
        return self  # the replicas read their folder; Serve replaces a replica that dies

    def close(self) -> None:
        pass  # the deployments outlive the front; `undeploy` removes them

    def add_documents(self, *args, **kwargs):
        raise SearcherError(f"{self.name} is served read-only on Ray: index into the shard folders with "
                            f"`searcher index PATH --index DIR`; the replicas read each commit")

    add_paths = delete = add_documents


def app_names(path, layout: dict, prefix: str = "searcher") -> list[str]:
    """The Serve application of each shard: PREFIX-<8 hex of the folder's path>-<shard folder>,
    so two sharded indexes served on one cluster do not replace each other's."""
    tag = hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:8]
    return [f"{prefix}-{tag}-{folder}" for folder in layout["folders"]]


def deploy_shards(path, settings: ServeSettings = ServeSettings()) -> list[tuple[str, object]]:
    """Deploy every shard of the sharded index in `path` on the connected Ray (Serve started
    without its HTTP proxy: the front answers HTTP); [(application name, handle)] in shard
    order, once every replica is up."""
    from ray import serve

    from searcher.cluster.shards import read_layout, shard_paths

    layout = read_layout(path)
    folders = [str(Path(folder).resolve()) for folder in shard_paths(path, layout)]
    serve.start(proxy_location="Disabled")
    options = dict(num_replicas=settings.replicas, ray_actor_options={"num_cpus": settings.num_cpus},
                   graceful_shutdown_timeout_s=GRACEFUL_SHUTDOWN_S, graceful_shutdown_wait_loop_s=0.5)
    if settings.health_check_period_s is not None:
        options["health_check_period_s"] = settings.health_check_period_s
    deployed = []
    try:
        for name, folder in zip(app_names(path, layout, settings.app_prefix), folders):
            app = serve.deployment(ShardReplica, name="shard", **options).bind(folder)
            deployed.append((name, serve.run(app, name=name, route_prefix=None)))
    except BaseException:
        undeploy([name for name, _ in deployed])
        raise
    return deployed


def undeploy(names: Sequence[str], timeout_s: float = UNDEPLOY_TIMEOUT_S) -> list[str]:
    """Delete the shards' Serve applications (their replicas stop), all at once, and wait up to
    `timeout_s` for them to go: Serve's own wait is 60 s per application, one after the other.
    Gives the ones still there then (Serve goes on deleting them; a warning names them)."""
    from ray import serve

    for name in names:
        try:
            serve.delete(name, _blocking=False)
        except Exception:  # already gone, or Serve shut down: nothing left to stop
            log.debug("deleting Serve application %s failed", name, exc_info=True)
    deadline = time.monotonic() + timeout_s
    left = list(names)
    while left:
        try:
            there = serve.status().applications
        except Exception:  # Serve is gone: so are its applications
            log.debug("asking Serve which applications are left failed", exc_info=True)
            return []
        left = [name for name in left if name in there]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if left:
        log.warning("the Serve applications %s were still being deleted after %g s; stopping without waiting "
                    "(Serve goes on deleting them)", ", ".join(left), timeout_s)
    return left


def shard_manifest(path, layout: dict) -> dict:
    """The first shard's manifest (the shards share their model and chunking)."""
    from searcher.cluster.shards import shard_paths

    return read_manifest(shard_paths(path, layout)[0])


def query_encoder(path, layout: dict, device: str = "auto", precision: str = "auto"):
    """The front's query encoder, of the sharded index's model (checked against shards.json)."""
    from searcher.encoding.encoder import ModelError
    from searcher.errors import ModelMismatchError
    from searcher.encoding.encoder import get_encoder
    from searcher.encoding.queries import get_query_encoder
    manifest = shard_manifest(path, layout)
    try:
        encoder = get_encoder(layout["model"], device, manifest["pooling"], 32, precision)
    except (ModelError, OSError) as e:
        raise ModelMismatchError(f"{path} was built with model {layout['model']}, which cannot be loaded here: {e}") \
            from e
    if encoder.fingerprint != layout["model_fingerprint"]:
        raise ModelMismatchError(f"the model at {layout['model']} has changed since {path} was built "
                                 f"(fingerprint {encoder.fingerprint}, expected {layout['model_fingerprint']})")
    return get_query_encoder(encoder, manifest.get("query_prefix", ""))


class ServedIndex:
    """A sharded index served on Ray Serve, as the front sees it: `index` (a ShardedIndex over
    ServeShards) and the applications behind it; `close()` deletes them, waiting at most
    UNDEPLOY_TIMEOUT_S. Made by `serve_sharded`."""

    def __init__(self, index, names: list[str]):
        self.index = index
        self.names = names

    def close(self) -> None:
        self.index.close()
        undeploy(self.names)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def serve_sharded(path, settings: ServeSettings = ServeSettings(), *, device: str = "auto",
                  precision: str = "auto", encoder=None) -> ServedIndex:
    """Deploy the sharded index in `path` on the connected Ray (one application per shard,
    `settings.replicas` replicas each) and give its front: a ShardedIndex whose shards are the
    deployments. `encoder`: a loaded query encoder's Encoder to share (else the model loads here)."""
    import_ray()
    import ray

    if not ray.is_initialized():
        raise RayError("not connected to Ray: call inside searcher.cluster.ray_cluster.ray_session(address)")
    path = Path(path)
    if not (path / SHARDS_MANIFEST).is_file():
        raise SearcherError(f"{path} is not a sharded index ({SHARDS_MANIFEST} is missing): serve --ray serves "
                            f"the shards of one; make it with `searcher shard {path} --shards N --out DIR`, "
                            f"or serve it without --ray")
    from searcher.encoding.queries import get_query_encoder
    from searcher.cluster.sharded import ShardedIndex
    from searcher.cluster.shards import read_layout

    layout = read_layout(path)
    queries = get_query_encoder(encoder) if encoder is not None else query_encoder(path, layout, device, precision)
    if queries.encoder.fingerprint != layout["model_fingerprint"]:
        from searcher.errors import ModelMismatchError

        raise ModelMismatchError(f"{path} holds an index of model {layout['model']}, not {queries.encoder.name}")
    similar = similar_encoder(queries.encoder, shard_manifest(path, layout))
    deployed = deploy_shards(path, settings)
    shards = [ServeShard(folder, handle, similar, settings.timeout_s)
              for folder, (_, handle) in zip(layout["folders"], deployed)]
    index = ShardedIndex(path, layout, shards, threads=1, queries=queries)
    return ServedIndex(index, [name for name, _ in deployed])
