"""Atomic, durable file writes for caches and run folders: a crash leaves the old file or the new one, never half."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a temporary file that is fsynced, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, obj) -> None:
    """Write `obj` as indented JSON, atomically and durably."""
    write_text(path, json.dumps(obj, indent=1) + "\n")
