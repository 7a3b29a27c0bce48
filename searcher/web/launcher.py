"""`searcher serve` as one library call: `ServeConfig` says what to serve and how (checked when
it is made), `serve(config)` opens the indexes (here, or a sharded one's shards on Ray Serve),
builds the app, starts the folder watcher, listens with waitress until Ctrl+C, and closes
everything again.

The CLI (searcher/cli/serving.py) parses the flags into a ServeConfig and turns a
`ServeConfigError` into a usage error; the banner and the warnings go to `say` and `warn`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from searcher.cluster.sharded import open_index
from searcher.errors import SearcherError
from searcher.hosts import HostRule, parse_allowed_hosts
from searcher.index.watch import DEFAULT_DEBOUNCE, DEFAULT_RECONCILE, DEFAULT_SETTLE, check_paths
from searcher.readers.documents import check_readers
from searcher.readers.options import LoadOptions
from searcher.search.facets import DEFAULT_FACETS, check_facet_fields
from searcher.storage.folder import SHARDS_MANIFEST
from searcher.web import server
from searcher.web.app import create_app
from searcher.web.keys import KeyRing
from searcher.web.limits import DEFAULT_BATCH_WAIT_MS, MAX_WRITE_BYTES
from searcher.web.proxies import parse_trusted_proxies
from searcher.web.writes import watch_folders


class ServeConfigError(ValueError):
    """Settings that contradict each other or the folders given (the CLI's usage error).
    `option`: the one setting at fault, where it is one."""

    def __init__(self, message: str, option: str | None = None):
        super().__init__(message)
        self.option = option


class CannotListen(SearcherError):
    """The address and port cannot be listened on (taken, or not this machine's)."""


@dataclass(frozen=True)
class ServeConfig:
    """What `serve` serves: `indexes`, (name, folder) pairs, the first the default; on `host`
    and `port` with `threads` request threads; the page's `facets`; the keys in the file
    `api_keys` (None: no keys, which beyond loopback needs `no_auth`); the Host names answered
    besides the server's own (`allowed_hosts`, as `--allowed-hosts` takes them); the largest
    write body; the reverse proxies whose X-Forwarded-For names the client (`trusted_proxies`,
    addresses or networks). `watch`: paths the (single) index is kept in line with, walked following
    links or not, on the watcher's timing (seconds; `reconcile` 0 or None: only at the
    start). `ray_address`: serve a sharded index's shards on Ray Serve, `replicas` copies
    each. Making one checks the settings together (ServeConfigError, or ValueError for a
    path that cannot be watched) and normalises `facets` and `allowed_hosts`."""

    indexes: Sequence[tuple[str, Path]]
    host: str = "127.0.0.1"
    port: int = 8000
    threads: int = 4
    facets: Sequence[str] = DEFAULT_FACETS
    api_keys: Path | None = None
    no_auth: bool = False
    allowed_hosts: Sequence[str] = ()
    max_write_bytes: int = MAX_WRITE_BYTES
    backup_dir: Path | None = None  # where POST /api/backup writes
    trusted_proxies: Sequence[str] = ()  # reverse proxies whose X-Forwarded-For is believed (searcher/web/proxies.py)
    watch: Sequence[Path] = ()
    follow_links: bool = False
    readers: Sequence[str] | None = None  # who may read what --watch indexes (docs/access.md); None: as before
    reconcile: float | None = DEFAULT_RECONCILE
    debounce: float = DEFAULT_DEBOUNCE
    settle: float = DEFAULT_SETTLE
    ray_address: str | None = None
    replicas: int | None = None
    device: str = "auto"
    precision: str = "auto"
    poll_interval: float | None = None  # seconds between syncs of the index's sources (searcher/index/sources.py)
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS  # an encoder pass not full waits this long for more requests

    def __post_init__(self):
        object.__setattr__(self, "indexes", tuple((name, Path(folder)) for name, folder in self.indexes))
        object.__setattr__(self, "watch", tuple(Path(p) for p in self.watch))
        if self.ray_address is not None:
            check_ray_serving(self.indexes, self.watch)
        elif self.replicas is not None:
            raise ServeConfigError("--replicas is how many copies of each shard Ray Serve runs: give --ray too")
        if not self.watch and self.follow_links:
            raise ServeConfigError("--follow-links is how --watch walks its folders: give --watch PATH too")
        if self.readers is not None:
            if not self.watch:
                raise ServeConfigError("--readers is who may read what --watch indexes: give --watch PATH too",
                                       option="--readers")
            try:
                given = [self.readers] if isinstance(self.readers, str) else list(self.readers)
                object.__setattr__(self, "readers", check_readers(",".join(given)))
            except ValueError as e:
                raise ServeConfigError(str(e), option="--readers") from None
        if self.watch:
            if len(self.indexes) != 1:
                raise ServeConfigError("--watch keeps one index up to date: give one --index with it")
            check_paths(self.watch, self.indexes[0][1])
        if self.poll_interval is not None:
            if self.poll_interval <= 0:
                raise ServeConfigError("--poll-interval is seconds, more than zero", option="--poll-interval")
            if len(self.indexes) != 1 or self.ray_address is not None:
                raise ServeConfigError("--poll-interval keeps one index's sources synced: give one --index, "
                                       "without --ray")
        if self.api_keys is not None and self.no_auth:
            raise ServeConfigError("--api-keys and --no-auth contradict each other: give one")
        if self.api_keys is None and not self.no_auth and not is_loopback(self.host):
            raise ServeConfigError(
                f"refusing to listen on {self.host} without API keys: anyone who can reach it could search "
                f"this index. Give --api-keys FILE (make one with `searcher keys add --scope read --file FILE`), "
                f"or --no-auth to serve it to everyone anyway.")
        if isinstance(self.facets, str) or isinstance(self.allowed_hosts, str) or isinstance(self.trusted_proxies, str):
            raise TypeError("facets, allowed_hosts and trusted_proxies are lists, not one string")
        try:
            parse_trusted_proxies(self.trusted_proxies)
        except ValueError as e:
            raise ServeConfigError(str(e), option="--trusted-proxy") from None
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        try:
            object.__setattr__(self, "facets", check_facet_fields(f for f in self.facets if f.strip()))
        except ValueError as e:
            raise ServeConfigError(str(e)) from None
        try:
            object.__setattr__(self, "allowed_hosts", parse_allowed_hosts(self.allowed_hosts))
        except ValueError as e:
            raise ServeConfigError(str(e), option="--allowed-hosts") from None


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name to listen on) is this machine's loopback only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_ray_serving(indexes: Sequence[tuple[str, Path]], watch: Sequence[Path]) -> None:
    """Serving on Ray serves one sharded index, read-only; say so before Ray starts."""
    if len(indexes) != 1:
        raise ServeConfigError("--ray serves the shards of one sharded index: give one --index DIR")
    if watch:
        raise ServeConfigError("--watch writes to the index, and --ray serves it read-only: index with "
                               "`searcher index PATH --index DIR` instead (the replicas read each commit)")
    folder = indexes[0][1]
    if not (folder / SHARDS_MANIFEST).is_file():
        kind = "an index, not a sharded one" if (folder / "manifest.json").is_file() else "no index"
        raise ServeConfigError(f"--ray serves a sharded index's shards, and {folder} holds {kind}: split it "
                               f"with `searcher shard {folder} --shards N --out DIR`, or serve it without --ray")


def read_keys(path: Path | None) -> KeyRing | None:
    """The keys in `path` (None: no keys); a file without any is refused."""
    if path is None:
        return None
    keys = KeyRing.from_file(path)  # a bad file: KeyFileError, a ValueError naming the line
    if not len(keys):
        raise ServeConfigError(f"{path} holds no keys: add one with "
                               f"`searcher keys add --scope admin --file {path}`")
    return keys


def to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def serve(config: ServeConfig, say: Callable[[str], None] = print, warn: Callable[[str], None] = to_stderr,
          on_run=None) -> None:
    """Serve `config` until Ctrl+C: the banner goes to `say`, warnings to `warn`, each folder
    watcher run to `on_run(kind, report)`. Everything opened is closed again, also when a
    step fails (CannotListen: the port is taken)."""
    keys = read_keys(config.api_keys)
    opened = {}
    cleanup = contextlib.ExitStack()  # a Ray connection and the shards' deployments (ray_address)
    try:
        for name, folder in config.indexes:  # the model loads once (indexes of one model share it), here
            if config.ray_address is not None:
                opened[name] = cleanup.enter_context(served_on_ray(folder, config, warn))
            else:
                opened[name] = open_index(folder, device=config.device, precision=config.precision)
            opened[name].search("warm up", k=1)  # the first forward pass is slow; pay it before the first request
        app = create_app(indexes=opened, facets=config.facets, keys=keys, max_write_bytes=config.max_write_bytes,
                         backup_dir=config.backup_dir, trusted_proxies=config.trusted_proxies,
                         allowed_hosts=HostRule(config.host, config.allowed_hosts),
                         batch_wait_ms=config.batch_wait_ms)
        watcher = None
        if config.watch:
            watcher = watch_folders(app, config.watch, LoadOptions(follow_links=config.follow_links, readers=config.readers),
                                    debounce=config.debounce, reconcile_every=config.reconcile or None,
                                    settle=config.settle, on_run=on_run)
        poller = poll_sources(app, config, on_run, warn)
        try:
            listener = server.make_server(app, config.host, config.port, config.threads)
        except OSError as e:
            raise CannotListen(f"cannot listen on {config.host}:{config.port}: {e.strerror or e}") from e
    except BaseException:
        for idx in opened.values():
            idx.close()
        cleanup.close()
        raise
    if keys is None and not is_loopback(config.host):
        warn(f"warning: listening on {config.host} without keys (--no-auth): anyone who can reach it "
             f"can search this index")
    port = getattr(listener, "effective_port", config.port)  # a name like localhost gets several sockets
    say(banner(config, opened, port, keys, watcher.paths if watcher is not None else ()))
    if watcher is not None:
        watcher.start()
    if poller is not None:
        poller.start()
    try:
        listener.run()
    except KeyboardInterrupt:
        pass
    finally:
        if watcher is not None:
            watcher.stop()
        if poller is not None:
            poller.stop()
        listener.close()
        for idx in opened.values():
            idx.close()
        cleanup.close()


def poll_sources(app, config: ServeConfig, on_run, warn):
    """A SourcePoller (searcher/index/sources.py, not started) over the served index's recorded
    sources, when `--poll-interval` is given, or `--watch` and the index has sources; else None.
    Its syncs take turns with the other writes (SearchService.write)."""
    from searcher.index.sources import DEFAULT_POLL_INTERVAL, SourcePoller, read_sources

    if config.poll_interval is None and not config.watch:
        return None
    if not read_sources(config.indexes[0][1]):
        if config.poll_interval is not None:
            warn(f"warning: --poll-interval: {config.indexes[0][1]} has no sources to sync (`searcher index s3://...`)")
        return None

    def told(url, report, error):
        if error:
            warn(f"sync {url}: {error}")
        elif on_run is not None:
            on_run(f"sync {url}", report)

    svc = app.extensions["searcher"]
    return SourcePoller(svc.index, config.poll_interval or DEFAULT_POLL_INTERVAL, write=svc.write, on_run=told)


def banner(config: ServeConfig, opened: dict, port: int, keys: KeyRing | None, watched: Sequence[Path]) -> str:
    """The line that says what is served where, to whom."""
    host = config.host
    url_host = f"[{host}]" if ":" in host and not host.startswith("[") else host  # ::1 and [::1] alike
    access = (f"{len(keys)} API keys from {config.api_keys}" if keys is not None
              else "no keys, read-only API")

    def documents(name: str) -> str:
        n = len(opened[name])
        return f"{n} document{'' if n == 1 else 's'}"

    if len(config.indexes) == 1:
        (name, folder), = config.indexes
        served = f"{documents(name)} from {folder}"
        if config.ray_address is not None:
            shards = len(opened[name].shards)
            replicas = config.replicas or 1
            served += (f" ({shards} shard{'s' if shards != 1 else ''} on Ray Serve, {replicas} "
                       f"replica{'s' if replicas != 1 else ''} each)")
    else:
        served = f"{len(config.indexes)} indexes (" + ", ".join(
            f"{name}: {documents(name)} from {folder}" for name, folder in config.indexes) + ")"
    watching = f"; watching {', '.join(map(str, watched))}" if watched else ""
    return f"Serving {served} on http://{url_host}:{port}/ ({access}{watching}; Ctrl+C to stop)"


@contextlib.contextmanager
def served_on_ray(folder: Path, config: ServeConfig, warn: Callable[[str], None]) -> Iterator:
    """The sharded index in `folder` deployed on Ray Serve for the block (the front's
    ShardedIndex); the deployments are deleted, and a Ray started here stopped, at the end."""
    from searcher.cluster.ray_cluster import check_address, import_ray, ray_session
    from searcher.cluster.ray_serving import UNDEPLOY_TIMEOUT_S, ServeSettings, serve_sharded

    import_ray(loopback=check_address(config.ray_address) == "local")  # before the model loads
    with ray_session(config.ray_address) as _, serve_sharded(folder, ServeSettings(replicas=config.replicas or 1),
                                                             device=config.device,
                                                             precision=config.precision) as front:
        try:
            yield front.index
        finally:  # the deletion is bounded (ray_serving.undeploy); say why stopping takes a moment
            warn(f"stopping: removing the shards from Ray Serve (waiting at most {UNDEPLOY_TIMEOUT_S:g} s)")
