"""`VideoRecord`: everything stage 1 produced for one whole video, ready to append to a part.

Besides a few fixed fields (name, split, size, windows, targets), a record holds its streams
by the attribute names of the layout (`fgvu.cache.layout.stream_keys`): the grids'
`image_frame`/`image_index`/`caption_frame`/`caption_index`, and one entry per modality of the
registry (`image`, `text`, `video` as {T: clips}, ...). So `VideoRecord(..., image=feats)` and
`rec.image` work for every registered modality without a field per modality here.
"""

from __future__ import annotations

import numpy as np

from fgvu.cache.layout import clip_keys, stream_keys

_FIXED = ("name", "split", "n_frames", "fps", "width", "height", "window_start", "valid", "targets",
          "target_mask", "captions", "streams", "missing_frames")


class VideoRecord:
    """One whole video: indices are local to the video (row 0 is its first grid row)."""

    def __init__(self, name: str, split: str, n_frames: int, fps: float, width: int, height: int,
                 window_start: np.ndarray, valid: np.ndarray, targets: np.ndarray, target_mask: np.ndarray,
                 captions: list[str] | None = None, missing_frames: int = 0, **streams):
        """window_start [W], valid [W, window], targets / target_mask [n_frames, K], captions: one
        string per caption-grid row (None when the captions are not kept); `missing_frames`: how many
        frames had no image (masked in target_mask); `streams` by layout key."""
        unknown = sorted(set(streams) - stream_keys())
        if unknown:
            raise TypeError(f"VideoRecord got unknown streams {unknown}; known: {sorted(stream_keys())}")
        self.name, self.split, self.n_frames, self.fps = name, split, n_frames, fps
        self.width, self.height = width, height
        self.window_start, self.valid = window_start, valid
        self.targets, self.target_mask = targets, target_mask
        self.captions = captions
        self.missing_frames = int(missing_frames)
        self.streams = {k: v for k, v in streams.items() if v is not None}

    def __getattr__(self, key: str):
        # only reached when normal lookup fails: the stream arrays
        if key in clip_keys():  # {T: clips}, filled in place like the other streams
            return self.__dict__["streams"].setdefault(key, {})
        if key in stream_keys():
            return self.__dict__.get("streams", {}).get(key)
        raise AttributeError(f"VideoRecord has no attribute {key!r}")

    def __setattr__(self, key: str, value) -> None:
        if key in _FIXED:
            object.__setattr__(self, key, value)
        elif key in stream_keys():
            if value is None:
                self.streams.pop(key, None)
            else:
                self.streams[key] = value
        else:
            raise AttributeError(f"VideoRecord has no attribute {key!r}")

    @property
    def n_windows(self) -> int:
        return len(self.window_start)

    def __repr__(self) -> str:
        return f"VideoRecord({self.name!r}, {self.n_frames} frames, {self.n_windows} windows, streams {sorted(self.streams)})"
