"""The in-memory loader of stage 2: cached tensors gathered into batches with index tensors.

The per-frame tables of grid modalities (image, text, ...) and the per-window clips of clip
modalities (video) stay in memory in the cache's float16 (half the memory of float32). A batch
of windows `idx` is one gather per modality (`table[index[idx]]` on a grid, `clips[idx]`), a
cast to float32 and the per-dimension normalisation: no per-sample Python and no file reads.
Per-step targets are gathered once for every window. Every modality is handled through the
registry (`fgvu.modalities`), so a new one needs no edit here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from fgvu.cache import CacheView
from fgvu.fusion.splits import DataError
from fgvu.modalities import MODALITIES, Modality, ModalityError, canonical
from fgvu.sampling import step_frames

SCAN_VALUES = 1 << 22  # values per pass when scanning large tables (16 MiB as float32): bounded temporaries


def length_options(cfg) -> dict[str, int]:
    """The training-time steps per window of each modality that has an option (from a FitConfig)."""
    return {m.length_option: getattr(cfg, m.length_option) for m in MODALITIES.values()
            if m.length_option and hasattr(cfg, m.length_option)}


# ---- normalisation -------------------------------------------------------------------


@dataclass
class Normalization:
    """Per-dimension mean and std of each modality, from the training videos only."""

    mean: dict[str, torch.Tensor]
    std: dict[str, torch.Tensor]

    def apply(self, letter: str, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean[letter]) / self.std[letter]

    def to(self, device) -> "Normalization":
        """The same statistics on another device."""
        return Normalization({m: t.to(device) for m, t in self.mean.items()},
                             {m: t.to(device) for m, t in self.std.items()})

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


def _scan_rows(table: np.ndarray) -> int:
    """Rows per pass of a scan over `table`: about SCAN_VALUES values."""
    return max(1, SCAN_VALUES // max(1, int(np.prod(table.shape[1:]))))


def _moments(table: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over `rows` of `table` (any trailing shape, last axis = feature).

    Chunks of about SCAN_VALUES values are cast to float32 and centred on their own mean;
    sums accumulate in float64 and chunks merge with Chan et al.'s pairwise update. So the
    temporaries stay at a few MiB (not float64 copies of 4096 clips), and the result matches a
    float64 computation to float32 precision even where the mean is large against the spread.
    """
    dim = table.shape[-1]
    step = _scan_rows(table)
    count, mean, m2 = 0, np.zeros(dim), np.zeros(dim)
    for lo in range(0, len(rows), step):
        x = table[rows[lo : lo + step]].reshape(-1, dim).astype(np.float32)
        n = len(x)
        if n == 0:
            continue
        chunk_mean = x.sum(axis=0, dtype=np.float64) / n  # buffered float64 accumulation, no float64 copy
        x -= chunk_mean.astype(np.float32)
        np.square(x, out=x)
        chunk_m2 = x.sum(axis=0, dtype=np.float64)
        delta, total = chunk_mean - mean, count + n
        mean += delta * (n / total)
        m2 += chunk_m2 + delta * delta * (count * n / total)
        count = total
    return mean, np.sqrt(m2 / max(count, 1))


def _first_nonfinite_row(table: np.ndarray) -> int | None:
    step = _scan_rows(table)
    for lo in range(0, len(table), step):
        block = table[lo : lo + step]
        bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if bad.any():
            return lo + int(np.argmax(bad))
    return None


# ---- the loader -----------------------------------------------------------------------


class FeatureData:
    """The tensors of one cache for the requested modalities and training-time sampling.

    `lengths` are the modalities' length options (`image_frames=8`, `captions=2`,
    `video_frames=32`, ...), picking subsets of what the cache holds: 8 image frames is every
    second image-grid index, 2 captions every second caption, and `video_frames` names the
    clip array (`clips/video_f<T>`).
    """

    def __init__(self, view: CacheView, modalities: tuple[str, ...], *, device: str | torch.device = "cpu",
                 **lengths: int):
        unknown = sorted(set(lengths) - {m.length_option for m in MODALITIES.values() if m.length_option})
        if unknown:
            raise TypeError(f"FeatureData got unknown length options {unknown}")
        self.view = view
        self.plan = view.spec.sampling
        self.task = view.spec.task
        self.device = torch.device(device)
        self.modalities = _check_modalities(view, modalities)
        index_np: dict[str, np.ndarray] = {}
        tables_np: dict[str, np.ndarray] = {}
        masks_np: dict[str, np.ndarray] = {}
        for letter in self.modalities:
            m = MODALITIES[letter]
            if m.storage == "clip":
                tables_np[letter] = self._clips(m, lengths.get(m.length_option, 16))
                continue
            grid = m.on_grid
            have = grid.steps(self.plan)
            # a grid modality without a length option always reads every grid step
            want = lengths.get(m.length_option, have) if m.length_option else have
            step = _subsample_step(view, m, have, want)
            index_np[letter] = getattr(view, grid.index_key)[:, ::step]
            tables_np[letter] = getattr(view, m.name)
            if m.masked:
                masks_np[letter] = getattr(view, m.mask_key)
        self._check_finite(tables_np)
        self.dims = {m: int(tables_np[m].shape[-1]) for m in self.modalities}
        self.lengths = {m: int(index_np[m].shape[1]) if m in index_np else int(tables_np[m].shape[1])
                        for m in self.modalities}
        self._tables_np, self._index_np, self._masks_np = tables_np, index_np, masks_np
        self.tables = {m: _tensor_view(t).to(self.device) for m, t in tables_np.items()}
        self.index = {m: torch.from_numpy(np.ascontiguousarray(i, dtype=np.int64)).to(self.device)
                      for m, i in index_np.items()}
        self.row_masks = {m: torch.from_numpy(np.ascontiguousarray(x, dtype=bool)).to(self.device)
                          for m, x in masks_np.items()}

    def _clips(self, m: Modality, t: int) -> np.ndarray:
        clips = getattr(self.view, m.name)
        if t not in clips:
            held = sorted(self.view.spec.sampling.video_frames)
            raise DataError(f"cache {self.view.path}: no {t}-frame {m.name} clips; it holds T={held} "
                            "(extract with --video-frames to add more)")
        return clips[t]

    @property
    def n_windows(self) -> int:
        return self.view.n_windows

    def windows_of(self, video_rows: np.ndarray) -> np.ndarray:
        """Window indices of the given videos, in cache order."""
        return self.view.windows_of(video_rows)

    def _check_finite(self, tables: dict[str, np.ndarray]) -> None:
        """NaN/Inf features are an error that names the video (never silently trained on)."""
        view = self.view
        for letter, table in tables.items():
            row = _first_nonfinite_row(table)
            if row is None:
                continue
            m = MODALITIES[letter]
            if m.storage == "clip":
                video = view.window_video[row]
            else:
                offsets = getattr(view.videos, f"{m.on_grid.table}_offset")
                video = np.searchsorted(offsets.astype(np.int64), row, side="right") - 1
            raise DataError(
                f"cache {view.path}: video {str(view.videos.name[video])!r} has NaN or Inf {m.name} features "
                f"(row {row}); re-extract it or drop it from the cache"
            )
        labelled = view.target_mask
        if not np.isfinite(view.targets[labelled]).all():
            frame = int(np.flatnonzero(~np.isfinite(np.where(labelled, view.targets, 0.0)).all(axis=1))[0])
            video = np.searchsorted(view.videos.frame_offset.astype(np.int64), frame, side="right") - 1
            raise DataError(f"cache {view.path}: video {str(view.videos.name[video])!r} has NaN or Inf targets on valid frames")

    def fit_normalization(self, train_videos: np.ndarray) -> Normalization:
        """Per-dimension statistics from the training videos' rows only: for grid modalities,
        the rows the training windows actually read (with --image-frames 8, every second grid
        frame; never the ones the model does not see), and only their valid rows."""
        windows = self.windows_of(train_videos)
        if len(windows) == 0:
            raise DataError(f"cache {self.view.path}: the training videos have no windows")
        mean, std = {}, {}
        for m, table in self._tables_np.items():
            rows = windows if m not in self._index_np else np.unique(self._index_np[m][windows])
            if m in self._masks_np:
                rows = rows[self._masks_np[m][rows]]
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
            x = norm.apply(m, x) if norm is not None else x
            if m in self.row_masks:  # invalid steps carry zeros, whatever normalisation did
                x = x * self.row_masks[m][self.index[m][idx]][..., None]
            out[m] = x
        return out

    def step_masks(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """letter -> [B, T_m] bool validity of each step, for the modalities that have a mask."""
        idx = idx.to(self.device)
        return {m: mask[self.index[m][idx]] for m, mask in self.row_masks.items()}

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


def _tensor_view(array: np.ndarray) -> torch.Tensor:
    """A tensor on the array's own memory, no copy. A read-only array (the ablation workers' shared
    memory map, `fgvu.cache.shared`) gives a tensor that is only ever gathered from, never written."""
    array = np.ascontiguousarray(array)
    if array.flags.writeable:
        return torch.from_numpy(array)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _check_modalities(view: CacheView, modalities: tuple[str, ...]) -> tuple[str, ...]:
    try:
        canonical(modalities)
    except ModalityError as e:
        raise DataError(str(e)) from None
    missing = [m for m in modalities if m not in view.modalities]
    if missing:
        have = ", ".join(f"{m} ({MODALITIES[m].name})" for m in view.modalities) or "none"
        want = ", ".join(f"{m} ({MODALITIES[m].name})" for m in missing)
        hints = "".join(f"; {MODALITIES[m].name}: {MODALITIES[m].how_to_add}" for m in missing
                        if MODALITIES[m].how_to_add)
        raise DataError(f"cache {view.path} has no {want} features; it has: {have}{hints}")
    return tuple(dict.fromkeys(modalities))


def _subsample_step(view: CacheView, m: Modality, have: int, want: int) -> int:
    if want <= 0 or want > have or have % want:
        what = m.length_option.replace("_", " ")
        option = "--" + m.length_option.replace("_", "-")
        grid = m.on_grid
        if want > have and grid.extract_option:
            option += f" (more {what} need a finer grid: `fgvu extract {grid.extract_option}`)"
        divisors = [d for d in range(1, have + 1) if have % d == 0]
        raise DataError(f"cache {view.path} has {have} {what} per window; {option} must be one of {divisors}, got {want}")
    return have // want

