"""The walk of files and folders given to a run: the files under them, never out of the folder
given through a symlink unless asked, loops and unreadable folders reported."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterable, Iterator

from searcher.readers.documents import Skipped


def _inside(path: str, folder: str) -> bool:
    """Whether real path `path` is `folder` (a real path) or lies under it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def walk_paths(paths: Iterable[str | os.PathLike], follow_links: bool = False,
               within: Iterable[str | os.PathLike] | None = None) -> Iterator[Path | Skipped]:
    """Yield files under the given files/folders, recursively, in a stable order.

    A symlink is followed while it stays inside the tree being walked: the folder given, or
    the one of `within` that holds the path given (a watcher's folders, whose events name
    paths inside them). One that leads out of it is reported, and nothing beyond it is read
    or listed, unless `follow_links`. A folder reached twice (a symlink loop) is reported,
    not followed.
    """
    trees = [Path(os.path.abspath(w)) for w in within] if within else []
    for raw in paths:
        root = Path(raw)
        try:
            root.stat()
        except OSError as e:
            if root.is_symlink():
                reason = "symlink loop" if e.errno == errno.ELOOP else "broken symlink (its target is missing)"
            else:
                reason = "no such file or folder" if e.errno == errno.ENOENT else f"cannot read ({e.strerror or e})"
            yield Skipped(str(root), reason)
            continue
        top, bound = root, None
        if not follow_links:
            absolute = Path(os.path.abspath(root))
            top = next((t for t in trees if t == absolute or t in absolute.parents), root)
            bound = os.path.realpath(top)
            if not _inside(os.path.realpath(root), bound):
                yield Skipped(str(root), _out_of_tree(top))
                continue
        if root.is_file():
            yield root
            continue
        if not root.is_dir():
            yield Skipped(str(root), "not a regular file or folder (a FIFO, socket or device)")
            continue
        seen: set[tuple[int, int]] = set()
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                st = folder.stat()
            except OSError as e:
                yield Skipped(str(folder), f"cannot read folder ({e.strerror or e})")
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                yield Skipped(str(folder), "symlink loop (folder already visited)")
                continue
            seen.add(key)
            try:
                entries = sorted(folder.iterdir(), key=lambda p: p.name)
            except OSError as e:
                yield Skipped(str(folder), f"cannot read folder ({e.strerror or e})")
                continue
            subfolders = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if (bound is not None and entry.is_symlink() and (entry.is_dir() or entry.is_file())
                            and not _inside(os.path.realpath(entry), bound)):
                        yield Skipped(str(entry), _out_of_tree(top))
                    elif entry.is_dir():
                        subfolders.append(entry)
                    elif entry.is_file():
                        yield entry
                    else:
                        yield Skipped(str(entry), "not a regular file (broken link or special file)")
                except OSError as e:
                    yield Skipped(str(entry), f"cannot read ({e.strerror or e})")
            stack.extend(reversed(subfolders))


def _out_of_tree(top: Path) -> str:
    return f"symlink that leads out of {top}; not followed (--follow-links follows it)"
