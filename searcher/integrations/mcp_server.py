"""searcher as a Model Context Protocol server, for AI assistants (`searcher mcp`).

Built on the official `mcp` SDK (its MCPServer; the optional extra `mcp`). Tools:
`search` (query, k, mode, where), `similar` (id, k, where: more like this) and
`get_document` (id, optionally a character range). The
source is an `Index` opened once (a commit by another process shows up at the next call, as
in `searcher serve`) or a `RemoteIndex` over a running `searcher serve`. A bad argument is a
tool error with the reason (the model reads it and can correct itself), never a crash.

Access (searcher/search/access.py): over a RemoteIndex the server's key decides what the
tools see; over an Index, `access` (`searcher mcp --user NAME --groups A,B`) limits every
tool to the documents that viewer may read (None, the default: every document, as the
command line reads them). A hidden document is "no document with id ..." to every tool.
"""


# No `from __future__ import annotations` here: the SDK reads the tools' annotations at
# run time, and they name pydantic's Field, imported only where the SDK is known to be there.
import sqlite3
from typing import Annotated, Literal

from searcher.errors import SearcherError
from searcher.remote import API_MAX_K
from searcher.search.options import SearchOptions
from searcher.search.results import check_k

INSTALL_HINT = "the MCP server needs the mcp package: pip install -e '.[mcp]' (in the searcher checkout)"
MAX_K = API_MAX_K  # as `searcher serve`'s API, so both sources take the same k
MAX_TEXT = 100_000  # characters of a document one get_document call returns at most


def require_sdk():
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return MCPServer, ToolError


def hit_result(hit) -> dict:
    """One search result as the tools return it (the engine's Hit.to_dict, `doc_id` as `id`)."""
    out = hit.to_dict()
    out["id"] = out.pop("doc_id")
    out["score"] = round(float(out["score"]), 6)
    return out


def build_server(source, name: str = "searcher", access=None):
    """An MCPServer whose tools read `source` (an Index, or a RemoteIndex), as `access` (a
    Viewer: searcher/search/access.py; None: every document)."""
    from pydantic import Field

    MCPServer, ToolError = require_sdk()
    server = MCPServer(
        name=name,
        instructions=("Search the user's own documents by meaning and by keyword. Call search first, "
                      "then get_document for the full text of a result, or similar for more like it."),
    )

    as_viewer = {} if access is None else {"access": access}

    def guarded(call):
        try:
            return call()
        except (ValueError, TypeError, OverflowError) as e:  # a bad argument: the reason goes back to the model
            raise ToolError(str(e)) from None
        except (SearcherError, sqlite3.Error, OSError, RuntimeError) as e:
            # the index cannot be read right now (locked, damaged, being rebuilt), or the server is away
            raise ToolError(f"the index cannot be searched right now: {e}") from None

    @server.tool(description="Search the documents. Returns the best documents, each with its best "
                             "passage and the passage's character offsets in the document.")
    def search(
        query: Annotated[str, Field(description="What to look for, in words (a question, a phrase, an identifier)")],
        k: Annotated[int, Field(description=f"How many documents to return, 1 to {MAX_K}", ge=1, le=MAX_K)] = 10,
        mode: Annotated[Literal["hybrid", "dense", "keyword"] | None, Field(
            description="hybrid (default): meaning and words fused; dense: by meaning only; "
                        "keyword: BM25 over the words, for exact terms")] = None,
        where: Annotated[dict | None, Field(
            description='A filter on document fields, applied before ranking: {"type": "pdf"}, '
                        '{"modified": {"$gte": "2024-01-01"}}, {"folder": {"$under": "/docs"}}; operators '
                        '$eq $ne $gt $gte $lt $lte $in $nin $under $and $or $not')] = None,
    ) -> dict:
        def run():
            options = SearchOptions(k, mode=mode, where=where)  # checked once, as everywhere (the SDK checked the schema)
            hits = source.search(query, k=options.k, mode=options.mode, where=options.where, **as_viewer)
            answer = {"query": query, "results": [hit_result(h) for h in hits], "close_match": hits.close_match}
            if hits.suggestion:  # the words the index does not hold, corrected; the results are for these
                answer["suggestion"] = hits.suggestion
            return answer
        return guarded(run)

    @server.tool(description="More like this: the documents nearest in meaning to one document (by its "
                             "id, as search returned it), never the document itself.")
    def similar(
        id: Annotated[str, Field(description="The document id, as in a search result")],
        k: Annotated[int, Field(description=f"How many documents to return, 1 to {MAX_K}", ge=1, le=MAX_K)] = 10,
        where: Annotated[dict | None, Field(
            description='A filter on document fields, as search takes it: {"type": "pdf"}')] = None,
    ) -> dict:
        def run():
            check_k(k)
            try:
                hits = source.similar(id, k=k, where=where, **as_viewer)
            except KeyError:
                raise ValueError(f"no document with id {id[:200]!r}") from None
            return {"id": id, "results": [hit_result(h) for h in hits]}
        return guarded(run)

    @server.tool(description="The stored text of one document by its id (as search returned it), "
                             f"optionally only characters [start, end); at most {MAX_TEXT} characters a call.")
    def get_document(
        id: Annotated[str, Field(description="The document id, as in a search result")],
        start: Annotated[int | None, Field(description="First character to return (default 0)")] = None,
        end: Annotated[int | None, Field(description="Character after the last to return (default: the end)")] = None,
    ) -> dict:
        def run():
            doc = source.get_document(id, **as_viewer)
            if doc is None:
                raise ValueError(f"no document with id {id[:200]!r}")
            text = doc.get("text") or ""
            lo = 0 if start is None else start
            hi = len(text) if end is None else min(end, len(text))  # asking past the end is fine
            if not 0 <= lo <= len(text) or hi < lo:
                raise ValueError(f"the range [{start}, {end}) does not start within the document's "
                                 f"{len(text)} characters, or ends before it starts")
            hi = min(hi, lo + MAX_TEXT)
            return {"id": doc.get("id", id), "title": doc.get("title") or "", "source": doc.get("source") or "",
                    "metadata": doc.get("metadata") or {}, "start": lo, "end": hi, "length": len(text),
                    "text": text[lo:hi]}
        return guarded(run)

    return server


def serve(source, http_port: int | None = None, access=None) -> None:
    """Serve over stdio (what an assistant launches), or streamable HTTP on 127.0.0.1:PORT,
    answering the Host names `searcher serve` answers (searcher/hosts.py: 421 for another
    name, 403 for another site's Origin, against DNS rebinding)."""
    from searcher.hosts import HostRule

    server = build_server(source, access=access)
    if http_port is None:
        server.run("stdio")
    else:
        server.run("streamable-http", host="127.0.0.1", port=http_port,
                   transport_security=HostRule("127.0.0.1").mcp_security())
