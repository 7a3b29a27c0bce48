"""Storage: an index folder on disk (the SQLite store, the folder and its commits, vectors, keywords)."""
