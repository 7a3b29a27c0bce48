"""A sharded index (searcher/cluster/shards.py) behind the API of `Index`: search, facets, similar,
get_document, len, info, writes routed to their shard.

A search is Elasticsearch's query then fetch. It asks every shard (in threads, where the
machine has cores to spare: `default_threads`) for its best documents as (doc_id, score,
chunk id), without their text (`Index.rank`); merges those lists with plain functions
(`merge_rankings`, and `retrieval.fuse`, the one rule hybrid search fuses by); then asks the
shards that hold the page's documents for them (`Index.fetch`). A shard is anything with
those calls of Index's API (rank, fetch, metadata, keyword_statistics, document_vector,
search_vector, get_document, len, info): a local `Index` here, a Ray Serve deployment
later. Each shard applies the search's filter itself. Fetching only the page matters: with
every candidate's text and metadata read, a hybrid search over 4 shards of SciFact took
36 ms, against 13 ms now (query vectors cached, shards in turn).

    dense    each shard's best documents by cosine, merged by score: cosines of one model
             compare across shards, so with the flat index type the merge is exactly the
             single index's ranking
    keyword  each shard's best by BM25, merged by score (statistics: see below)
    hybrid   each shard's dense and keyword candidates to the fusion depth, merged into one
             dense and one keyword list, then fused once over their union by the index's
             Fusion (searcher/search/fusion.py), as a single index fuses its two lists
    similar  the owning shard gives the document's vector; every shard searches by it

The query is parsed once, here (searcher/search/query.py), with the metadata keys of every
shard as fields, and goes to the shards parsed: each holds its own documents to the query's
phrases and exclusions before it ranks them, so the merge is of the lists a single index
would make.

Sort, recency and facets re-order and count the merged ranking's best documents, as a single
index does its own (their metadata fetched from their shards).

BM25 across shards. BM25 weighs a query term by its idf, from the share of chunks that hold
it, and each shard knows only its own counts. Like Elasticsearch, two modes (shards.json's
`keyword_statistics`, `searcher shard --keyword-statistics`):

    shard   each shard scores with its own statistics (Elasticsearch's query_then_fetch): one
            round; a term's weight drifts where its share differs between shards (a rare term
            that happens to cluster in one shard weighs less there)
    dfs     (default) a first round asks every shard for its counts of the query's terms
            (`Index.keyword_statistics`), and their sum goes with the query, so every shard
            weighs each term as the whole collection does (Elasticsearch's
            dfs_query_then_fetch); the tantivy engine only (fts5's bm25() takes no outside
            statistics: such an index searches in shard mode)

Measured on SciFact (benchmarks/shards.py; benchmarks/README.md, "Shards").
"""

from __future__ import annotations

import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from searcher.cluster.shards import check_keyword_statistics, read_layout, shard_of, shard_paths
from searcher.errors import ModelMismatchError, SearcherError, ShardUnavailable
from searcher.index.facade import Index
from searcher.index.writer import (IndexReport, as_documents, bound_chunks, check_additions, doc_location, duplicate,
                                   prefix_token_ids)
from searcher.readers.documents import Document, Skipped
from searcher.readers.options import LoadOptions
from searcher.readers.path_run import PathRun
from searcher.sanitize import document_id, is_blank
from searcher.search.access import Viewer, can_read, scoped
from searcher.search.facets import DEFAULT_FACETS, FACET_DEPTH
from searcher.search.fusion import Fusion
from searcher.search.options import SearchOptions
from searcher.search.page import result_page
from searcher.search.protocol import Shard
from searcher.search.query import BUILTIN_FIELDS, ParsedQuery, field_names, parse_query, plain_query
from searcher.search.results import Hit, Results, check_k, check_query
from searcher.search.retrieval import fuse
from searcher.search.spelling import loose_words, spelled
from searcher.storage.folder import SHARDS_MANIFEST
from searcher.storage.keywords import KeywordStats, analyzer_for

ROUTE_CHARS = 8_000_000  # text a shard's batch of routed documents gathers before it is indexed (about a commit's worth)


Ranking = dict[str, tuple[float, tuple[int, int]]]  # doc_id -> (score, (shard, chunk id)), best first
Call = tuple[int, str, tuple, dict]  # (shard number, method name, args, kwargs): one question to one shard
# What a shard that cannot answer raises: ShardUnavailable (a Ray Serve shard with no live
# replica, searcher/cluster/ray_serving.py) or a lost connection. The search leaves that shard out
# and says so (Results.missing_shards); any other error is the search's own and is raised.
UNAVAILABLE = (ShardUnavailable, ConnectionError)


def merge_rankings(answers: Sequence[Sequence[tuple[str, float, int]]], want: int) -> Ranking:
    """The best `want` of the shards' rankings (answer i from shard i: (doc_id, score, chunk
    id), best first) by score, as {doc_id: (score, (shard, chunk id))}, best first: what
    retrieval.fuse and facets.reorder take. Ties keep shard order. Shards hold disjoint
    documents, so nothing is counted twice."""
    rows = [(score, number, doc_id, cid) for number, answer in enumerate(answers) for doc_id, score, cid in answer]
    rows.sort(key=lambda row: -row[0])
    return {doc_id: (score, (number, cid)) for score, number, doc_id, cid in rows[:want]}


def merge_hits(answers: Iterable[Sequence[Hit]], want: int) -> list[Hit]:
    """The best `want` of several shards' hits by score, best first (ties keep shard order)."""
    return sorted(itertools.chain.from_iterable(answers), key=lambda h: -h.score)[:want]


def default_threads(shards: int) -> int:
    """Threads a search fans out on: up to two a shard (hybrid asks each twice), at most half the
    machine's cores; 1 (in turn, no pool) below that. On 2 busy cores a pool cost more than it
    gained: 25 ms a hybrid search over 4 shards against 13 ms in turn (SciFact)."""
    return max(1, min(2 * shards, (os.cpu_count() or 1) // 2))


def open_index(path, model=None, *, threads: int | None = None, **options):
    """The index in folder `path`: an `Index`, or a `ShardedIndex` where the folder holds a
    sharded one (shards.json). `options`: those of `Index.open`; `threads`: a sharded one's
    (see `default_threads`)."""
    if (Path(path) / SHARDS_MANIFEST).is_file():
        return ShardedIndex.open(path, model, threads=threads, **options)
    return Index.open(path, model, **options)


class ShardedIndex:
    """The shards of a sharded index as one index. `shards`: objects with Index's API, in the
    manifest's order (shard i holds the documents `shard_of(id, N)` sends to i)."""

    sharded = True

    def __init__(self, path, layout: dict, shards: Sequence, keyword_statistics: str | None = None,
                 threads: int | None = None, queries=None):
        self.path = Path(path)
        self.layout = layout
        self.shards = list(shards)
        if len(self.shards) != layout["shards"]:
            raise ValueError(f"{path} has {layout['shards']} shards, not {len(self.shards)}")
        self.keyword_statistics = check_keyword_statistics(keyword_statistics or layout.get("keyword_statistics"))
        self.fusion = Fusion()  # hybrid mode's fusion; a search may pass its own
        self.route_chars = ROUTE_CHARS
        self._analyzer = analyzer_for(self.keyword_engine)  # the shards' keyword analysis (the page's highlighter)
        self.threads = default_threads(len(self.shards)) if threads is None else threads
        # The query encoder: each query is encoded once, here, and its vector goes to every
        # shard (`Index.rank(query_vector=)`). Local shards share one (the first's); shards
        # without a model (Ray Serve's) get the caller's.
        if queries is None and isinstance(self.shards[0], Index):
            queries = self.shards[0].queries
        self.queries = queries
        self._pool = (ThreadPoolExecutor(self.threads, thread_name_prefix="searcher-shard")
                      if self.threads > 1 and len(self.shards) > 1 else None)
        # How each shard is asked (searcher/search/protocol.py: Shard): a local Index in this
        # index's threads, a served shard through its own `submit`.
        self._asked: list[Shard] = [LocalShard(s, self._pool) if isinstance(s, Index) else s for s in self.shards]

    @classmethod
    def open(cls, path, model=None, *, device: str = "auto", batch_size: int = 32, precision: str = "auto",
             encoder=None, load_model: bool = True, threads: int | None = None) -> "ShardedIndex":
        """Open every shard of the sharded index in `path` (the model loads once, shared by all);
        each must be of the manifest's model. `threads`: see `default_threads`."""
        layout = read_layout(path)
        shards: list[Index] = []
        try:
            for folder in shard_paths(path, layout):
                shard = Index.open(folder, model, device=device, batch_size=batch_size, precision=precision,
                                   encoder=encoder, load_model=load_model)
                shards.append(shard)
                if (shard.manifest["model_fingerprint"], shard.manifest["dimension"]) != \
                        (layout["model_fingerprint"], layout["dimension"]):
                    raise ModelMismatchError(f"{folder} holds an index of model {shard.manifest['model']}, not "
                                             f"{layout['model']} as {Path(path) / SHARDS_MANIFEST} says")
                encoder = encoder or shard.encoder
        except BaseException:
            for shard in shards:
                shard.close()
            raise
        return cls(path, layout, shards, threads=threads)

    def reopen(self) -> "ShardedIndex":
        """A new ShardedIndex on this one's folder, each shard reopened (searcher/index/facade.py `reopen`)."""
        return ShardedIndex(self.path, read_layout(self.path), [s.reopen() for s in self.shards],
                            self.keyword_statistics, self.threads, self.queries)

    def close(self) -> None:
        for shard in self.shards:
            shard.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- what it is ------------------------------------------------------------------------
    def shard_of(self, doc_id) -> int:
        return shard_of(doc_id, len(self.shards))

    @property
    def encoder(self):
        """The local shards' encoder (one model shared by all); None for shards served elsewhere."""
        return self.shards[0].encoder if isinstance(self.shards[0], Index) else None

    def encode(self, texts, *, input_type: str = "document", batch_size: int | None = None,
               truncate: bool = True) -> np.ndarray:
        """Index.encode with the shards' model (they share one), in this process."""
        return self.embed(texts, input_type, batch_size, truncate)[0]

    def embed(self, items, input_type: str = "document", batch_size: int | None = None,
              truncate: bool = True) -> tuple[np.ndarray, int]:
        """Index.embed with the shards' model; SearcherError for shards served elsewhere (no model here)."""
        if not isinstance(self.shards[0], Index):
            raise SearcherError(f"{self.path}: the shards are served elsewhere; this process has no model to encode with")
        return self.shards[0].embed(items, input_type, batch_size, truncate)

    @property
    def analyzer(self):
        return self._analyzer

    def committed_generation(self) -> None:
        return None  # each shard has its own (searcher/search/protocol.py: ServedIndex)

    @property
    def keyword_engine(self) -> str:
        return self.layout.get("keyword_engine", "fts5")

    @property
    def index_type(self) -> str:
        return self.layout.get("index_type", "flat")

    @property
    def generations(self) -> list[int | None]:
        """Each shard's generation (a sharded index has no one generation)."""
        return [s.generation if isinstance(s, Index) else None for s in self.shards]

    @property
    def names(self) -> list[str]:
        """The shards' names (their folders in the manifest), as missing_shards gives them."""
        return list(self.layout["folders"])

    def __len__(self) -> int:
        """The documents of every shard; ShardUnavailable when a shard cannot say."""
        return sum(self._ask_all(self._each("__len__")))

    def count(self, access: Viewer | None = None) -> int:
        """The documents `access` may read, summed over the shards (each a local `Index`; a
        shard served on Ray counts all its documents: it has no count by viewer)."""
        if access is None:
            return len(self)
        return sum(self._ask_all([(n, "count", (access,), {}) if isinstance(shard, Index) else
                                  (n, "__len__", (), {}) for n, shard in enumerate(self.shards)]))

    def info(self) -> dict:
        """Index.info's fields over the whole index (counts and sizes summed, the settings the
        shards share, generations as shard/shard/...), and `per_shard`: each shard's counts.
        ShardUnavailable when a shard cannot say."""
        infos = self._ask_all(self._each("info"))
        first = infos[0]
        disk: dict[str, int] = {}
        for info in infos:
            for kind, size in (info.get("disk") or {}).items():
                disk[kind] = disk.get(kind, 0) + size
        try:
            own = (self.path / SHARDS_MANIFEST).stat().st_size
        except OSError:
            own = 0
        disk["other"] = disk.get("other", 0) + own
        disk["total"] = disk.get("total", 0) + own
        committed = [i["committed_at"] for i in infos if i.get("committed_at")]
        shared = ("model", "dimension", "pooling", "query_prefix", "document_prefix", "chunk_tokens", "overlap", "index_type", "search_params",
                  "vector_backend", "keyword_engine", "device", "precision", "backend")
        return {
            "path": str(self.path),
            "shards": len(self.shards),
            "hash": self.layout["hash"],
            "keyword_statistics": self.keyword_statistics,
            **{name: sum(i[name] for i in infos) for name in ("documents", "chunks", "vectors", "keyword_pending")},
            **{name: first.get(name) for name in shared},
            "index_factory": ", ".join(dict.fromkeys(str(i.get("index_factory")) for i in infos)),
            "generation": "/".join(str(i.get("generation")) for i in infos),
            "committed_at": max(committed) if committed else None,
            "created_at": self.layout.get("created_at"),
            "size_bytes": disk["total"],
            "disk": disk,
            "evaluations": [],
            "per_shard": [{"name": name, **{k: i.get(k) for k in ("documents", "chunks", "generation",
                                                                   "committed_at", "size_bytes")}}
                          for name, i in zip(self.layout["folders"], infos)],
        }

    def counts(self) -> dict:
        """Index.counts summed over the shards (from their info(): a shard served on Ray answers
        that); `generation` None (each shard has its own)."""
        info = self.info()
        return {**{name: info[name] for name in ("documents", "chunks", "vectors", "keyword_pending")},
                "generation": None}

    # -- reading ---------------------------------------------------------------------------
    def get_document(self, doc_id: str, access: Viewer | None = None) -> dict | None:
        """The document from the shard it lives in (None: none such, or one `access` may not
        read); ShardUnavailable when that shard cannot answer."""
        doc = self._ask_all([(self.shard_of(doc_id), "get_document", (doc_id,), {})])[0]
        return doc if doc is None or can_read(access, doc.get("metadata")) else None

    def search(self, query: str | ParsedQuery, k: int = 10, offset: int = 0, mode: str | None = None,
               fusion: Fusion | None = None, where: dict | None = None, sort: str | None = None,
               recency: float | None = None, now: datetime | None = None, syntax: bool = True,
               access: Viewer | None = None) -> Results:
        """Index.search over every shard (see the module doc for how answers merge). A shard
        that cannot answer is left out: the Results are partial and name it
        (`missing_shards`); ShardUnavailable when none answers."""
        return self.search_with_facets(query, k, offset, (), mode=mode, fusion=fusion, where=where, sort=sort,
                                       recency=recency, now=now, syntax=syntax, access=access)[0]

    def facets(self, query: str | ParsedQuery, fields: Iterable[str] = DEFAULT_FACETS, where: dict | None = None,
               mode: str | None = None, depth: int = FACET_DEPTH, fusion: Fusion | None = None,
               syntax: bool = True, access: Viewer | None = None) -> dict[str, dict]:
        return self.search_with_facets(query, 1, 0, fields, mode=mode, fusion=fusion, where=where,
                                       facet_depth=depth, syntax=syntax, access=access)[1]

    def search_with_facets(self, query: str | ParsedQuery, k: int = 10, offset: int = 0,
                           fields: Iterable[str] = DEFAULT_FACETS, *, mode: str | None = None,
                           fusion: Fusion | None = None, where: dict | None = None, sort: str | None = None,
                           recency: float | None = None, now: datetime | None = None,
                           facet_depth: int = FACET_DEPTH, syntax: bool = True,
                           access: Viewer | None = None) -> tuple[Results, dict[str, dict]]:
        """Index.search_with_facets over every shard: the merged ranking's page (Results,
        partial where a shard did not answer), and the facet counts among its best
        `facet_depth` documents; the page is the one a single index makes (searcher/search/page.py).
        `access`'s filter goes down to every shard with `where`."""
        options = SearchOptions(k, offset, mode, scoped(where, access), sort, recency, tuple(fields), facet_depth, now)
        missing: set[int] = set()
        parsed, suggestion = self._spelled(self._parse(query, syntax, missing), missing)
        search = _ShardedSearch(self, parsed, options, fusion or self.fusion, missing)
        hits, counts = result_page(search, options)
        results = self._results(hits, search.missing)
        results.suggestion = suggestion
        return results, counts

    def _spelled(self, query: ParsedQuery, missing: set[int]) -> tuple[ParsedQuery, str | None]:
        """Index.spelled over the shards: a word any shard holds is kept, else the nearest of
        the shards' candidates (searcher/search/spelling.py)."""
        words = loose_words(query)
        if not words:
            return query, None
        return spelled(query, [r for r in self._ask(self._each("spelling", words), missing, {}) if r])

    def parse(self, query: str | ParsedQuery, syntax: bool = True) -> ParsedQuery:
        """Index.parse, with the metadata keys of every shard as fields."""
        return self._parse(query, syntax, set())

    def _parse(self, query: str | ParsedQuery, syntax: bool, missing: set[int]) -> ParsedQuery:
        if isinstance(query, ParsedQuery):
            return query
        query = check_query(query)
        if not syntax:
            return plain_query(query)
        return parse_query(query, self._known_fields(field_names(query), missing))

    def known_fields(self, names: Iterable[str]) -> set[str]:
        """Index.known_fields over every shard: the fields some shard has."""
        return self._known_fields(names, set())

    def _known_fields(self, names: Iterable[str], missing: set[int]) -> set[str]:
        """known_fields; only the shards are asked, and only for names that are not built in
        (a shard that does not answer is added to `missing`)."""
        names = set(names)
        out = {name for name in names if name.lower() in BUILTIN_FIELDS}
        if names - out:
            for part in self._ask(self._each("known_fields", sorted(names - out)), missing, set()):
                out |= set(part)
        return out

    def _rank(self, query: ParsedQuery, want: int, mode: str, fusion: Fusion, where: dict | None,
              missing: set[int]) -> Ranking:
        """The query phase over every shard: the best `want` documents, best first. The query
        is encoded once, here, and goes to the shards parsed; shards that do not answer are
        added to `missing`."""
        text = check_query(query.search_text)
        vector = self.queries.encode(text) if mode != "keyword" and self.queries is not None else None
        stats = self._keyword_stats(text, missing) if mode != "dense" else None

        def asks(kind: str, depth: int) -> list[Call]:
            options = {"where": where, **({"keyword_stats": stats} if kind == "keyword" and stats else {}),
                       **({"query_vector": vector} if kind == "dense" and vector is not None else {})}
            return [(n, "rank", (query, depth, kind), options) for n in range(len(self.shards))]

        if mode != "hybrid":
            return merge_rankings(self._ask(asks(mode, want), missing, []), want)
        depth = max(want, fusion.depth)  # as retrieval.hybrid: each list to the fusion's depth
        answers = self._ask(asks("dense", depth) + asks("keyword", depth), missing, [])
        n = len(self.shards)
        return fuse(merge_rankings(answers[:n], depth), merge_rankings(answers[n:], depth), fusion, want, depth)

    def _by_shard(self, ranking: Ranking) -> dict[int, list[tuple[str, float, int]]]:
        out: dict[int, list[tuple[str, float, int]]] = {}
        for doc_id, (score, (number, cid)) in ranking.items():
            out.setdefault(number, []).append((doc_id, score, cid))
        return out

    def _fetch(self, ranking: Ranking, missing: set[int]) -> list[Hit]:
        """The fetch phase: the Hits of a merged ranking's documents, in its order, with its
        scores, each from its own shard (one call a shard)."""
        parts = self._by_shard(ranking)
        fetched = self._ask([(n, "fetch", (rows,), {}) for n, rows in parts.items()], missing, [])
        found = {hit.doc_id: hit for hits in fetched for hit in hits}
        return [found[doc_id] for doc_id in ranking if doc_id in found]

    def _metadata(self, ranking: Ranking, missing: set[int]) -> dict[str, dict]:
        parts = self._by_shard(ranking)
        found = self._ask([(n, "metadata", ([d for d, _, _ in rows],), {}) for n, rows in parts.items()],
                          missing, {})
        return {doc_id: metadata for part in found for doc_id, metadata in part.items()}

    def keyword_stats(self, query: str) -> KeywordStats | None:
        """The BM25 statistics of `query`'s terms summed over every shard, in dfs mode; None in
        shard mode, with one shard (its own are the whole collection's), or when a shard
        cannot give or take them (fts5)."""
        return self._keyword_stats(query, set())

    def _keyword_stats(self, query: str, missing: set[int]) -> KeywordStats | None:
        """keyword_stats; a shard that does not answer is added to `missing` and its counts left
        out (the others' sum is what the answering shards search with)."""
        if self.keyword_statistics != "dfs" or len(self.shards) == 1:
            return None
        silent: set[int] = set()
        parts = self._ask(self._each("keyword_statistics", query), silent)
        missing |= silent
        parts = [p for n, p in enumerate(parts) if n not in silent]
        if not parts or any(p is None for p in parts):
            return None
        return KeywordStats.total(parts)

    def similar(self, doc_id: str, k: int = 10, where: dict | None = None, access: Viewer | None = None) -> Results:
        """Index.similar over every shard: the owning shard gives the document's vector
        (`Index.document_vector`), every shard searches by it. KeyError: no such document (or
        one `access` may not read); ShardUnavailable when the owning shard cannot answer;
        partial Results when another shard cannot."""
        k, _ = check_k(k)
        if access is not None:
            owner = self._ask_all([(self.shard_of(doc_id), "metadata", ([doc_id],), {})])[0]
            if not can_read(access, owner.get(document_id(doc_id))):
                raise KeyError(f"no document with id {doc_id!r}")
            where = scoped(where, access)
        vector = self._ask_all([(self.shard_of(doc_id), "document_vector", (doc_id,), {})])[0]
        if vector is None:
            return Results()
        missing: set[int] = set()
        answers = self._ask(self._each("search_vector", vector, k + 1, where), missing, [])
        own = document_id(doc_id)
        return self._results([h for h in merge_hits(answers, k + 1) if h.doc_id != own][:k], missing)

    def search_vector(self, vector: np.ndarray, k: int = 10, where: dict | None = None,
                      access: Viewer | None = None) -> Results:
        k, _ = check_k(k)
        where = scoped(where, access)
        missing: set[int] = set()
        return self._results(merge_hits(self._ask(self._each("search_vector", vector, k, where), missing, []), k),
                             missing)

    # -- asking the shards -----------------------------------------------------------------
    def _each(self, method: str, *args, **kwargs) -> list[Call]:
        """The same question to every shard."""
        return [(n, method, args, kwargs) for n in range(len(self.shards))]

    def _results(self, hits: list[Hit], missing: set[int]) -> Results:
        """The hits, naming the shards that did not answer; ShardUnavailable when none did."""
        names = [self.names[n] for n in sorted(missing)]
        if missing and len(missing) == len(self.shards):
            raise ShardUnavailable(f"no shard answered ({', '.join(names)})", names)
        return Results(hits, names)

    def _ask(self, calls: Sequence[Call], missing: set[int], fallback=None) -> list:
        """Every call's answer, in order. The calls run at once where they can: a shard that
        takes questions asynchronously (`submit(method, *args, **kwargs)`, giving something
        with `.result()`: a Ray Serve deployment's handle) gets them all before any answer is
        awaited; local shards answer in the index's threads (`threads`), else in turn. A shard
        that cannot answer (UNAVAILABLE) is added to `missing` and its answer is `fallback`;
        any other error is raised, the first, after every call has finished."""
        pending = [_Later(self._asked[number].submit, method, args, kwargs) for number, method, args, kwargs in calls]
        answers, error = [], None
        for (number, _, _, _), answer in zip(calls, pending):
            try:
                answers.append(answer.result())
            except UNAVAILABLE:
                missing.add(number)
                answers.append(fallback)
            except BaseException as e:  # noqa: B036 (raised below, once every call is done)
                error = error or e
                answers.append(fallback)
        if error is not None:
            raise error
        return answers

    def _ask_all(self, calls: Sequence[Call]) -> list:
        """`_ask` where every answer is needed: ShardUnavailable names the shards that did not give theirs."""
        missing: set[int] = set()
        answers = self._ask(calls, missing)
        if missing:
            names = [self.names[n] for n in sorted(missing)]
            raise ShardUnavailable(f"{', '.join(names)} did not answer", names)
        return answers

    # -- writing ---------------------------------------------------------------------------
    @property
    def commit_chunks(self) -> int:
        return self.shards[0].commit_chunks

    @commit_chunks.setter
    def commit_chunks(self, value: int) -> None:
        for shard in self.shards:
            shard.commit_chunks = value

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None,
                          persist: bool = False) -> None:
        for shard in self.shards:
            shard.set_search_params(nprobe=nprobe, ef_search=ef_search, persist=persist)

    def add_documents(self, documents: Iterable[Document | dict | Skipped], progress: Callable[[int], None] | None = None,
                      on_conflict: str = "skip", encoder=None) -> IndexReport:
        """Index.add_documents, each document indexed by the shard its id hashes to (a changed
        one replaces itself there). Documents are gathered per shard and handed over about a
        commit's worth (`route_chars` of text) at a time; an item that cannot be a document
        is reported as a single index reports it. `encoder`:
        every shard's, for this call (Index.add_documents)."""
        check_additions(documents, on_conflict)
        started = time.perf_counter()
        report = IndexReport()
        seen: dict[str, str] = {}  # id -> where it was read in this run (the writer's rule, across batches)
        batches: list[list] = [[] for _ in self.shards]
        sizes = [0] * len(self.shards)

        def hand_over(number: int) -> None:
            if batches[number]:
                report.merge(self.shards[number].add_documents(batches[number], progress, on_conflict, encoder))
                batches[number], sizes[number] = [], 0

        for doc in as_documents(documents, report):
            if not is_blank(doc.text):
                if doc.id in seen and on_conflict == "skip":
                    report.skipped.append(duplicate(doc, seen[doc.id]))
                    continue
                seen[doc.id] = doc_location(doc)
            number = self.shard_of(doc.id)
            batches[number].append(doc)
            sizes[number] += len(doc.text)
            if sizes[number] >= self.route_chars:
                hand_over(number)
        for number in range(len(self.shards)):
            hand_over(number)
        report.seconds = time.perf_counter() - started
        report.generation = None  # each shard has its own
        return report

    def add_paths(self, paths: Iterable[str | os.PathLike], options: LoadOptions | None = None, progress=None,
                  prune: bool = False, on_conflict: str = "skip",
                  accept: Callable[[str], bool] | None = None, encoder=None) -> IndexReport:
        """Index.add_paths: the files' documents routed to their shards; `prune` deletes, in
        every shard, the documents from under `paths` that are gone."""
        run = PathRun(paths, options, accept)
        options = options or LoadOptions()
        documents = run.documents()
        first = self.shards[0] if self.shards else None
        if getattr(first, "chunker", None) is not None:  # the shards share one model and chunking
            documents = bound_chunks(documents, first.chunker, options.max_chunks, options.file_timeout,
                                     prefix_token_ids(first.chunker.tokenizer,
                                                      first.manifest.get("document_prefix", "")))
        report = self.add_documents(documents, progress=progress, on_conflict=on_conflict, encoder=encoder)
        if prune:
            for shard in self.shards:
                gone = run.gone(shard.store.document_sources())
                if gone:
                    report.removed += shard.delete(gone)
        return report

    def delete(self, doc_ids: str | Iterable[str]) -> int:
        """Remove documents by id from the shards they live in; how many were there."""
        if isinstance(doc_ids, (str, bytes, int)):
            doc_ids = [doc_ids]
        by_shard: dict[int, list[str]] = {}
        for doc_id in dict.fromkeys(document_id(d) for d in doc_ids):
            by_shard.setdefault(self.shard_of(doc_id), []).append(doc_id)
        return sum(self.shards[number].delete(ids) for number, ids in sorted(by_shard.items()))

    def record_evaluation(self, result: dict, wait: float | None = None) -> None:
        raise SearcherError(f"{self.path} is a sharded index: `searcher eval --index` takes a single one")


class LocalShard:
    """A local Index as a shard (searcher/search/protocol.py: Shard): questions run in the
    sharded index's threads, or at once where it has none."""

    def __init__(self, index: Index, pool: ThreadPoolExecutor | None):
        self.index = index
        self.pool = pool

    def submit(self, method: str, *args, **kwargs):
        call = getattr(self.index, method)  # one of the Shard protocol's calls, by name
        return self.pool.submit(call, *args, **kwargs) if self.pool is not None else _Now(call, args, kwargs)


class _ShardedSearch:
    """One search over the shards as the result page asks it (searcher/search/page.py):
    `missing` collects the shards that did not answer."""

    def __init__(self, index: "ShardedIndex", query: ParsedQuery, options: SearchOptions, fusion: Fusion,
                 missing: set[int]):
        self.index, self.query, self.options, self.fusion = index, query, options, fusion
        self.missing = missing
        self.ranking: Ranking = {}

    def rank(self, want: int) -> Ranking:
        self.ranking = self.index._rank(self.query, want, self.options.mode, self.fusion, self.options.where,
                                        self.missing)
        return self.ranking

    def metadata(self, doc_ids: list[str]) -> dict[str, dict]:
        return self.index._metadata({d: self.ranking[d] for d in doc_ids}, self.missing)

    def fetch(self, ranking: Ranking) -> list[Hit]:
        return self.index._fetch(ranking, self.missing)


class _Now:
    """A call made at once, its answer or error kept for `.result()` (as a future's)."""

    def __init__(self, call: Callable, args: tuple, kwargs: dict):
        try:
            self.value, self.error = call(*args, **kwargs), None
        except BaseException as e:  # noqa: B036 (given back by result())
            self.value, self.error = None, e

    def result(self):
        if self.error is not None:
            raise self.error
        return self.value


class _Later:
    """A question submitted to an asynchronous shard; a failure to submit is kept for `.result()`."""

    def __init__(self, submit: Callable, method: str, args: tuple, kwargs: dict):
        try:
            self.pending, self.error = submit(method, *args, **kwargs), None
        except BaseException as e:  # noqa: B036
            self.pending, self.error = None, e

    def result(self):
        if self.error is not None:
            raise self.error
        return self.pending.result()
