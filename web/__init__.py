"""The web search page and JSON API (Flask app factory, views, templates)."""
