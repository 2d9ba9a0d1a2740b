"""The base of every user-facing error (the CLI prints these without a traceback), and OS errors
turned into one such line."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

# OS errors that say what is wrong with the machine's storage rather than with fgvu
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})


class FgvuError(ValueError):
    """A problem with the user's input, files or setup, explained in the message."""


class StorageError(FgvuError):
    """A file that could not be written (full disk, no permission, read-only file system)."""


def storage_error(error: OSError, where: str | Path, then: str) -> StorageError:
    """One line for an OS error: the file, the reason, the free space where space ran out, and `then`
    (what to do next). `where` stands in when the error names no file."""
    if "://" in str(error.filename or where):  # an object store: a URL, no local file system to ask
        return StorageError(f"{error.filename or where}: {error.strerror or error}; fix that and {then}")
    path = Path(error.filename) if error.filename else Path(where)
    line = f"{path}: {error.strerror or error}"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        line += f" ({_size(_free_bytes(path))} free on its file system)"
        then = f"free some space and {then}"
    else:
        then = f"fix that and {then}"
    return StorageError(f"{line}; {then}")


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def _size(n: int | None) -> str:
    if n is None:
        return "unknown space"
    units, k, value = ("B", "KiB", "MiB", "GiB", "TiB"), 0, float(n)
    while value >= 1024 and k < len(units) - 1:
        value, k = value / 1024, k + 1
    return f"{n} B" if k == 0 else f"{value:.1f} {units[k]}"
