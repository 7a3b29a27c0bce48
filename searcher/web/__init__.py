"""The search page and JSON API over a searcher index: `create_app()` builds the Flask app."""

from searcher.web.app import create_app

__all__ = ["create_app"]
