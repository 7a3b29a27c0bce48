"""The search page's templates and static files (installed as `searcher.web.ui`; the Flask app
is searcher/web/)."""
