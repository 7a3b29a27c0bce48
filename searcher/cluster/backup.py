"""Backup and restore of any index folder, single or sharded: what `searcher backup`, `searcher
restore` and `POST /api/backup` call. A single index goes to searcher/index/backup.py; a sharded
one (searcher/cluster/shards.py) is backed up whole, with its layout:

    backup.json        kind "sharded", the shard folders in order, the SHA-256 of shards.json
    shards.json        the layout, as it was
    shard-0/ ...       each a backup of one index (its own backup.json, manifest.json,
                       content.db, vectors.<g>.faiss)

Every shard's generation is pinned before any is copied, so the backup holds each shard as it
was at the same moment (within the milliseconds the pins take; shards commit on their own, so
no moment is more consistent than that). A restore checks every shard's files, rebuilds their
keyword indexes, runs `check_sharded` on the result, and renames it into place whole.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

from searcher.cluster.shards import check_sharded, is_sharded, read_layout, shard_paths
from searcher.errors import BackupError, SearcherError
from searcher.index.backup import (BACKUP_FORMAT, BACKUP_TMP, RESTORE_TMP, BackupReport, Progress, backup_folder,
                                   backup_index, check_destination, check_target, place, publish,
                                   read_backup, report_of, restore_folder, restore_index, temp_beside,
                                   write_backup_file)
from searcher.storage.folder import SHARDS_MANIFEST, SOURCES
from searcher.storage.snapshot import copy_hashed, pin_generation


def backup(path, to, progress: Progress | None = None) -> BackupReport:
    """Back up the index in folder `path`, single or sharded, into the new folder `to`, while it
    serves and takes writes; `progress(message)` hears each step."""
    if not is_sharded(path):
        return backup_index(path, to, progress)
    started = time.perf_counter()
    path, to = Path(path), Path(to)
    layout = read_layout(path)
    check_destination(path, to)
    say = progress or (lambda message: None)
    with temp_beside(to, BACKUP_TMP) as tmp:
        with ExitStack() as pins:
            folders = shard_paths(path, layout)
            pinned = [pins.enter_context(pin_generation(folder)) for folder in folders]  # all, then copy
            parts = []
            for folder, pin in zip(folders, pinned):
                (tmp / folder.name).mkdir()
                part = backup_folder(folder, pin, tmp / folder.name, lambda m, n=folder.name: say(f"{n}: {m}"))
                write_backup_file(tmp / folder.name, part)
                parts.append(part)
        with open(path / SHARDS_MANIFEST, "rb") as fh:
            layout_sha = copy_hashed(fh, tmp / SHARDS_MANIFEST)
        top = {SHARDS_MANIFEST: layout_sha}
        if (path / SOURCES).is_file():  # the sources it was built from (searcher/index/sources.py)
            with open(path / SOURCES, "rb") as fh:
                top[SOURCES] = copy_hashed(fh, tmp / SOURCES)
        info = {
            "format_version": BACKUP_FORMAT, "kind": "sharded", "shards": list(layout["folders"]),
            "generations": [p["generation"] for p in parts], "documents": sum(p["documents"] for p in parts),
            "chunks": sum(p["chunks"] for p in parts), "source": str(path.resolve()),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "files": top,
        }
        write_backup_file(tmp, info)
        publish(tmp, to)
    say(f"backed up {len(parts)} shards to {to}")
    return report_of({**info, "shard_info": parts}, to, path, started)


def restore(backup_path, path, force: bool = False, progress: Progress | None = None) -> BackupReport:
    """Restore the backup in folder `backup_path` (single or sharded) as the index in folder
    `path`: refused where an index exists unless `force`, which replaces it whole, under the
    write locks of its folders. The result passes `searcher check` before it is put in place."""
    started = time.perf_counter()
    backup_path, path = Path(backup_path), Path(path)
    info = read_backup(backup_path)
    if info["kind"] == "index":
        return restore_index(backup_path, path, force, progress, lock_folders=_lock_folders(path))
    replace = check_target(backup_path, path, force)
    say = progress or (lambda message: None)
    with temp_beside(path, RESTORE_TMP) as tmp:
        with open(backup_path / SHARDS_MANIFEST, "rb") as fh:
            if copy_hashed(fh, tmp / SHARDS_MANIFEST) != info["files"][SHARDS_MANIFEST]:
                raise BackupError(f"{backup_path / SHARDS_MANIFEST} does not match the checksum its backup "
                                  f"recorded: the backup is damaged")
        if SOURCES in info["files"]:
            with open(backup_path / SOURCES, "rb") as fh:
                if copy_hashed(fh, tmp / SOURCES) != info["files"][SOURCES]:
                    raise BackupError(f"{backup_path / SOURCES} does not match the checksum its backup recorded: "
                                      f"the backup is damaged")
        layout = read_layout(tmp)
        if layout["folders"] != info["shards"]:
            raise BackupError(f"{backup_path}: its {SHARDS_MANIFEST} names the shards {layout['folders']}, its "
                              f"backup.json {info['shards']}: the backup is damaged")
        for name, part in zip(info["shards"], info["shard_info"]):
            (tmp / name).mkdir()
            restore_folder(backup_path / name, part, tmp / name, lambda m, n=name: say(f"{n}: {m}"))
        say("checking the restored index")
        report = check_sharded(tmp)
        if not report.ok:
            problems = report.problems + [f"{n}: {p}" for n, r in report.shards for p in r.problems]
            raise BackupError(f"the index restored from {backup_path} fails `searcher check`: " + "; ".join(problems))
        place(tmp, path, replace, _lock_folders(path))
    say(f"restored {len(info['shards'])} shards into {path}")
    return report_of(info, path, backup_path, started, restored=True, replaced=replace)


def _lock_folders(path: Path) -> list[Path]:
    """The folders whose write locks a restore over the index in `path` holds: each shard's, or its own."""
    if is_sharded(path):
        try:
            return shard_paths(path, read_layout(path))
        except SearcherError:
            return []  # a damaged layout: no writer can open it either
    return [path]
