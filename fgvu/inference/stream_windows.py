"""When a stream's windows can run, and when each frame's prediction can be emitted.

`WindowSchedule` follows `SamplingPlan.layout` without knowing the video's length: window s
runs as soon as every frame it reads has arrived and the plan is sure to have it (a window that
exists for a video of n frames exists for every longer one). Such a window reads no padding, so
its features are those of the offline cache. When the stream ends at n frames, the windows of
`plan.window_starts(n)` that have not run are the padded tail, run with positions clamped to the
last frame, as extraction pads them.

`FrameEmitter` is `fgvu.fusion.evaluate.frame_level` done incrementally: per-step values are summed
onto their frames in window order (float64, as there), averaged, and interpolated between grid
frames. A grid frame before the next window's start gets no more steps, so every frame up to the
last such grid frame is final: with full lookahead those are emitted, with the same values as
`frame_level`. With `lookahead` L, frame f is also emitted once frame f + L has arrived, from the
windows that have run by then (interpolated, and held after the last step that has a value);
L = 0 uses only windows whose frames have all arrived: strictly causal.
"""

from __future__ import annotations

import numpy as np

from fgvu.modalities import GRIDS, MODALITIES
from fgvu.sampling import SamplingPlan


def window_exists(plan: SamplingPlan, start: int, n_frames: int) -> bool:
    """Whether `start` is one of `plan.window_starts(n_frames)`, in constant time."""
    if start % plan.stride or start < 0:
        return False
    if n_frames <= plan.window:
        return start == 0
    last_full = (n_frames - plan.window) // plan.stride * plan.stride
    return start <= last_full or (start == last_full + plan.stride and last_full + plan.window < n_frames)


def window_positions(plan: SamplingPlan, modalities, video_frames: int) -> dict[str, np.ndarray]:
    """Frame offsets inside a window that each stream the run reads needs: "image", "caption", "clip"."""
    out = {}
    for letter in modalities:
        m = MODALITIES[letter]
        if m.storage == "clip":
            out["clip"] = (plan.window // video_frames) * np.arange(video_frames, dtype=np.int64)
        else:
            grid = GRIDS[m.grid]
            every = getattr(plan, grid.every)
            out[grid.name] = every * np.arange(plan.window // every, dtype=np.int64)
    return out


class WindowSchedule:
    """Window starts in order: which become runnable as frames arrive, and the tail at the end."""

    def __init__(self, plan: SamplingPlan, offsets: dict[str, np.ndarray]):
        self.plan = plan
        self.offsets = offsets
        self.reach = int(max(int(o.max()) for o in offsets.values()))  # the last frame offset a window reads
        self.next_start = 0  # the first window that has neither run nor been skipped

    def ready(self, arrived: int) -> list[int]:
        """Starts of the windows that can run now that frames 0..`arrived` are in (each returned once)."""
        starts = []
        while self.next_start + self.reach <= arrived and window_exists(self.plan, self.next_start, arrived + 1):
            starts.append(self.next_start)
            self.next_start += self.plan.stride
        return starts

    def tail(self, n_frames: int) -> list[int]:
        """The windows of a video of `n_frames` frames that have not been handed out yet."""
        starts = [int(s) for s in self.plan.window_starts(n_frames) if s >= self.next_start]
        self.next_start = starts[-1] + self.plan.stride if starts else self.next_start
        return starts

    def positions(self, start: int, n_frames: int | None = None) -> dict[str, np.ndarray]:
        """The frames window `start` reads per stream; clamped to the last frame when `n_frames` is known."""
        out = {}
        for name, offsets in self.offsets.items():
            frames = start + offsets
            out[name] = np.minimum(frames, n_frames - 1) if n_frames is not None else frames
        return out


class FrameEmitter:
    """Per-step values of windows, in window order -> per-frame values, emitted by the lookahead rule."""

    def __init__(self, every: int, n_values: int, lookahead: int | None):
        self.every = int(every)  # frames between the model's steps
        self.lookahead = lookahead
        self.sums = np.zeros((0, n_values))
        self.counts = np.zeros(0, np.int64)
        self.next_frame = 0  # the first frame not emitted yet

    def _grow(self, n: int) -> None:
        if n > len(self.counts):
            size = max(n, 2 * len(self.counts), 256)
            self.sums = np.concatenate([self.sums, np.zeros((size - len(self.sums), self.sums.shape[1]))])
            self.counts = np.concatenate([self.counts, np.zeros(size - len(self.counts), np.int64)])

    def add_window(self, start: int, values: np.ndarray, valid: np.ndarray) -> None:
        """Step values [S, V] of the window at `start`; `valid[k]` False drops step k (padding)."""
        frames = start + self.every * np.arange(len(values))
        frames, values = frames[valid], np.asarray(values, np.float64)[valid]
        if len(frames):
            self._grow(int(frames.max()) + 1)
        for f, v in zip(frames.tolist(), values):  # one window adds each frame at most once
            self.sums[f] += v
            self.counts[f] += 1

    @property
    def has_values(self) -> bool:
        return bool(self.counts.any())

    def emit(self, arrived: int, next_start: int | None, n_frames: int | None = None):
        """(frames, values [m, V]) that can be emitted now; frames 0..`arrived` have arrived, no window
        starting before `next_start` will run any more (None: none will), `n_frames` ends the stream."""
        last = arrived if n_frames is None else n_frames - 1
        if next_start is None:
            upto = last  # every window has run: every frame is final
        else:
            settled = np.flatnonzero(self.counts[: max(0, min(next_start, last + 1))])
            upto = int(settled[-1]) if settled.size else -1  # the last grid frame no window will change
            if self.lookahead is not None and self.has_values:
                upto = max(upto, arrived - self.lookahead)
            upto = min(upto, last)
        if upto < self.next_frame:
            return np.zeros(0, np.int64), np.zeros((0, self.sums.shape[1]))
        frames = np.arange(self.next_frame, upto + 1)
        self.next_frame = upto + 1
        return frames, self.values_at(frames)

    def values_at(self, frames: np.ndarray) -> np.ndarray:
        """Current frame-level values of `frames`: interpolation between the grid frames that have steps,
        held before the first and after the last (as `frame_level`); NaN when no step has a value."""
        grid = np.flatnonzero(self.counts)
        if not grid.size:
            return np.full((len(frames), self.sums.shape[1]), np.nan)
        mean = self.sums[grid] / self.counts[grid][:, None]
        return np.stack([np.interp(frames, grid, mean[:, j]) for j in range(mean.shape[1])], axis=1)
