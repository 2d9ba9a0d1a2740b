"""Encoder assets: the small files fgvu generates for its tiny encoders, and whether the hub is reachable.

Generated assets (tiny model configs, tokenizers, weights) live under `$FGVU_CACHE_DIR` when set,
else `~/.cache/fgvu`; they are not the feature cache that `fgvu extract` writes. Directories are
published atomically (built under a temporary name, then renamed), so concurrent processes never
see a half-written one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def assets_dir() -> Path:
    """The folder that holds the generated assets, created if needed."""
    root = Path(os.environ.get("FGVU_CACHE_DIR") or Path.home() / ".cache" / "fgvu")
    root.mkdir(parents=True, exist_ok=True)
    return root


def build_once(name: str, build: Callable[[Path], None]) -> Path:
    """Return `<assets>/<name>`, calling `build(tmp_dir)` to create it first if it does not exist.

    `name` should carry a hash of everything `build` depends on, so a changed recipe gets a new
    directory. When two processes race, the first rename wins and the other copy is discarded.
    """
    target = assets_dir() / name
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (HF_HUB_OFFLINE)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}
