"""`VideoRecord`: everything stage 1 produced for one whole video, ready to append to a part.

Besides a few fixed fields (name, split, size, windows, targets), a record holds its streams
by the attribute names of the layout (`fgvu.cache.layout.stream_keys`): the grids'
`image_frame`/`image_index`/`caption_frame`/`caption_index`, and one entry per modality of the
registry (`image`, `text`, `video` as {T: clips}, ...). So `VideoRecord(..., image=feats)` and
`rec.image` work for every registered modality without a field per modality here.

`record_arrays` turns a record into each array's new rows, checked against the layout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvu.cache.layout import OFFSET_COLUMNS, CacheError, Layout, clip_keys, stream_keys
from fgvu.modalities import GRIDS

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


def record_rows(rec: VideoRecord) -> dict[str, int]:
    """Rows the record adds to each table."""
    counts = {"videos": 1, "windows": len(rec.window_start), "frames": int(rec.n_frames)}
    for grid in GRIDS.values():
        frames = rec.streams.get(grid.frames_key)
        counts[grid.table] = 0 if frames is None else len(frames)
    return counts


def record_arrays(cache: Path, spec, layout: Layout, rec: VideoRecord, rows: dict[str, int],
                  counts: dict[str, int]) -> dict[str, np.ndarray]:
    """Every array's new rows for `rec`, checked against the layout and rebased onto the part's rows.

    A record that does not fit (missing stream, wrong shape, NaN features) is refused with a
    CacheError naming the video, before anything is written.
    """

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise CacheError(f"cache {cache}: video {rec.name!r}: {what}")

    k = len(spec.target_names)
    need(np.shape(rec.targets) == (rec.n_frames, k), f"targets shape {np.shape(rec.targets)}, expected {(rec.n_frames, k)}")
    need(np.shape(rec.target_mask) == np.shape(rec.targets), "target_mask shape differs from targets")
    if rec.captions is not None:
        need(rec.caption_frame is not None and len(rec.captions) == len(rec.caption_frame),
             "captions and caption frames differ")
    need(0 <= rec.missing_frames <= rec.n_frames, f"missing_frames {rec.missing_frames} outside [0, {rec.n_frames}]")
    video_columns = {"name": rec.name, "split": rec.split, "n_frames": rec.n_frames, "fps": rec.fps,
                     "width": rec.width, "height": rec.height, "missing_frames": rec.missing_frames,
                     **{col: rows[table] for table, col in OFFSET_COLUMNS.items()}}
    out = {}
    for a in layout:
        n = counts[a.table]
        if a.table == "videos":
            value = np.array([video_columns[a.key]], dtype=object if a.dtype == "str" else a.dtype)
        elif a.key == "window_video":
            value = np.full(n, rows["videos"])
        elif a.key in ("window_start", "valid", "targets", "target_mask"):
            value = np.asarray(getattr(rec, a.key))
        else:
            value = rec.streams.get(a.key)
            if a.clip_length is not None and value is not None:
                value = value.get(a.clip_length)
            what = a.key if a.clip_length is None else f"{a.key} clips for T={a.clip_length}"
            need(value is not None, f"no {what} (the cache stores {a.name})")
            value = np.asarray(value)
        shape = (n, *a.row_shape)
        need(value.shape == shape, f"{a.key} shape {value.shape}, expected {shape}"
             if a.clip_length is None else f"video clips for T={a.clip_length} must be {shape}, got {value.shape}")
        if a.modality is not None and a.is_float:
            need(bool(np.isfinite(value).all()), f"{a.key} features contain NaN or Inf"
                 if a.clip_length is None else f"{a.key} features (T={a.clip_length}) contain NaN or Inf")
        if a.offset_table is not None and a.table != "videos" and a.key != "window_video":
            value = value + rows[a.offset_table]
        out[a.name] = value.astype(str if a.dtype == "str" else a.dtype)
    return out

