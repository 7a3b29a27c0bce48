"""The search page and JSON API over a searcher index: `create_app()` builds the Flask app.

`create_app` loads on first use (PEP 562), so importing a small module of this package
(searcher.web.limits, searcher.web.server) does not build the Flask app's imports."""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str):
    if name != "create_app":
        raise AttributeError(f"module 'searcher.web' has no attribute {name!r}")
    from searcher.web.app import create_app

    globals()[name] = create_app  # later lookups skip this function
    return create_app


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
