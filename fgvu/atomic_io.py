"""Atomic, durable file writes for caches and run folders: a crash leaves the old file or the new one, never half."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file that is fsynced, then renamed over it.

    The file gets the mode any new file gets (0666 less the umask), like files written with open().
    A location on an object store (`fgvu.cache.location.StorePath`) is written with one PUT,
    which is atomic there: readers see the old object or the new one.
    """
    if not isinstance(path, (str, os.PathLike)):
        path.write_bytes(data)
        return
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically and durably."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON, atomically and durably."""
    write_text(path, json.dumps(obj, indent=1) + "\n")
