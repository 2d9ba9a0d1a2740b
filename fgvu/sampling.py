"""The sampling plan: which frames each window sees. One module, used by both stages.

A video is cut into `window`-frame windows whose starts are multiples of `stride`. Inside a
window, the image stream takes every `image_every`-th frame, the caption stream every
`caption_every`-th frame, and each VideoPrism clip of T frames every `window // T`-th frame.
All of these positions lie on grids shared by every window of the video, so each grid frame
is encoded once and windows hold indices into per-frame tables.

Padding: positions past the last frame repeat the last frame, and `valid` marks them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from fgvu.errors import FgvuError


class SamplingError(FgvuError):
    """An inconsistent sampling plan."""


@dataclass(frozen=True)
class SamplingPlan:
    """Window geometry shared by extraction and training.

    Defaults follow the paper: 64-frame windows, 16 image frames, 4 captions, 16-frame clips.
    """

    window: int = 64
    stride: int = 16
    image_every: int = 4
    caption_every: int = 16
    video_frames: tuple[int, ...] = field(default=(16,))

    def __post_init__(self) -> None:
        object.__setattr__(self, "video_frames", tuple(int(t) for t in self.video_frames))
        for name in ("window", "stride", "image_every", "caption_every"):
            if getattr(self, name) <= 0:
                raise SamplingError(f"sampling plan: {name} must be positive, got {getattr(self, name)}")
        if self.stride > self.window:
            raise SamplingError(f"sampling plan: stride {self.stride} is longer than the window {self.window}, "
                                "so some frames would lie in no window")
        for name, every in (("image_every", self.image_every), ("caption_every", self.caption_every)):
            if self.window % every:
                raise SamplingError(f"sampling plan: window {self.window} is not a multiple of {name}={every}")
        if not self.video_frames:
            raise SamplingError("sampling plan: video_frames must name at least one clip length")
        for t in self.video_frames:
            if t <= 0 or self.window % t:
                raise SamplingError(f"sampling plan: window {self.window} is not a multiple of video frames {t}")

    @property
    def image_frames(self) -> int:
        """Image-grid frames per window (16 by default)."""
        return self.window // self.image_every

    @property
    def captions(self) -> int:
        """Caption frames per window (4 by default)."""
        return self.window // self.caption_every

    def to_dict(self) -> dict:
        d = asdict(self)
        d["video_frames"] = list(self.video_frames)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SamplingPlan":
        return cls(**{**d, "video_frames": tuple(d.get("video_frames", (16,)))})

    # ---- window geometry -------------------------------------------------------------

    def window_starts(self, n_frames: int) -> np.ndarray:
        """Start frame of every window; every frame is covered by at least one window.

        250 frames at stride 16: 12 full windows (0..176) plus one padded window at 192.
        """
        if n_frames <= 0:
            raise SamplingError(f"a video needs at least one frame, got {n_frames}")
        if n_frames <= self.window:
            return np.zeros(1, dtype=np.int64)
        last_full = (n_frames - self.window) // self.stride * self.stride
        starts = np.arange(0, last_full + 1, self.stride, dtype=np.int64)
        if last_full + self.window < n_frames:
            starts = np.append(starts, last_full + self.stride)
        return starts

    def positions(self, starts: np.ndarray, every: int) -> np.ndarray:
        """(W, window // every) frame positions (possibly past the end) inside each window."""
        return starts[:, None] + every * np.arange(self.window // every, dtype=np.int64)[None, :]

    def layout(self, n_frames: int) -> "WindowLayout":
        """Everything stage 1 needs to know about one video of `n_frames` frames."""
        starts = self.window_starts(n_frames)
        last = n_frames - 1
        img_pos = np.minimum(self.positions(starts, self.image_every), last)
        cap_pos = np.minimum(self.positions(starts, self.caption_every), last)
        image_frames = np.unique(img_pos)
        caption_frames = np.unique(cap_pos)
        clip_frames = {t: np.minimum(self.positions(starts, self.window // t), last) for t in self.video_frames}
        valid = (starts[:, None] + np.arange(self.window)[None, :]) < n_frames
        return WindowLayout(
            n_frames=n_frames,
            starts=starts,
            image_frames=image_frames,
            caption_frames=caption_frames,
            image_index=np.searchsorted(image_frames, img_pos).astype(np.int32),
            caption_index=np.searchsorted(caption_frames, cap_pos).astype(np.int32),
            clip_frames=clip_frames,
            valid=valid,
        )


@dataclass
class WindowLayout:
    """The windows of one video and the per-frame tables they index into.

    `image_index[w, k]` is the row of `image_frames` that window w shows at step k;
    `caption_index` likewise for `caption_frames`; `clip_frames[T][w]` are the frames of the
    T-frame VideoPrism clip of window w; `valid[w, j]` is False where frame start+j is padding.
    """

    n_frames: int
    starts: np.ndarray
    image_frames: np.ndarray
    caption_frames: np.ndarray
    image_index: np.ndarray
    caption_index: np.ndarray
    clip_frames: dict[int, np.ndarray]
    valid: np.ndarray

    @property
    def n_windows(self) -> int:
        return len(self.starts)

    def needed_frames(self) -> np.ndarray:
        """Sorted frame numbers that any encoder needs: the only frames worth converting to RGB."""
        parts = [self.image_frames, self.caption_frames, *[c.ravel() for c in self.clip_frames.values()]]
        return np.unique(np.concatenate(parts))


def step_frames(starts: np.ndarray, n_steps: int, every: int) -> np.ndarray:
    """(W, n_steps) frame numbers of each query step, for targets and frame-level evaluation."""
    return np.asarray(starts)[:, None] + every * np.arange(n_steps)[None, :]
