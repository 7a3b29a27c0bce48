"""A running `searcher serve`, read through its JSON API with the same calls as an `Index`
(searcher/search/protocol.py: SearchableIndex), for clients that live elsewhere: `searcher.connect`,
the MCP server's and the retrievers' `url=` mode. Standard library only: a client needs
neither the model nor Ray ("encode on a server, query from a thin client").

The API's errors keep their meaning: a 400 (a bad k, an unknown mode) is a ValueError with
the server's reason; a server that cannot be reached or answers 5xx is a SearcherError.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from array import array
from typing import Iterable, Sequence

from searcher.errors import SearcherError
from searcher.search.facets import DEFAULT_FACETS
from searcher.search.query import ParsedQuery, escape
from searcher.search.results import Hit, Results

API_MAX_K = 100  # what /api/search serves at most
ENCODE_BATCH = 256  # texts per POST /v1/embeddings of RemoteIndex.encode (the server takes up to 2048)
log = logging.getLogger(__name__)
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$")


class RemoteIndex:
    """`index`: which of the server's indexes to read (`serve --index NAME=DIR`; every call
    sends ?index=NAME); None reads the server's default index. `api_key`: a key of the
    server's key file (`serve --api-keys`), sent as `Authorization: Bearer KEY`."""

    def __init__(self, url: str, timeout: float = 30.0, index: str | None = None, api_key: str | None = None):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"a searcher server URL looks like http://127.0.0.1:8000, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.index = index
        self.api_key = api_key

    def _open(self, address: str, body: dict | None = None):
        """urlopen of a GET (or with `body`, a JSON POST), with the key when there is one."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        return urllib.request.urlopen(urllib.request.Request(address, data=data, headers=headers),
                                      timeout=self.timeout)

    def _get(self, path: str, params: dict, missing_ok: bool = False, degraded_ok: bool = False,
             post: dict | None = None) -> dict | None:
        """The JSON object GET path?params answers; None for the API's own 404 when `missing_ok`;
        with `degraded_ok`, a 503 that names missing shards (a sharded server answering in part)
        is returned as the answer. Anything that is not a searcher server's answer is a
        SearcherError saying so."""
        if self.index is not None:
            params = {**params, "index": self.index}
        address = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with self._open(address, post) as response:
                body = response.read()
        except urllib.error.HTTPError as e:
            answer = _json(e.read())
            reason = e.reason
            if isinstance(answer, dict):  # searcher's error shape, or OpenAI's (/v1)
                error = answer.get("error")
                reason = answer.get("message", error.get("message", e.reason) if isinstance(error, dict) else e.reason)
            if e.code == 503 and degraded_ok and isinstance(answer, dict) and answer.get("missing_shards"):
                return answer
            if e.code == 404 and missing_ok and isinstance(answer, dict) and answer.get("error") == "not_found" \
                    and not str(answer.get("message", "")).startswith("no index named"):
                return None
            if 400 <= e.code < 500 and e.code != 404 and isinstance(answer, dict) and reason != e.reason:
                raise ValueError(str(reason)) from None
            raise SearcherError(f"{address} answered {e.code} ({reason}): is {self.url} a searcher server?") from None
        except (urllib.error.URLError, OSError) as e:
            raise SearcherError(f"cannot reach the searcher server at {self.url}: {e}") from None
        answer = _json(body)
        if not isinstance(answer, dict):
            raise SearcherError(f"{address} did not answer with JSON: is {self.url} a searcher server?")
        return answer

    def check(self) -> int:
        """That the URL is a searcher server whose index can be read: its document count (an
        index the server does not serve is a SearcherError, from its 404). A sharded index with
        shards down still counts as readable (its searches answer in part, marked partial); the
        count is then of the shards that answered, 0 if the server gives none."""
        health = self._get("/api/health", {}, degraded_ok=True)
        if health.get("missing_shards"):
            log.warning("%s: shards %s do not answer; searches will be partial", self.url,
                        ", ".join(map(str, health["missing_shards"])))
            return int(health.get("documents", 0))
        if health.get("status") != "ok":
            raise SearcherError(f"{self.url} is not a searcher server, or its index cannot be read: {health}")
        return int(health.get("documents", 0))

    def search(self, query: str | ParsedQuery, k: int = 10, offset: int = 0, mode: str | None = None,
               where: dict | None = None, sort: str | None = None, recency: float | None = None,
               syntax: bool = True) -> Results:
        """The server's top `k` (at most API_MAX_K) as Hits, filtered by `where` and ordered by
        `sort`/`recency` as Index.search is; their metadata is not in the API's results
        (get_document has it) and chunk_id is -1. The server reads the query's syntax; with
        `syntax=False` the text goes escaped, so it reads plain words."""
        return self.search_with_facets(query, k, offset, (), mode=mode, where=where, sort=sort, recency=recency,
                                       syntax=syntax)[0]

    def search_with_facets(self, query: str | ParsedQuery, k: int = 10, offset: int = 0,
                           fields: Iterable[str] = DEFAULT_FACETS, *, mode: str | None = None,
                           where: dict | None = None, sort: str | None = None, recency: float | None = None,
                           syntax: bool = True) -> tuple[Results, dict[str, dict]]:
        """`search`, and the server's counts of `fields` among the ranking's best documents.
        A ParsedQuery goes as its text (the server parses it again, with its own fields)."""
        if isinstance(fields, str):
            raise TypeError("fields is a list of field names, not one string")
        if isinstance(query, ParsedQuery):
            query, syntax = query.text, not query.plain
        if not syntax and isinstance(query, str):
            query = escape(query)
        fields = list(fields)
        params = {"q": query, "k": k, "offset": offset, "mode": mode, "sort": sort, "recency": recency,
                  "facets": ",".join(fields) or None}
        params = {name: value for name, value in params.items() if value is not None}
        if where is not None:
            params["where"] = json.dumps(where)
        answer = self._get("/api/search", params)
        return self._hits("/api/search", answer), (answer.get("facets") or {}) if fields else {}

    def similar(self, doc_id: str, k: int = 10, where: dict | None = None) -> Results:
        """The documents the server finds nearest in meaning to `doc_id` (never itself), as
        Index.similar; KeyError when the server has no such document."""
        params: dict = {"id": doc_id, "k": k}
        if where is not None:
            params["where"] = json.dumps(where)
        answer = self._get("/api/similar", params, missing_ok=True)
        if answer is None:
            raise KeyError(f"no document with id {doc_id!r}")
        return self._hits("/api/similar", answer)

    def _hits(self, path: str, answer: dict) -> Results:
        """The answer's results as Hits; `missing_shards`: the shards of a sharded index behind
        the server that did not answer (the API's "partial": true)."""
        try:
            return Results([Hit(r["doc_id"], float("nan") if r.get("score") is None else float(r["score"]),
                        r.get("title") or "", r.get("source") or "", r["passage"], int(r["start"]), int(r["end"]),
                        -1, {}, r.get("page"), _number(r.get("cosine")), _number(r.get("bm25")))
                            for r in answer["results"]],
                           [str(name) for name in answer.get("missing_shards") or ()],
                           answer.get("suggestion"), answer.get("close_match"))
        except (KeyError, TypeError, ValueError) as e:
            raise SearcherError(f"{self.url}{path} answered in a shape this client does not know ({e!r})") from None

    def get_document(self, doc_id: str) -> dict | None:
        return self._get("/api/documents", {"id": doc_id}, missing_ok=True)

    def info(self) -> dict:
        """The server's report of its index, with Index.info's names (/api/stats: documents,
        chunks, model, dimension, pooling, chunk_tokens, overlap, generation)."""
        return self._get("/api/stats", {})

    def encode(self, texts: str | Sequence[str], *, input_type: str = "document", batch_size: int | None = None,
               truncate: bool = True):
        """The server's vectors for `texts`, as its index encodes them (POST /v1/embeddings,
        `batch_size` texts a request, ENCODE_BATCH by default): a float32 numpy array (n,
        dimension), or a list of lists where numpy is not installed. `input_type`: "document"
        or "query" (see Index.encode); a text longer than the model reads is cut, or with
        `truncate=False` a ValueError."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        batch_size = ENCODE_BATCH if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        rows: list[list[float]] = []
        for start in range(0, len(texts), batch_size):
            body = {"input": texts[start:start + batch_size], "encoding_format": "base64",
                    "input_type": input_type, "truncate": truncate}
            answer = self._get("/v1/embeddings", {}, post=body)
            try:
                for item in sorted(answer["data"], key=lambda d: d["index"]):
                    floats = array("f", base64.b64decode(item["embedding"]))
                    if sys.byteorder == "big":  # the server sends little-endian float32
                        floats.byteswap()
                    rows.append(floats.tolist())
            except (KeyError, TypeError, ValueError) as e:
                raise SearcherError(f"{self.url}/v1/embeddings answered in a shape this client does not know "
                                    f"({e!r})") from None
        try:
            import numpy as np
        except ImportError:
            return rows
        if not rows:
            return np.zeros((0, 0), np.float32)
        return np.asarray(rows, dtype=np.float32)

    def __len__(self) -> int:
        return self.check()

    def close(self) -> None:
        pass


def connect(address: str, timeout: float = 30.0, index: str | None = None, api_key: str | None = None) -> RemoteIndex:
    """A client of the `searcher serve` at `address` (http://host:port, single or sharded
    index behind it) with Index's reading API: search (k, offset, mode, where, sort, recency),
    similar, get_document, len. It checks the server answers first, so a wrong address fails
    here (SearcherError), not at the first search. `index`: which of the server's indexes
    (`serve --index NAME=DIR`); None, its default. `api_key`: a key of the server's key file
    (read scope is enough). A bare HOST:PORT means http://HOST:PORT."""
    if isinstance(address, str) and _HOST_PORT.match(address):
        address = f"http://{address}"  # HOST:PORT, as `searcher serve --host --port` printed it
    if not isinstance(address, str) or not address.startswith(("http://", "https://")):
        raise ValueError(f"searcher.connect takes the URL of a `searcher serve`, such as http://127.0.0.1:8000 "
                         f"(or 127.0.0.1:8000), not {address!r}")
    client = RemoteIndex(address, timeout=timeout, index=index, api_key=api_key)
    client.check()
    return client


def _json(body: bytes):
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _number(value) -> float | None:
    return None if value is None else float(value)
