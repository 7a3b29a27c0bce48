"""Starting or joining Ray, for whatever runs on it (encoding now, serving later).

Ray is an optional extra (`pip install -e '.[ray]'`): nothing here imports it until asked.
Addresses: `local` starts a Ray of this process's own on this machine (stopped at the end),
`auto` joins the cluster `ray start` made on this machine (or the one RAY_ADDRESS names),
`HOST:PORT` a head node's GCS, `ray://HOST:PORT` a head's Ray Client server. A process that is
already connected (ray.init called by the caller) keeps its connection, whatever the address.

A local Ray stays on loopback: Ray gives its nodes the network interface's address, even with
--node-ip-address=127.0.0.1, unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is set before Ray is
imported; then it uses 127.0.0.1 (and `ray.cluster_utils.Cluster` runs several nodes there).
"""

from __future__ import annotations

import os
import re
import socket
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from searcher.errors import SearcherError

INSTALL_HINT = "Ray is not installed: pip install -e '.[ray]' (or pip install 'ray[data,serve]')"
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray's nodes use 127.0.0.1
ADDRESS_FORMS = "local, auto, HOST:PORT or ray://HOST:PORT"
_HOST_PORT = re.compile(r"^(?:ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class RayError(SearcherError):
    """Ray is missing, or the Ray named cannot be reached or used."""


@dataclass(frozen=True)
class LocalRay:
    """How big a Ray this process starts itself (`local`) may be: it shares the machine."""

    num_cpus: int | None = None  # None: Ray's default, one per core
    num_gpus: int | None = None  # None: the GPUs Ray finds
    object_store_mb: int = 256  # Ray's default is 30% of the memory
    loopback: bool = True  # its nodes on 127.0.0.1 (LOOPBACK_ENV)


def import_ray(loopback: bool = False):
    """The `ray` module, or RayError with the install command. `loopback` sets LOOPBACK_ENV
    first (it is read once, when Ray is imported)."""
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra)
    except ImportError as e:
        raise RayError(f"{INSTALL_HINT} ({e})") from e
    return ray


def check_address(address: str | None) -> str:
    """The address as given (None is `local`); RayError for what cannot be a Ray address, or
    for a HOST:PORT where nothing listens (Ray itself would wait minutes for it)."""
    address = "local" if address is None or address == "" else str(address).strip()
    if address in ("local", "auto"):
        return address
    match = _HOST_PORT.match(address)
    if not match:
        hint = "; it is a path: put --ray after the paths to index" if os.path.exists(address) else ""
        raise RayError(f"{address!r} is not a Ray address (use {ADDRESS_FORMS}){hint}")
    host, port = match.group(1).strip("[]"), int(match.group(2))
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise RayError(f"no Ray at {address}: {host}:{port} does not answer ({e}); start the head "
                       f"node with `ray start --head` there, or use --ray alone for a local Ray") from e
    return address


@contextmanager
def ray_session(address: str | None = "local", local: LocalRay = LocalRay()) -> Iterator:
    """Ray for the duration of the block (yields the `ray` module): this process's connection if
    it has one, else a new one to `address` (see the module docstring). Only a connection made
    here is closed at the end, which also stops a local Ray started here."""
    address = check_address(address)
    ray = import_ray(loopback=address == "local" and local.loopback)
    if ray.is_initialized():
        yield ray
        return
    if address == "local":
        kwargs = dict(address="local", num_cpus=local.num_cpus, num_gpus=local.num_gpus,
                      object_store_memory=local.object_store_mb * 2**20, include_dashboard=False)
    else:
        kwargs = dict(address=address)
    try:
        ray.init(**kwargs, logging_level="warning", configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise RayError(f"cannot connect to Ray at {address}: {e}") from e
    try:
        yield ray
    finally:
        ray.shutdown()


def node_addresses(ray) -> list[str]:
    """The addresses of the live nodes of the connected cluster (127.0.0.1 when on loopback)."""
    return [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")]
