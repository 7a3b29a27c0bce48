"""Readers: files and folders to documents (every format, the folder walk, the worker pool)."""
