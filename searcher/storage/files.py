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


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> bool:
    """Swap the paths `a` and `b` (two folders) in one step: Linux's renameat2(RENAME_EXCHANGE).
    False where the system or file system cannot (nothing was changed then)."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def replace_folder(new: Path, old: Path, aside: Path) -> Path:
    """Put folder `new` in the place of the existing folder `old`, and return where the old
    contents are now (for the caller to delete): `new`'s former path when the system swaps the
    two in one step (`exchange`), else `aside`, by two renames (a crash between them leaves
    `old` absent and its contents whole under `aside`, never a mix of the two)."""
    new, old, aside = Path(new), Path(old), Path(aside)
    if exchange(new, old):
        moved = new
    else:
        os.rename(old, aside)
        os.rename(new, old)
        moved = aside
    fsync_dir(old.parent)
    return moved
