"""Reading a cache: the in-memory view of its committed rows, captions, committed videos, fingerprint.

Stage 2 reads the cache only through this module (and `shared`, which maps what it wrote once).
`open_cache` loads every committed row of every part into one `CacheView` with cache-global
indices. It can load only some modalities and clip lengths (a run reads one clip length), and it
fills arrays allocated once at their final size shard by shard, so no concatenated second copy
and no whole-part temporary is ever made.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.cache.layout import (
    TABLES, VIDEO_COLUMNS, ArraySpec, CacheError, CommittedPart, clip_keys, iter_committed_parts, layout_of,
    read_rows, stream_keys,
)
from fgvu.cache.spec import SPEC_FILE, CacheSpec, read_spec
from fgvu.cache.writer import CAPTIONS_FILE
from fgvu.modalities import GRIDS


@dataclass
class VideoTable:
    """One row per committed video, across all parts. Offsets are cache-global rows."""

    name: np.ndarray
    split: np.ndarray
    n_frames: np.ndarray
    fps: np.ndarray
    width: np.ndarray
    height: np.ndarray
    image_offset: np.ndarray
    text_offset: np.ndarray
    window_offset: np.ndarray
    frame_offset: np.ndarray

    def __len__(self) -> int:
        return len(self.name)


@dataclass
class CacheView:
    """All committed rows of every part, in memory with cache-global indices.

    The stream arrays are in `arrays`, by the layout's attribute names, and readable as
    attributes: `view.image` [n_img, Di], `view.image_index` [W, 16], `view.caption_frame`,
    `view.video` ({T: [W, T, Dv]}), ... A modality the cache does not hold (or that was not
    loaded) reads as None ({} for clip modalities).
    """

    path: Path
    spec: CacheSpec
    videos: VideoTable
    window_video: np.ndarray  # [W] row of `videos`
    window_start: np.ndarray  # [W]
    valid: np.ndarray  # [W, window]
    targets: np.ndarray  # [F, K]
    target_mask: np.ndarray  # [F, K]
    arrays: dict = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    captions: list[dict] | None = None

    def __getattr__(self, key: str):
        # only reached when normal lookup fails: the stream arrays
        if key in stream_keys():
            arrays = self.__dict__.get("arrays", {})
            return arrays.get(key, {} if key in clip_keys() else None)
        raise AttributeError(f"CacheView has no attribute {key!r}")

    @property
    def n_windows(self) -> int:
        return len(self.window_start)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.spec.modalities

    def windows_of(self, video_rows: np.ndarray) -> np.ndarray:
        """Window indices belonging to the given video rows."""
        return np.flatnonzero(np.isin(self.window_video, np.asarray(video_rows)))


def _check_part_array(cache: Path, part: CommittedPart, group, a: ArraySpec):
    if a.name not in group:
        raise CacheError(f"cache {cache}: {part.name} is missing array {a.name}")
    arr = group[a.name]
    n = part.rows[a.table]
    if tuple(arr.shape[1:]) != a.row_shape:
        raise CacheError(f"cache {cache}: {part.name}/{a.name} has rows of shape {arr.shape[1:]}, "
                         f"cache.json says {a.row_shape}")
    if arr.shape[0] < n:
        raise CacheError(f"cache {cache}: {part.name}/{a.name} has {arr.shape[0]} rows but {n} are committed")
    return arr


def open_cache(cache: str | Path, load_captions: bool = False, modalities=None, video_frames=None,
               allocate=None) -> CacheView:
    """Read every committed row of every part of a cache into one in-memory view.

    `modalities` (letters) and `video_frames` (clip lengths) restrict which feature arrays are
    loaded; None loads all. Validates the schema version, the presence and row shapes of every
    array, and that committed rows exist; rows past a part's commit are ignored. Each array is
    allocated once at its final size by `allocate(array_spec, shape)` (default: in memory;
    `fgvu.cache.shared` maps files) and filled shard by shard, so no part is ever held twice.
    """
    cache = Path(cache)
    spec = read_spec(cache)
    layout = layout_of(spec).select(modalities, video_frames)
    parts = list(iter_committed_parts(cache))
    totals = {t: sum(p.rows[t] for p in parts) for t in TABLES}
    allocate = allocate or allocate_in_memory
    _one_decode_thread()
    out = {a.name: allocate(a, (totals[a.table], *a.row_shape)) for a in layout}
    offsets = {t: 0 for t in TABLES}
    failures, captions = [], []
    for part in parts:
        failures += [{**f, "part": part.name} for f in part.failures]
        if part.n_videos == 0:
            continue
        group = part.group()
        for a in layout:
            arr = _check_part_array(cache, part, group, a)
            n = part.rows[a.table]
            lo = offsets[a.table]
            shift = offsets[a.offset_table] if a.offset_table is not None else 0
            _read_into(arr, n, a, out[a.name][lo: lo + n], shift)
        if load_captions:
            captions += list(part_captions(cache, part))
        for t in TABLES:
            offsets[t] += part.rows[t]
    return assemble_view(cache, spec, layout, out, failures, captions if load_captions else None)


def allocate_in_memory(a: ArraySpec, shape: tuple[int, ...]) -> np.ndarray:
    """A zeroed array for `a` (its pages are only touched when filled)."""
    return np.zeros(shape, dtype=object if a.dtype == "str" else a.dtype)


def _read_into(arr, n: int, a: ArraySpec, dest: np.ndarray, shift: int = 0) -> None:
    """The first `n` rows of Zarr array `arr` decoded straight into `dest`, one shard at a time, plus
    `shift` (rebased rows): no temporary block, no second copy."""
    if a.dtype == "str" or n == 0:
        dest[:] = read_rows(arr, n, a)
        return
    from zarr.core.buffer.cpu import NDBuffer

    step = arr.shards[0] if getattr(arr, "shards", None) else arr.chunks[0]
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        arr.get_basic_selection(slice(lo, hi), out=NDBuffer.from_numpy_array(dest[lo:hi]))
        if shift:
            dest[lo:hi] += shift


def _one_decode_thread() -> None:
    """Decode chunks in one zarr worker thread in this process, unless its zarr config says otherwise.

    Each decoding thread keeps its own malloc arena of freed shard buffers: with zarr's default
    pool (cores + 4 threads) reading a cache peaks at 1.6-1.7x the arrays' bytes, with one at
    1.2-1.3x (80 videos at 768-d, 0.23 GiB), and was as fast on 2 cores. zarr makes its pool at
    its first read, so a process that read before keeps the pool it has.
    """
    import zarr

    if zarr.config.get("threading.max_workers", None) is None:
        zarr.config.set({"threading.max_workers": 1})


def assemble_view(cache: Path, spec: CacheSpec, layout, arrays: dict[str, np.ndarray], failures: list[dict],
                  captions: list[dict] | None) -> CacheView:
    """The CacheView of the arrays of `layout` (by array name), with indices as int64 for gathers."""
    by_key = {a.key: arrays[a.name] for a in layout if a.clip_length is None}
    for a in layout:
        if a.clip_length is not None:
            by_key.setdefault(a.key, {})[a.clip_length] = arrays[a.name]
    columns = {col: by_key.pop(col) for col in VIDEO_COLUMNS}
    columns["name"], columns["split"] = columns["name"].astype(str), columns["split"].astype(str)
    fixed = {key: by_key.pop(key) for key in ("window_video", "window_start", "valid", "targets", "target_mask")}
    for key in ("window_video", "window_start"):
        fixed[key] = fixed[key].astype(np.int64)
    for grid in GRIDS.values():  # indices as int64, ready for gathers
        for key in (grid.frames_key, grid.index_key):
            by_key[key] = by_key[key].astype(np.int64)
    return CacheView(path=cache, spec=spec, videos=VideoTable(**columns), arrays=by_key, failures=failures,
                     captions=captions, **fixed)


def part_captions(cache: Path, part: CommittedPart) -> Iterator[dict]:
    """The committed caption lines of one part: {"video", "frame", "text"} per caption row."""
    n = part.rows[GRIDS["caption"].table]
    path = part.path / CAPTIONS_FILE
    if not n or not path.exists():
        if n and "text" in read_spec(cache).dims:
            raise CacheError(f"cache {cache}: {part.name} commits {n} captions but has no {CAPTIONS_FILE}")
        return
    for line_no, line in enumerate(path.read_text().splitlines()[:n], start=1):
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            raise CacheError(f"{path}: line {line_no} is not JSON ({e})") from None


def read_captions(cache: str | Path) -> dict[tuple[str, int], str]:
    """{(video, frame): caption} of every committed caption row of every part."""
    cache = Path(cache)
    return {(row["video"], int(row["frame"])): row["text"]
            for part in iter_committed_parts(cache) for row in part_captions(cache, part)}


def committed_videos(cache: str | Path, exclude: Path | None = None) -> dict[str, str]:
    """{video name: part name} of every committed video (parts other than `exclude`)."""
    names: dict[str, str] = {}
    for part in iter_committed_parts(cache):
        if part.n_videos == 0 or (exclude is not None and part.path == Path(exclude)):
            continue
        for name in part.group()["videos/name"][: part.n_videos].tolist():
            names.setdefault(name, part.name)
    return names


def cache_fingerprint(cache: str | Path) -> str:
    """sha256 of cache.json and the committed videos (sorted names with their frame counts).

    Reads only cache.json, each part's commit.json and its two small video columns, so it is
    cheap on a large cache. Re-extracting a cache with other encoders, sampling or videos
    changes it; rewriting the same videos' features with the same settings does not.
    """
    cache = Path(cache)
    digest = hashlib.sha256((cache / SPEC_FILE).read_bytes())
    videos = []
    for part in iter_committed_parts(cache):
        if part.n_videos == 0:
            continue
        group = part.group()
        names = group["videos/name"][: part.n_videos].tolist()
        frames = np.asarray(group["videos/n_frames"][: part.n_videos]).tolist()
        videos += [f"{name}\t{int(f)}" for name, f in zip(names, frames)]
    digest.update("\n".join(sorted(videos)).encode())
    return digest.hexdigest()
