"""Which videos train and which validate: always by video, never by window."""

from __future__ import annotations

import numpy as np

from fgvu.cache import CacheView
from fgvu.errors import FgvuError


class DataError(FgvuError):
    """The cache cannot feed the requested training or evaluation."""


def split_counts(view: CacheView) -> str:
    """'train: 6, val: 2' for error messages."""
    names, counts = np.unique(view.videos.split, return_counts=True)
    return ", ".join(f"{n}: {c}" for n, c in zip(names, counts)) or "no videos"


def videos_in_split(view: CacheView, split: str) -> np.ndarray:
    """Rows of the videos table in `split`; an empty split is an error."""
    rows = np.flatnonzero(view.videos.split == split)
    if len(rows) == 0:
        raise DataError(f"cache {view.path}: no videos in split {split!r} (videos per split: {split_counts(view)})")
    return rows


def rows_of_names(view: CacheView, names: list[str]) -> np.ndarray:
    """Rows of the named videos; a name the cache does not hold is an error."""
    index = {n: i for i, n in enumerate(view.videos.name.tolist())}
    missing = [n for n in names if n not in index]
    if missing:
        raise DataError(f"cache {view.path}: videos {missing[:5]} (of {len(missing)} missing) are not in the cache")
    return np.array([index[n] for n in names], dtype=np.int64)


def train_val_videos(view: CacheView, val_split: str = "val", val_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of the videos table, disjoint by construction.

    The cache's own `val_split` when it has videos. Only the default "val" has a fallback: a
    cache without "val" videos holds out a seeded `val_fraction` of its training videos (at
    least one). Any other split the cache does not hold is an error, and so is "train" (the
    validation videos would be the training videos).
    """
    if val_split == "train":
        raise DataError(f"cache {view.path}: the validation split cannot be 'train' (it would validate on the "
                        "training videos); use the cache's val split or leave the default")
    train = videos_in_split(view, "train")
    val = np.flatnonzero(view.videos.split == val_split)
    if len(val):
        return train, val
    if val_split != "val":
        raise DataError(f"cache {view.path}: no videos in validation split {val_split!r} "
                        f"(videos per split: {split_counts(view)})")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"cache {view.path}: no {val_split!r} videos and val_fraction={val_fraction} is not in (0, 1)")
    if len(train) < 2:
        raise DataError(
            f"cache {view.path}: no {val_split!r} videos and only {len(train)} training video to hold some out from"
        )
    n_val = min(len(train) - 1, max(1, round(val_fraction * len(train))))
    order = np.random.default_rng(seed).permutation(len(train))
    return np.sort(train[order[n_val:]]), np.sort(train[order[:n_val]])
