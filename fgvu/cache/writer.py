"""`PartWriter`: the single writer of one part. Appends whole videos and commits after each.

It holds an exclusive lock (flock, released by the kernel even on kill -9) for its lifetime.
Opening truncates rows past the last commit, so re-running after a crash resumes cleanly.
Every array it writes comes from the layout (`fgvu.cache.layout.layout_of`), so the writer
knows no modality by name.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import numpy as np

from fgvu.atomic_io import write_json, write_text
from fgvu.cache.layout import (
    CHUNKS_PER_SHARD, OFFSET_COLUMNS, CacheError, Layout, chunk_rows, layout_of, part_path,
    read_commit,
)
from fgvu.cache.record import VideoRecord
from fgvu.cache.spec import CacheSpec, ensure_spec
from fgvu.modalities import GRIDS

CAPTIONS_FILE = "captions.jsonl"
COMMIT_FILE = "commit.json"
LOCK_FILE = "writer.lock"


class PartWriter:
    """The single writer of one part of a cache."""

    def __init__(self, cache: str | Path, spec: CacheSpec, part: int):
        self.cache = Path(cache)
        self.spec = ensure_spec(self.cache, spec)
        self.layout: Layout = layout_of(self.spec)
        self.path = part_path(self.cache, part)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / LOCK_FILE, "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise CacheError(
                f"cache {self.cache}: part {part} is being written by another process (lock {self.path / LOCK_FILE})"
            ) from None
        try:
            self._open()
        except BaseException:
            self.close()  # never keep the part locked after a failed open
            raise

    def _open(self) -> None:
        import zarr

        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        for leftover in self.path.rglob("*.partial"):  # temp files of a writer killed mid-write
            leftover.unlink()
        self.group = zarr.open_group(self.path, mode="a", zarr_format=3)
        self.commit = read_commit(self.path)
        self.arrays = {a.name: self._open_array(a) for a in self.layout}
        self._truncate_to_commit()

    def _open_array(self, a):
        if a.name in self.group:
            arr = self.group[a.name]
            if tuple(arr.shape[1:]) != a.row_shape:
                raise CacheError(f"cache {self.cache}: {self.path.name}/{a.name} has rows {arr.shape[1:]}, "
                                 f"expected {a.row_shape}")
            return arr
        rows = chunk_rows(a)
        kwargs = {}
        # Variable-length strings cannot be sharded; the small videos table needs no shards.
        if a.dtype != "str" and a.table != "videos":
            kwargs["shards"] = (rows * CHUNKS_PER_SHARD, *a.row_shape)
        return self.group.create_array(
            a.name, shape=(0, *a.row_shape), chunks=(rows, *a.row_shape), dtype=str if a.dtype == "str" else a.dtype,
            fill_value="" if a.dtype == "str" else 0, **kwargs,
        )

    def _truncate_to_commit(self) -> None:
        rows = self.commit["rows"]
        for a in self.layout:
            arr = self.arrays[a.name]
            if arr.shape[0] != rows[a.table]:
                arr.resize((rows[a.table], *arr.shape[1:]))
        captions = self.path / CAPTIONS_FILE
        if captions.exists():
            lines = captions.read_text().splitlines(keepends=True)
            n = rows[GRIDS["caption"].table]
            if len(lines) != n:  # rewrite atomically: committed lines must survive a crash
                write_text(captions, "".join(lines[:n]))

    @property
    def committed_videos(self) -> set[str]:
        """Names of the videos already committed in this part."""
        n = self.commit["rows"]["videos"]
        return set(self.arrays["videos/name"][:n].tolist()) if n else set()

    def _append(self, name: str, values: np.ndarray) -> None:
        arr = self.arrays[name]
        start = arr.shape[0]
        arr.resize((start + len(values), *arr.shape[1:]))
        if len(values):
            arr[start:] = values

    def append_video(self, rec: VideoRecord) -> None:
        """Append one whole video and commit it. Indices in `rec` are local to the video."""
        rows = self.commit["rows"]
        counts = record_rows(rec)
        values = record_arrays(self.cache, self.spec, self.layout, rec, rows, counts)
        for name, value in values.items():
            self._append(name, value)
        if rec.captions is not None:
            with open(self.path / CAPTIONS_FILE, "a") as f:
                for frame, text in zip(rec.caption_frame.tolist(), rec.captions):
                    f.write(json.dumps({"video": rec.name, "frame": frame, "text": text}) + "\n")
        rows = {t: rows[t] + counts.get(t, 0) for t in rows}
        failures = [f for f in self.commit["failures"] if f["video"] != rec.name]  # it failed before, not now
        self.commit = {**self.commit, "rows": rows, "failures": failures}
        write_json(self.path / COMMIT_FILE, self.commit)

    def record_failure(self, video: str, reason: str) -> None:
        """Log a video that could not be extracted; it stays in the part's failure list."""
        failures = [f for f in self.commit["failures"] if f["video"] != video]
        self.commit = {**self.commit, "failures": [*failures, {"video": video, "reason": reason}]}
        write_json(self.path / COMMIT_FILE, self.commit)

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def record_rows(rec: VideoRecord) -> dict[str, int]:
    """Rows the record adds to each table."""
    counts = {"videos": 1, "windows": len(rec.window_start), "frames": int(rec.n_frames)}
    for grid in GRIDS.values():
        frames = rec.streams.get(grid.frames_key)
        counts[grid.table] = 0 if frames is None else len(frames)
    return counts


def record_arrays(cache: Path, spec: CacheSpec, layout: Layout, rec: VideoRecord, rows: dict[str, int],
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

