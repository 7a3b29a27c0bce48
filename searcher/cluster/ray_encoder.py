"""Encoding on Ray: a Ray Data actor pool turns the writer's chunks into vectors.

The driver reads and chunks the files and commits exactly as a local build does
(searcher/index/writer.py): `RayEncoder` stands in for the local encoder where the writer asks for
vectors (`encode_ids`, once per commit), so no worker ever writes the index and a killed run
resumes from its last commit. Each call is one Ray Data job: the chunks' token ids, longest
first, in blocks of `batch_size`, mapped by `ChunkEncoder` actors (`map_batches` with a
callable class: the model loads once per actor, on one GPU each in fp16 where the cluster has
GPUs, else on CPU with the int8 path a local build uses), and the vectors stream back to the
driver, which puts them in place by row number.

Costs against a local build: starting the actors (Python's imports and the model, 4-7 s on
a 2-CPU machine) once per commit, and moving token ids and vectors (about 2.5 KB a chunk).
Few, large commits keep them small (`searcher index --commit-every`).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np

from searcher.encoding.encoder import ModelError
from searcher.cluster.ray_cluster import LocalRay, RayError, import_ray, ray_session

DEFAULT_BATCH = 256  # chunks per Ray batch: a few seconds of CPU work, under a second on a GPU
START_TIMEOUT = 600  # seconds the workers may take to start (a node's first run exports the ONNX model)


class ChunkEncoder:
    """The callable class of `map_batches`: loads the model once, then encodes batches of
    {"row", "ids"} into {"row", "vector", "node"} (the node id, to show where work ran)."""

    def __init__(self, model: str, fingerprint: str, pooling: str, precision: str, device: str,
                 threads: int | None, forward_batch: int):
        import ray

        from searcher.encoding.encoder import Encoder

        self.node = ray.get_runtime_context().get_node_id()
        self.encoder = Encoder(model, device=device, pooling=pooling, batch_size=forward_batch,
                               precision=precision)
        if self.encoder.fingerprint != fingerprint:
            raise ModelError(f"Ray node {self.node}: model {model} there is not the index's "
                             f"(fingerprint {self.encoder.fingerprint}, expected {fingerprint})")
        if self.encoder.onnx is not None and threads:
            self.encoder.onnx.threads = threads  # the CPUs Ray gave this actor, not the node's

    def __call__(self, batch: dict) -> dict:
        vectors = self.encoder.encode_ids(list(batch["ids"]))
        return {"row": batch["row"], "vector": vectors, "node": np.full(len(vectors), self.node)}


class RayEncoder:
    """What the writer needs of an encoder (its tokenizer and special tokens, from the loaded
    `local` encoder of the index), with `encode_ids` run on a Ray Data actor pool of `workers`
    actors (default: one per GPU, else one per node), spread over the nodes.

    `gpus_per_worker`: None: 1 where the cluster has GPUs, else 0. A CPU actor gets the
    cluster's CPUs divided among the workers (at most a node's). Each job waits for all its
    workers to start (at most `start_timeout` seconds) before it hands out work, so that the
    work spreads over all of them. Ray must be connected (searcher.cluster.ray_cluster.ray_session).
    `nodes` counts the chunks each node encoded.
    """

    def __init__(self, local, workers: int | None = None, batch_size: int = DEFAULT_BATCH,
                 gpus_per_worker: float | None = None, start_timeout: float = START_TIMEOUT):
        ray = import_ray()
        if not ray.is_initialized():
            raise RayError("RayEncoder needs a connected Ray (searcher.cluster.ray_cluster.ray_session)")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.local = local
        self.tokenizer = local.tokenizer
        self.with_special_tokens = local.with_special_tokens
        self.name, self.fingerprint, self.dimension = local.name, local.fingerprint, local.dimension
        self.batch_size = batch_size
        self.start_timeout = start_timeout
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        total = ray.cluster_resources()
        self.gpus_per_worker = (1 if total.get("GPU", 0) >= 1 else 0) if gpus_per_worker is None else gpus_per_worker
        self.workers = workers or (int(total["GPU"] // self.gpus_per_worker) if self.gpus_per_worker else len(nodes))
        largest = max((n["Resources"].get("CPU", 0) for n in nodes), default=1)
        self.cpus_per_worker = 1 if self.gpus_per_worker else max(1, min(int(largest),
                                                                         int(total.get("CPU", 1)) // self.workers))
        self.device = "cuda" if self.gpus_per_worker else "cpu"
        need = {"CPU": self.workers * self.cpus_per_worker, "GPU": self.workers * self.gpus_per_worker}
        short = [f"{need[k]:g} {k}s" for k in need if need[k] > total.get(k, 0)]
        if short:  # Ray Data would wait for them for ever
            raise RayError(f"{self.describe()} need {' and '.join(short)}; the Ray cluster has "
                           f"{total.get('CPU', 0):g} CPUs and {total.get('GPU', 0):g} GPUs (use fewer workers)")
        self.nodes: Counter[str] = Counter()
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line for each job
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"

    def describe(self) -> str:
        """E.g. "2 Ray workers (1 CPU each, int8)"."""
        kind = (f"{self.gpus_per_worker:g} GPU" if self.gpus_per_worker
                else f"{self.cpus_per_worker} CPU{'s' if self.cpus_per_worker > 1 else ''}")
        fast = "fp16" if self.gpus_per_worker else "int8"
        return (f"{self.workers} Ray worker{'s' if self.workers > 1 else ''} ({kind} each, "
                f"{fast if self.local.precision == 'fast' else 'fp32'})")

    def encode_ids(self, input_ids: Sequence[Sequence[int]], batch_size: int | None = None,
                   progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Encode already-tokenized inputs (special tokens included) on the actor pool; an
        (n, dimension) float32 array of unit vectors in input order, as Encoder.encode_ids.
        `batch_size`: chunks per forward pass in each actor."""
        ray = import_ray()
        out = np.empty((len(input_ids), self.dimension), dtype=np.float32)
        if len(input_ids) == 0:
            return out
        order = sorted(range(len(input_ids)), key=lambda i: -len(input_ids[i]))  # little padding
        items = [{"row": i, "ids": np.asarray(input_ids[i], dtype=np.int32)} for i in order]
        blocks = math.ceil(len(items) / self.batch_size)
        local = self.local
        dataset = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
            ChunkEncoder,
            fn_constructor_kwargs=dict(model=local.name, fingerprint=local.fingerprint, pooling=local.pooling,
                                       precision=local.precision, device=self.device,
                                       threads=self.cpus_per_worker, forward_batch=batch_size or local.batch_size),
            compute=ray.data.ActorPoolStrategy(size=min(self.workers, blocks)),
            batch_size=self.batch_size, batch_format="numpy",
            num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
        )  # Ray Data spreads an actor pool over the nodes (its default scheduling strategy, SPREAD)
        context = dataset.context  # this job's own settings
        context.enable_progress_bars = False  # the caller shows progress
        context.print_on_execution_start = False
        context.wait_for_min_actors_s = max(1, math.ceil(self.start_timeout))
        done = np.zeros(len(input_ids), dtype=bool)
        try:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                rows = batch["row"]
                out[rows] = batch["vector"]
                done[rows] = True
                self.nodes.update(batch["node"].tolist())
                if progress:
                    progress(len(rows))
        except ray.exceptions.RayError as e:  # its message ends with the worker's own error
            reason = (str(e).strip().splitlines() or [type(e).__name__])[-1].strip()
            raise RayError(f"encoding on Ray failed (nothing of this commit was written): {reason}") from e
        if not done.all():
            raise RayError(f"encoding on Ray returned {int(done.sum())} of {len(done)} vectors")
        return out


@contextmanager
def ray_encoder(local, address: str | None = "local", workers: int | None = None, batch_size: int = DEFAULT_BATCH,
                local_ray: LocalRay = LocalRay()) -> Iterator[RayEncoder]:
    """A RayEncoder for the duration of the block, on Ray at `address` (searcher.cluster.ray_cluster:
    `local`, `auto`, HOST:PORT, ray://HOST:PORT); Ray is left as it was found."""
    with ray_session(address, local_ray):
        yield RayEncoder(local, workers, batch_size)
