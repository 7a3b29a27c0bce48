"""A peer encoder for benchmarks/encode.py, run as a subprocess in the peer's own Python
(a separate virtual environment, so that its pins do not touch searcher's):

    PEER_PYTHON benchmarks/encode_peer.py fastembed MODEL_DIR MAX_TOKENS BATCH THREADS
    PEER_PYTHON benchmarks/encode_peer.py infinity  MODEL_DIR MAX_TOKENS BATCH THREADS

It loads the model from MODEL_DIR offline (for fastembed: a folder holding an ONNX export of
the checkpoint as model.onnx beside its tokenizer files, registered with
TextEmbedding.add_custom_model and loaded with specific_model_path; for infinity-emb: the
checkpoint folder, its torch engine on the CPU), prints one JSON line {"ready": ...}, then
answers requests read from stdin, one JSON line each: {"texts": FILE, "out": FILE}: encode
the texts of FILE (a JSON list), save the unit vectors to the .npy FILE and print
{"seconds": encoding time} (tokenisation included, file reading not). Only numpy and the
peer's own package are imported here.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def fastembed_encoder(model_dir: str, max_tokens: int, batch: int, threads: int):
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    name = f"local/all-MiniLM-L6-v2-{max_tokens}"
    TextEmbedding.add_custom_model(model=name, pooling=PoolingType.MEAN, normalization=True,
                                   sources=ModelSource(hf="local/none"), dim=384, model_file="model.onnx")
    model = TextEmbedding(model_name=name, specific_model_path=model_dir, threads=threads,
                          local_files_only=True)

    def encode(texts):
        return np.asarray(list(model.embed(texts, batch_size=batch)), dtype=np.float32)

    return encode, model.model.model.get_providers()


def infinity_encoder(model_dir: str, max_tokens: int, batch: int, threads: int):
    import asyncio

    from infinity_emb import AsyncEngineArray, EngineArgs

    args = EngineArgs(model_name_or_path=model_dir, engine="torch", device="cpu", batch_size=batch,
                      model_warmup=False, bettertransformer=False, compile=False)
    array = AsyncEngineArray.from_args([args])
    engine = array[0]
    loop = asyncio.new_event_loop()
    loop.run_until_complete(engine.astart())

    def encode(texts):
        vectors, _ = loop.run_until_complete(engine.embed(sentences=list(texts)))
        out = np.asarray(vectors, dtype=np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return encode, f"infinity torch, max tokens as the checkpoint's ({max_tokens} asked)"


def main() -> None:
    kind, model_dir, max_tokens, batch, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    reply = sys.stdout  # the protocol's; whatever the libraries print goes to stderr
    sys.stdout = sys.stderr
    encode, info = {"fastembed": fastembed_encoder, "infinity": infinity_encoder}[kind](
        model_dir, max_tokens, batch, threads)
    encode(["warm up", "a second text"])
    print(json.dumps({"ready": str(info)}), file=reply, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        with open(request["texts"], encoding="utf-8") as fh:
            texts = json.load(fh)
        started = time.perf_counter()
        vectors = encode(texts)
        seconds = time.perf_counter() - started
        np.save(request["out"], vectors)
        print(json.dumps({"seconds": seconds}), file=reply, flush=True)


if __name__ == "__main__":
    main()
    os._exit(0)  # infinity's batching threads would hold the exit
