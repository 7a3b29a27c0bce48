"""The index's own report: /about (a page) and /api/about (the same data as JSON).

What model encodes and with what precision, the vector index type and its search
parameters, counts and sizes on disk, the keyword engine, the generation and when it was
committed, the last `searcher eval` figures stored in the index (`eval --index`), and this
server's recent search latencies. Everything is read through `SearchService.about`, so a
damaged index gets the same 503 as a search. No server paths are shown.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, jsonify, render_template

from searcher.web.indexes import current, current_service as service

bp = Blueprint("about", __name__)


def about_data() -> dict:
    """/api/about's body, grouped as the page shows it."""
    info = service().about()
    return {
        "model": {
            "name": info.get("model"), "dimension": info.get("dimension"), "pooling": info.get("pooling"),
            "precision": info.get("precision"), "backend": info.get("backend"), "device": info.get("device"),
        },
        "index": {
            "type": info.get("index_type"), "factory": info.get("index_factory"),
            "vector_backend": info.get("vector_backend"), "search_params": info.get("search_params") or {},
            "chunk_tokens": info.get("chunk_tokens"), "overlap": info.get("overlap"),
            "generation": info.get("generation"), "committed_at": info.get("committed_at"),
            "created_at": info.get("created_at"),
        },
        "counts": {k: info.get(k) for k in ("documents", "chunks", "vectors")},
        "disk": info.get("disk") or {"total": info.get("size_bytes")},
        "keywords": {"engine": info.get("keyword_engine"), "pending": info.get("keyword_pending")},
        "evaluations": [{**{k: v for k, v in e.items() if k != "dataset_path"}, "metrics": e.get("metrics") or {}}
                        for e in info.get("evaluations") or []],
        "latency": info["latency"],
    }


def human_bytes(n) -> str:
    """1536 -> "1.5 KiB"."""
    if n is None:
        return "—"
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size):,} bytes" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} TiB"  # pragma: no cover


def when(iso: str | None) -> str:
    """An ISO 8601 time as "2026-12-01 14:03:07 UTC" (as given when it does not parse)."""
    if not iso:
        return "—"
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return iso


def metric_names(evaluations: list[dict]) -> list[str]:
    """The metrics of every stored evaluation, in the order they first appear (the table's columns)."""
    return list(dict.fromkeys(name for e in evaluations for name in e["metrics"]))


@bp.get("/about")
def about():
    data = about_data()
    return render_template("about.html", about=data, index_name=current()[0], metrics=metric_names(data["evaluations"]),
                           human_bytes=human_bytes, when=when, q="")


@bp.get("/api/about")
def api_about():
    """The same data as /about: model, index, counts, disk, keywords, evaluations, latency."""
    return jsonify(about_data())
