"""How large a request body may be: the app's limits (searcher/web/app.py), which `searcher serve
--max-write-mb` defaults to. Standard library only, so the CLI reads them without loading Flask
or waitress."""

MAX_BODY_BYTES = 64 * 1024  # reads take no bodies: Flask answers larger ones with a JSON 413
MAX_WRITE_BYTES = 4 * 1024 * 1024  # POST /api/documents (create_app(max_write_bytes=), serve --max-write-mb)
MAX_EMBED_BYTES = 2 * 1024 * 1024  # POST /v1/embeddings (searcher/web/embeddings.py)
MAX_EMBED_INPUTS = 2048  # inputs one POST /v1/embeddings encodes at most (as OpenAI's API)
DEFAULT_BATCH_WAIT_MS = 0.0  # serve --batch-wait-ms: an encoder pass not full waits this long (searcher/encoding/queries.py)
