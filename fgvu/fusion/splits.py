"""Which videos train, which select the epoch and which report the score: by base video, never by window.

A *base video* is one recording (`Task.base_video`): Aff-Wild2's `<video>_left` and
`<video>_right` tracks are one. Every split here keeps a base video on one side, and a cache
whose own splits put two tracks of one recording apart is refused.

`plan_splits` gives the three disjoint sets of a run (`SplitPlan`):

- report: the split the reported score comes from. The cache's validation split (or the test
  split with `report_split="test"`, where it has labels); without validation videos a seeded
  hold-out of the training videos; with `folds=K` fold `k` of a group k-fold over the pooled
  training and validation videos.
- select: what early stopping selects the epoch on. By default a seeded hold-out of about
  `select_fraction` of the remaining training videos, so the reported score comes from videos
  that model selection never saw; `select_on="val"` (the common ABAW practice) selects on the
  validation videos (the report split itself, unless the report is on test), and every number
  is then labelled "selected on val".
- train: the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fgvu.cache import CacheView
from fgvu.errors import FgvuError
from fgvu.tasks import get_task

SELECT_ON = ("holdout", "val")
REPORT_SPLITS = ("val", "test")
LISTED = 4


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


# ---- base videos -------------------------------------------------------------------------------


def base_videos(view: CacheView) -> np.ndarray:
    """The base video (recording) of every row of the videos table, by the task's rule."""
    task = get_task(view.spec.task)
    return np.array([task.base_video(str(n)) for n in view.videos.name], dtype=object)


def check_tracks_share_splits(view: CacheView) -> None:
    """Refuse a cache whose splits put two tracks of one recording apart (a leak between splits)."""
    bases = base_videos(view)
    apart = []
    for base in np.unique(bases):
        rows = np.flatnonzero(bases == base)
        if len(set(view.videos.split[rows].tolist())) > 1:
            apart.append(", ".join(f"{view.videos.name[r]} ({view.videos.split[r]})" for r in rows))
    if apart:
        raise DataError(f"cache {view.path}: tracks of one video are in different splits: {'; '.join(apart[:LISTED])}"
                        f"{' ...' if len(apart) > LISTED else ''}. Both tracks of a video must share a split; "
                        "fix the annotation folders and extract again")


def hold_out(view: CacheView, rows: np.ndarray, fraction: float, rng: np.random.Generator,
             what: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held) rows: a random `fraction` of the base videos of `rows` (at least one, and at
    least one left), every track of a held base video with it."""
    bases = base_videos(view)[rows]
    groups = np.unique(bases)
    if len(groups) < 2:
        raise DataError(f"cache {view.path}: {what} needs at least two base videos to hold some out from, but the "
                        f"training videos hold {len(groups)} ({', '.join(map(str, groups))})")
    n_held = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    held_groups = set(groups[rng.permutation(len(groups))[:n_held]].tolist())
    held = np.isin(bases, list(held_groups))
    return np.sort(rows[~held]), np.sort(rows[held])


def group_folds(view: CacheView, rows: np.ndarray, folds: int) -> np.ndarray:
    """The fold (0..folds-1) of each of `rows`, by base video, balanced by frames.

    Deterministic, like a group k-fold: base videos from the longest down each go to the fold
    with the fewest frames so far (ties by name, then the lowest fold); no seed is involved, so
    every seed and configuration sees the same folds.
    """
    bases = base_videos(view)[rows]
    frames = view.videos.n_frames[rows].astype(np.int64)
    groups = np.unique(bases)
    if folds > len(groups):
        raise DataError(f"cache {view.path}: --folds {folds} needs at least {folds} base videos in train + val; "
                        f"there are {len(groups)}")
    size = {g: int(frames[bases == g].sum()) for g in groups}
    load = np.zeros(folds, np.int64)
    fold_of = {}
    for g in sorted(groups, key=lambda g: (-size[g], g)):
        k = int(np.argmin(load))
        fold_of[g] = k
        load[k] += size[g]
    return np.array([fold_of[b] for b in bases], dtype=np.int64)


# ---- the splits of one run ------------------------------------------------------------------------


def train_val_videos(view: CacheView, val_split: str = "val", val_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows) of the videos table, disjoint by base video.

    The cache's own `val_split` when it has videos. Only the default "val" has a fallback: a
    cache without "val" videos holds out a seeded `val_fraction` of its training base videos
    (at least one). Any other split the cache does not hold is an error, and so are "train"
    (the validation videos would be the training videos) and "test" (early stopping or
    selection on the test set; report on test with `report_split="test"` instead).
    """
    if val_split == "train":
        raise DataError(f"cache {view.path}: the validation split cannot be 'train' (it would validate on the "
                        "training videos); use the cache's val split or leave the default")
    if val_split == "test":
        raise DataError(f"cache {view.path}: --val-split test is refused: validation videos may steer training "
                        "(early stopping with --select-on val), and the test split must stay untouched; report "
                        "on labelled test videos with --report-split test instead")
    check_tracks_share_splits(view)
    train = videos_in_split(view, "train")
    val = np.flatnonzero(view.videos.split == val_split)
    if len(val):
        return train, val
    if val_split != "val":
        raise DataError(f"cache {view.path}: no videos in validation split {val_split!r} "
                        f"(videos per split: {split_counts(view)})")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"cache {view.path}: no {val_split!r} videos and val_fraction={val_fraction} is not in (0, 1)")
    return hold_out(view, train, val_fraction, np.random.default_rng(seed), "a validation hold-out (no val videos)")


@dataclass(frozen=True)
class SplitPlan:
    """The video rows of one run and where its numbers come from."""

    train: np.ndarray
    select: np.ndarray
    report: np.ndarray
    selected_on: str  # "holdout" (carved from the training videos) or "val" (the report split)
    reported_on: str  # "val" or "test": the key of the reported metrics in metrics.json
    report_source: str  # where the report split came from, in words

    @property
    def label(self) -> str:
        """How tables label the reported numbers."""
        return "selected on val" if self.selected_on == "val" else "selected on a training hold-out"

    def names(self, view: CacheView) -> dict[str, list[str]]:
        """config.json's "splits": video names of train, select and the reported split."""
        name = view.videos.name
        return {"train": name[self.train].tolist(), "select": name[self.select].tolist(),
                self.reported_on: name[self.report].tolist()}


def plan_splits(view: CacheView, cfg) -> SplitPlan:
    """The train / select / report rows of a run of FitConfig `cfg` on `view`.

    Uses cfg.val_split, val_fraction, report_split, folds, fold, select_on, select_fraction and seed.
    With `select_on="val"` the epoch is selected on the validation videos: the report split
    itself, unless the report comes from the test split.
    """
    if cfg.select_on not in SELECT_ON:
        raise DataError(f"--select-on {cfg.select_on!r}: use one of {', '.join(SELECT_ON)}")
    if cfg.report_split not in REPORT_SPLITS:
        raise DataError(f"--report-split {cfg.report_split!r}: use one of {', '.join(REPORT_SPLITS)}")
    train, val, report, reported_on, source = _train_val_report(view, cfg)
    if cfg.select_on == "val":
        select = val
    else:
        rng = np.random.default_rng([cfg.seed, 1])  # apart from the validation hold-out's stream
        train, select = hold_out(view, train, cfg.select_fraction, rng,
                                 "the selection hold-out (--select-on holdout; --select-on val selects on val)")
    return SplitPlan(train, select, report, cfg.select_on, reported_on, source)


def _train_val_report(view: CacheView, cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray, str, str]:
    """Training rows (before the selection hold-out), validation rows, report rows, the report key
    and where the report split comes from."""
    train, val = train_val_videos(view, cfg.val_split, cfg.val_fraction, cfg.seed)
    if cfg.folds:
        if cfg.report_split != "val":
            raise DataError("--folds reports on the held-out fold; --report-split test does not combine with it")
        if not 0 <= cfg.fold < cfg.folds:
            raise DataError(f"--fold {cfg.fold} is not in 0..{cfg.folds - 1} (--folds {cfg.folds})")
        pooled = np.sort(np.r_[train, val])
        fold_of = group_folds(view, pooled, cfg.folds)
        held = pooled[fold_of == cfg.fold]
        return (pooled[fold_of != cfg.fold], held, held, "val",
                f"fold {cfg.fold} of {cfg.folds} (group k-fold by base video over train + {cfg.val_split})")
    if cfg.report_split == "test":
        test = videos_in_split(view, "test")
        if not view.target_mask[_frame_rows(view, test)].any():
            raise DataError(f"cache {view.path}: --report-split test, but the test videos have no labels")
        # the validation videos are never trained on, so runs that report on test stay comparable
        return train, val, test, "test", "the cache's test split"
    held = not np.any(view.videos.split == cfg.val_split)
    source = (f"a hold-out of {cfg.val_fraction:g} of the training base videos (the cache has no "
              f"{cfg.val_split} videos)" if held else f"the cache's {cfg.val_split} split")
    return train, val, val, "val", source


def _frame_rows(view: CacheView, video_rows: np.ndarray) -> np.ndarray:
    offsets = view.videos.frame_offset.astype(np.int64)
    return np.concatenate([np.arange(offsets[v], offsets[v] + int(view.videos.n_frames[v])) for v in video_rows])
