"""The in-memory loader of stage 2: cached tensors gathered into batches with index tensors.

The per-frame tables (image, text) and the per-window clips (video) stay in memory in the
cache's float16 (half the memory of float32: Aff-Wild2's clips alone are ~4 GB). A batch of windows `idx` is three gathers (`image[image_index[idx]]`,
`text[caption_index[idx]]`, `clips[idx]`), a cast to float32 and the per-dimension
normalisation: no per-sample Python and no file reads. Per-step targets are gathered once
for every window.

Splits are by video, never by window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fgvu.cache_schema import MODALITIES, CacheView
from fgvu.errors import FgvuError
from fgvu.sampling import step_frames

CHUNK_ROWS = 4096  # rows per pass when scanning large tables (bounded temporary memory)


class DataError(FgvuError):
    """The cache cannot feed the requested training or evaluation."""


# ---- splits --------------------------------------------------------------------------


def _split_counts(view: CacheView) -> str:
    names, counts = np.unique(view.videos.split, return_counts=True)
    return ", ".join(f"{n}: {c}" for n, c in zip(names, counts)) or "no videos"


def videos_in_split(view: CacheView, split: str) -> np.ndarray:
    """Rows of the videos table in `split`; an empty split is an error."""
    rows = np.flatnonzero(view.videos.split == split)
    if len(rows) == 0:
        raise DataError(f"cache {view.path}: no videos in split {split!r} (videos per split: {_split_counts(view)})")
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
                        f"(videos per split: {_split_counts(view)})")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"cache {view.path}: no {val_split!r} videos and val_fraction={val_fraction} is not in (0, 1)")
    if len(train) < 2:
        raise DataError(
            f"cache {view.path}: no {val_split!r} videos and only {len(train)} training video to hold some out from"
        )
    n_val = min(len(train) - 1, max(1, round(val_fraction * len(train))))
    order = np.random.default_rng(seed).permutation(len(train))
    return np.sort(train[order[n_val:]]), np.sort(train[order[:n_val]])


# ---- normalisation -------------------------------------------------------------------


@dataclass
class Normalization:
    """Per-dimension mean and std of each modality, from the training videos only."""

    mean: dict[str, torch.Tensor]
    std: dict[str, torch.Tensor]

    def apply(self, letter: str, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean[letter]) / self.std[letter]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name -> tensor, for safetensors."""
        out = {}
        for m in self.mean:
            out[f"norm.{m}.mean"] = self.mean[m].detach().cpu().contiguous()
            out[f"norm.{m}.std"] = self.std[m].detach().cpu().contiguous()
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> "Normalization | None":
        letters = sorted({k.split(".")[1] for k in tensors if k.startswith("norm.")})
        if not letters:
            return None
        return cls({m: tensors[f"norm.{m}.mean"] for m in letters}, {m: tensors[f"norm.{m}.std"] for m in letters})


def _moments(table: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over `rows` of `table` (any trailing shape, last axis = feature), in float64."""
    dim = table.shape[-1]
    total, total_sq, count = np.zeros(dim), np.zeros(dim), 0
    for lo in range(0, len(rows), CHUNK_ROWS):
        x = table[rows[lo : lo + CHUNK_ROWS]].reshape(-1, dim).astype(np.float64)
        total += x.sum(axis=0)
        total_sq += (x * x).sum(axis=0)
        count += len(x)
    mean = total / max(count, 1)
    var = np.maximum(total_sq / max(count, 1) - mean * mean, 0.0)
    return mean, np.sqrt(var)


def _first_nonfinite_row(table: np.ndarray) -> int | None:
    for lo in range(0, len(table), CHUNK_ROWS):
        block = table[lo : lo + CHUNK_ROWS]
        bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if bad.any():
            return lo + int(np.argmax(bad))
    return None


# ---- the loader -----------------------------------------------------------------------


class FeatureData:
    """The tensors of one cache for the requested modalities and training-time sampling.

    `image_frames`, `captions` and `video_frames` pick subsets of what the cache holds:
    8 image frames is every second image index, 2 captions every second caption, and
    `video_frames` names the clip array (`clips/video_f<T>`).
    """

    def __init__(self, view: CacheView, modalities: tuple[str, ...], *, image_frames: int = 16, captions: int = 4,
                 video_frames: int = 16, device: str | torch.device = "cpu"):
        self.view = view
        self.plan = view.spec.sampling
        self.task = view.spec.task
        self.device = torch.device(device)
        self.modalities = _check_modalities(view, modalities)
        plan = self.plan
        index_np: dict[str, np.ndarray] = {}
        tables_np: dict[str, np.ndarray] = {}
        if "i" in self.modalities:
            step = _subsample_step(view, "image frames", plan.image_frames, image_frames, "--image-frames")
            index_np["i"], tables_np["i"] = view.image_index[:, ::step], view.image
        if "t" in self.modalities:
            step = _subsample_step(view, "captions", plan.captions, captions,
                                   "--captions (more captions need a finer grid: `fgvu extract --caption-every`)")
            index_np["t"], tables_np["t"] = view.caption_index[:, ::step], view.text
        if "v" in self.modalities:
            if video_frames not in view.video:
                raise DataError(
                    f"cache {view.path}: no {video_frames}-frame video clips; it holds T={sorted(view.video)} "
                    "(extract with --video-frames to add more)"
                )
            tables_np["v"] = view.video[video_frames]
        self._check_finite(tables_np)
        self.dims = {m: int(tables_np[m].shape[-1]) for m in self.modalities}
        self.lengths = {m: int(index_np[m].shape[1]) if m in index_np else int(tables_np[m].shape[1])
                        for m in self.modalities}
        self._tables_np, self._index_np = tables_np, index_np
        self.tables = {m: torch.from_numpy(np.ascontiguousarray(t)).to(self.device) for m, t in tables_np.items()}
        self.index = {m: torch.from_numpy(np.ascontiguousarray(i, dtype=np.int64)).to(self.device)
                      for m, i in index_np.items()}

    @property
    def n_windows(self) -> int:
        return self.view.n_windows

    def windows_of(self, video_rows: np.ndarray) -> np.ndarray:
        """Window indices of the given videos, in cache order."""
        return self.view.windows_of(video_rows)

    def _check_finite(self, tables: dict[str, np.ndarray]) -> None:
        """NaN/Inf features are an error that names the video (never silently trained on)."""
        view = self.view
        for m, table in tables.items():
            row = _first_nonfinite_row(table)
            if row is None:
                continue
            if m == "v":
                video = view.window_video[row]
            else:
                offsets = view.videos.image_offset if m == "i" else view.videos.text_offset
                video = np.searchsorted(offsets.astype(np.int64), row, side="right") - 1
            raise DataError(
                f"cache {view.path}: video {str(view.videos.name[video])!r} has NaN or Inf {MODALITIES[m]} features "
                f"(row {row}); re-extract it or drop it from the cache"
            )
        labelled = view.target_mask
        if not np.isfinite(view.targets[labelled]).all():
            frame = int(np.flatnonzero(~np.isfinite(np.where(labelled, view.targets, 0.0)).all(axis=1))[0])
            video = np.searchsorted(view.videos.frame_offset.astype(np.int64), frame, side="right") - 1
            raise DataError(f"cache {view.path}: video {str(view.videos.name[video])!r} has NaN or Inf targets on valid frames")

    def fit_normalization(self, train_videos: np.ndarray) -> Normalization:
        """Per-dimension statistics from the training videos' rows only: for images and
        captions, the rows the training windows actually read (with --image-frames 8, every
        second grid frame; never the ones the model does not see)."""
        windows = self.windows_of(train_videos)
        if len(windows) == 0:
            raise DataError(f"cache {self.view.path}: the training videos have no windows")
        mean, std = {}, {}
        for m, table in self._tables_np.items():
            rows = windows if m == "v" else np.unique(self._index_np[m][windows])
            mu, sd = _moments(table, rows)
            mean[m] = torch.from_numpy(mu.astype(np.float32)).to(self.device)
            std[m] = torch.from_numpy(np.maximum(sd, 1e-6).astype(np.float32)).to(self.device)
        return Normalization(mean, std)

    def inputs(self, idx: torch.Tensor, norm: Normalization | None) -> dict[str, torch.Tensor]:
        """letter -> [B, T_m, D_m] float32 features of windows `idx` (a LongTensor)."""
        idx = idx.to(self.device)
        out = {}
        for m in self.modalities:
            x = self.tables[m][self.index[m][idx]] if m in self.index else self.tables[m][idx]
            x = x.float()
            out[m] = norm.apply(m, x) if norm is not None else x
        return out

    def step_targets(self, n_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Targets [W, S, K] and validity [W, S, K] at every window's step frames.

        Step k of window w sits on frame start_w + k * window // S; steps on padding frames
        and frames whose target is invalid are masked.
        """
        view, window = self.view, self.plan.window
        if window % n_steps:
            raise DataError(f"{n_steps} steps do not divide the {window}-frame window")
        every = window // n_steps
        frames = step_frames(view.window_start, n_steps, every)  # [W, S]
        n_frames = view.videos.n_frames.astype(np.int64)[view.window_video][:, None]
        inside = view.valid[:, ::every]  # False on padding frames
        rows = view.videos.frame_offset.astype(np.int64)[view.window_video][:, None] + np.minimum(frames, n_frames - 1)
        targets = view.targets[rows]  # [W, S, K]
        mask = view.target_mask[rows] & inside[..., None]
        targets = np.where(mask, targets, 0.0).astype(np.float32)
        return torch.from_numpy(targets).to(self.device), torch.from_numpy(mask).to(self.device)


def _check_modalities(view: CacheView, modalities: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown or not modalities:
        raise DataError(f"unknown modality letters {unknown or '(none given)'}; use a subset of v (video), i (image), t (text)")
    missing = [m for m in modalities if m not in view.modalities]
    if missing:
        have = ", ".join(f"{m} ({MODALITIES[m]})" for m in view.modalities) or "none"
        want = ", ".join(f"{m} ({MODALITIES[m]})" for m in missing)
        raise DataError(f"cache {view.path} has no {want} features; it has: {have}")
    return tuple(dict.fromkeys(modalities))


def _subsample_step(view: CacheView, what: str, have: int, want: int, option: str) -> int:
    if want <= 0 or want > have or have % want:
        divisors = [d for d in range(1, have + 1) if have % d == 0]
        raise DataError(f"cache {view.path} has {have} {what} per window; {option} must be one of {divisors}, got {want}")
    return have // want
