"""A running `searcher serve`, read through its JSON API with the same calls as an `Index`
(search, get_document, len), for clients that live elsewhere: the MCP server's and the
retrievers' `url=` mode. Standard library only.

The API's errors keep their meaning: a 400 (a bad k, an unknown mode) is a ValueError with
the server's reason; a server that cannot be reached or answers 5xx is a SearcherError.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from .errors import SearcherError
from .retrieval import Hit

API_MAX_K = 100  # what /api/search serves at most


class RemoteIndex:
    def __init__(self, url: str, timeout: float = 30.0):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"a searcher server URL looks like http://127.0.0.1:8000, not {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict) -> dict | None:
        """The JSON answer of GET path?params; None for a 404."""
        address = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(address, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            try:
                reason = json.loads(e.read()).get("message", e.reason)
            except (ValueError, AttributeError):
                reason = e.reason
            if 400 <= e.code < 500:
                raise ValueError(str(reason)) from None
            raise SearcherError(f"{self.url} answered {e.code}: {reason}") from None
        except (urllib.error.URLError, OSError) as e:
            raise SearcherError(f"cannot reach the searcher server at {self.url}: {e}") from None

    def search(self, query: str, k: int = 10, offset: int = 0, mode: str | None = None) -> list[Hit]:
        """The server's top `k` (at most API_MAX_K) as Hits; their metadata is not in the API's
        results (get_document has it) and chunk_id is -1."""
        params = {"q": query, "k": k, "offset": offset}
        if mode is not None:
            params["mode"] = mode
        page = self._get("/api/search", params) or {"results": []}
        return [Hit(r["doc_id"], float(r["score"]), r.get("title") or "", r.get("source") or "", r["passage"],
                    int(r["start"]), int(r["end"]), -1, {}, r.get("page")) for r in page["results"]]

    def get_document(self, doc_id: str) -> dict | None:
        return self._get("/api/documents", {"id": doc_id})

    def __len__(self) -> int:
        return int((self._get("/api/health", {}) or {}).get("documents", 0))

    def close(self) -> None:
        pass
