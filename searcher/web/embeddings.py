"""The encoder as a service, OpenAI-compatible: POST /v1/embeddings and GET /v1/models, so the
`openai` client (`base_url=URL + "/v1"`), LangChain's OpenAIEmbeddings and the like encode
with a served index's model, exactly as that index encodes (`Index.embed`: its prefixes,
pooling and normalisation; concurrent requests share forward passes with each other and with
searches, searcher/encoding/queries.py).

The keys and scopes are /api/search's: a read key may encode (searcher/web/auth.py lets this
one POST through as a read). Which index's model: ?index=NAME, else the first index the
caller may read whose model the request names, else the default index.
"""

from __future__ import annotations

import base64
import json

import numpy as np
from flask import Blueprint, current_app, request

from searcher.errors import SearcherError
from searcher.index.facade import INPUT_TYPES

from searcher.web import indexes
from searcher.web.errors import json_error
from searcher.web.limits import MAX_EMBED_INPUTS
from searcher.web.service import model_name

bp = Blueprint("embeddings", __name__, url_prefix="/v1")
ENCODING_FORMATS = ("float", "base64")
INPUT_TYPE_NAMES = {**{name: name for name in INPUT_TYPES}, "passage": "document"}


class Refused(Exception):
    """A request this endpoint refuses: its status and reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def index_model(index) -> str:
    """The model an open index (single or sharded) was built with, as its manifest names it."""
    layout = getattr(index, "layout", None)
    return (layout if isinstance(layout, dict) else index.manifest)["model"]


def listed(index) -> str:
    """The model's name as /v1/models lists it (a model folder by its name, never a server path)."""
    return model_name(index_model(index))


def names_model(index, model: str) -> bool:
    """Whether `model` names this index's model: as /v1/models lists it, as the manifest holds
    it, or an organisation's name for it (sentence-transformers/all-MiniLM-L6-v2)."""
    name = listed(index)
    return model in (name, index_model(index)) or model.rsplit("/", 1)[-1] == name


def pick_index(model: str | None) -> tuple[str, object]:
    """(name, open index) whose model encodes this request (see the module's docstring)."""
    if indexes.requested() is None and model is not None:
        for name in indexes.allowed_names():
            index = indexes.registry()[name].index
            if names_model(index, model):
                return name, index
    name, service = indexes.current()  # aborts for an unknown or forbidden ?index=
    index = service.index
    if model is not None and not names_model(index, model):
        served = sorted({listed(indexes.registry()[n].index) for n in indexes.allowed_names()})
        raise Refused(404, f"the model {model[:200]!r} is not served here: index {name!r} encodes with "
                           f"{listed(index)!r} (GET /v1/models lists {', '.join(map(repr, served))})")
    return name, index


def parse_input(value) -> list:
    """`input` as a list of texts or of token-id lists; Refused with the reason otherwise."""
    def token_list(x):
        return isinstance(x, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in x)

    if isinstance(value, str):
        return [value]
    if token_list(value) and value:  # one input given as its token ids
        return [value]
    if not isinstance(value, list) or not value:
        raise Refused(400, "input must be a text, a non-empty list of texts, or a list of token-id lists")
    if len(value) > MAX_EMBED_INPUTS:
        raise Refused(413, f"input holds {len(value)} items; one request encodes at most {MAX_EMBED_INPUTS}: "
                           f"send them in several requests")
    for position, item in enumerate(value):
        if not isinstance(item, str) and not token_list(item):
            raise Refused(400, f"input[{position}] is neither a text nor a list of token ids (integers)")
    return value


def option(body: dict, name: str, allowed: dict | tuple, default):
    value = body.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise Refused(400, f"{name} must be one of {', '.join(map(str, allowed))}, not {str(value)[:60]!r}")
    return allowed[value] if isinstance(allowed, dict) else value


def encode_vector(vector: np.ndarray, encoding_format: str):
    """A vector as OpenAI sends it: a list of floats, or base64 of little-endian float32."""
    if encoding_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def answer(body: dict) -> dict:
    """The embeddings response for a parsed request body (Refused for a bad one)."""
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise Refused(400, "model must be a string (GET /v1/models lists the models served)")
    items = parse_input(body.get("input"))
    encoding_format = option(body, "encoding_format", ENCODING_FORMATS, "float")
    input_type = option(body, "input_type", INPUT_TYPE_NAMES, "document")
    truncate = body.get("truncate", True)
    if not isinstance(truncate, bool):
        raise Refused(400, "truncate must be true (cut texts longer than the model reads) or false (refuse them)")
    name, index = pick_index(model)
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != index_dimension(index):
        raise Refused(400, f"dimensions cannot be chosen: {listed(index)!r} gives vectors of "
                           f"{index_dimension(index)} dimensions, and shortened vectors would not match the index's")
    try:
        vectors, tokens = index.embed(items, input_type, truncate=truncate)
    except (ValueError, TypeError) as e:  # an input too long with truncate false, a token id out of range
        raise Refused(400, str(e)) from e
    except SearcherError as e:  # an index without a model in this process (shards served on Ray)
        raise Refused(501, f"index {name!r} cannot encode here: {e}") from e
    return {"object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)}
                     for i, v in enumerate(vectors)],
            "model": model if model is not None else listed(index),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def index_dimension(index) -> int:
    layout = getattr(index, "layout", None)
    return int((layout if isinstance(layout, dict) else index.manifest)["dimension"])


@bp.post("/embeddings")
def embeddings():
    """{"input": text | [texts] | [[token ids]], "model"?, "encoding_format"?: float | base64,
    "input_type"?: query | document, "truncate"?: true, "dimensions"?: the model's} ->
    {"object": "list", "data": [{"object": "embedding", "index", "embedding"}], "model", "usage"}."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        return json_error(400, 'the body must be a JSON object such as {"input": ["a text"], "model": "NAME"}',
                          "Bad Request")
    try:
        out = answer(body)
    except Refused as e:
        return json_error(e.status, str(e), {400: "Bad Request", 404: "Not Found", 413: "Payload Too Large",
                                             501: "Not Implemented"}.get(e.status))
    # Written here rather than by the app's JSON provider: a float answer holds up to
    # MAX_EMBED_INPUTS x dimension numbers, all finite, which that provider would walk one by one.
    return current_app.response_class(json.dumps(out, separators=(",", ":")), mimetype="application/json")


@bp.get("/models")
def models():
    """The models this caller may encode with (one per distinct model of the indexes it may read)."""
    names = dict.fromkeys(listed(indexes.registry()[n].index) for n in indexes.allowed_names())
    return {"object": "list", "data": [model_entry(name) for name in names]}


@bp.get("/models/<path:model>")
def model(model: str):
    for name in indexes.allowed_names():
        if names_model(indexes.registry()[name].index, model):
            return model_entry(listed(indexes.registry()[name].index))
    return json_error(404, f"the model {model[:200]!r} is not served here (GET /v1/models lists those that are)",
                      "Not Found")


def model_entry(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "searcher"}

