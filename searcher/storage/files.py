"""Writing files so that a reader or a crash never sees half of one."""

from __future__ import annotations

import errno
import os
from pathlib import Path

# fsync of a folder is not supported everywhere; these say so, and are not a failed write.
_NO_DIR_FSYNC = {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF, errno.EISDIR, errno.EACCES}


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable. A file system that cannot fsync a folder is
    accepted; a real failure (EIO, ENOSPC) is raised: the rename may not survive a crash."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno not in _NO_DIR_FSYNC:
            raise
    finally:
        os.close(fd)


def write_atomic(path: Path, write) -> None:
    """Call write(tmp_path), fsync the result and rename it over `path`, then fsync the folder.
    On an error the temporary file is removed and `path` is as it was (unless only the folder's
    fsync failed: then `path` is the new file, which a crash may still undo)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # keep the error that stopped the write; the next commit removes the leftover
    fsync_dir(path.parent)
