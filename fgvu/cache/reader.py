"""Reading a cache: the in-memory view of its committed rows, captions, committed videos, fingerprint.

Stage 2 reads the cache only through this module (and `shared`, which maps what it wrote once).
`open_cache` loads every committed row of every part into one `CacheView` with cache-global
indices. It can load only some modalities and clip lengths (a run reads one clip length), and it
fills arrays allocated once at their final size, block by block, so no concatenated second copy
and no whole-part temporary is ever made. It refuses a damaged, foreign, duplicated or (unless
asked) incomplete cache with one line naming the file (`fgvu.cache.integrity`), and checks the
checksum of every row it loads.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.cache.commit import CommittedPart, iter_committed_parts
from fgvu.cache.integrity import (
    checksum_lines, checksum_problems, duplicate_problems, part_arrays, part_findings, read_checked, target_problems,
)
from fgvu.cache.layout import TABLES, VIDEO_COLUMNS, ArraySpec, CacheError, clip_keys, layout_of, stream_keys
from fgvu.cache.location import cache_path
from fgvu.cache.spec import SPEC_FILE, CacheSpec, read_spec
from fgvu.cache.storage import iter_blocks, open_array, read_lines
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
    missing_frames: np.ndarray  # frames without an image (masked); 0 for parts written by fgvu 0.1

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


def open_cache(cache: str | Path, load_captions: bool = False, modalities=None, video_frames=None,
               allow_partial: bool = False, allocate=None) -> CacheView:
    """Read every committed row of every part of a cache into one in-memory view.

    `modalities` (letters) and `video_frames` (clip lengths) restrict which feature arrays are
    loaded; None loads all. Before reading any feature it checks, and refuses with a CacheError
    naming the file: cache.json and every commit.json readable, every part stamped with this
    cache.json and in its partition, every part present and finished (unless `allow_partial`),
    every array present with the committed rows, every shard they need stored, no video in two
    parts. While reading it recomputes the checksums of every row it loads and checks that valid
    targets lie in the task's range. Rows past a part's commit are ignored. Each array is
    allocated once at its final size by `allocate(array_spec, shape)` (default: in memory;
    `fgvu.cache.shared` maps files) and filled block by block.
    """
    cache = cache_path(cache)
    spec = read_spec(cache)
    layout = layout_of(spec).select(modalities, video_frames)
    parts = list(iter_committed_parts(cache))
    _refuse(part_findings(cache, spec, parts).refusal(allow_partial))
    parts = [p for p in parts if p.has_commit]
    opened = []  # (part, its arrays) of the parts with videos
    for part in parts:
        if part.n_videos:
            problems: list[str] = []
            opened.append((part, part_arrays(part, layout, problems, checksum_lines(part))))
            _refuse(problems[0] if problems else None)
    totals = {t: sum(p.rows[t] for p in parts) for t in TABLES}
    # one allocation per array at its final size, filled part by part; the small video table first,
    # so that duplicates are refused before any feature is read
    allocate = allocate or allocate_in_memory
    _one_decode_thread()
    out = {a.name: allocate(a, (totals[a.table], *a.row_shape)) for a in layout}
    video_arrays = [a for a in layout if a.table == "videos"]
    _read_parts(opened, video_arrays, out)
    names = out["videos/name"].astype(str)
    bounds = np.cumsum([0] + [p.n_videos for p, _ in opened])
    _refuse(next(iter(duplicate_problems([(p, names[lo:hi].tolist())
                                          for (p, _), lo, hi in zip(opened, bounds[:-1], bounds[1:])])), None))
    _read_parts(opened, [a for a in layout if a.table != "videos"], out)
    _check_targets(spec, opened, out, bounds)
    failures = [{**f, "part": part.name} for part in parts for f in part.failures]
    captions = [row for part, _ in opened for row in part_captions(cache, part)] if load_captions else None
    return assemble_view(cache, spec, layout, out, failures, captions)


def _refuse(reason: str | None) -> None:
    if reason:
        raise CacheError(reason)


def _read_parts(opened: list, arrays: list[ArraySpec], out: dict) -> None:
    """Fill `out` with the committed rows of `arrays` from every part, rebased to cache-global rows."""
    offsets = {t: 0 for t in TABLES}
    for part, found in opened:
        for a in arrays:
            if a.optional and a.name not in found.arrays:
                continue  # a part older than the array: its rows stay 0
            lo, base = offsets[a.table], offsets[a.offset_table] if a.offset_table is not None else 0
            target = out[a.name]

            def fill(start: int, block: np.ndarray, target=target, lo=lo, base=base) -> None:
                target[lo + start: lo + start + len(block)] = block + base if base else block

            bad = read_checked(part, a, found.arrays[a.name], found.ranges[a.name], fill)
            _refuse(next(iter(checksum_problems(part, a, found.arrays[a.name], bad)), None))
        for t in TABLES:
            offsets[t] += part.rows[t]


def _check_targets(spec: CacheSpec, opened: list, out: dict, bounds: np.ndarray) -> None:
    frame_lo = 0
    for (part, _), lo, hi in zip(opened, bounds[:-1], bounds[1:]):
        n = part.rows["frames"]
        offsets = out["videos/frame_offset"][lo:hi].astype(np.int64) - frame_lo
        _refuse(next(iter(target_problems(spec, part, out["targets/values"][frame_lo: frame_lo + n],
                                          out["targets/mask"][frame_lo: frame_lo + n],
                                          out["videos/name"][lo:hi].astype(str), offsets)), None))
        frame_lo += n


def allocate_in_memory(a: ArraySpec, shape: tuple[int, ...]) -> np.ndarray:
    """A zeroed array for `a` (its pages are only touched when filled)."""
    return np.zeros(shape, dtype=object if a.dtype == "str" else a.dtype)


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
    # a short file yields fewer rows: `verify` reports it, --reuse-captions names each missing caption
    for line_no, line in enumerate(read_lines(path, n), start=1):
        try:
            yield json.loads(line)
        except json.JSONDecodeError as e:
            raise CacheError(f"{path}: line {line_no} is not JSON ({e})") from None


def read_captions(cache: str | Path) -> dict[tuple[str, int], str]:
    """{(video, frame): caption} of every committed caption row of every part."""
    cache = cache_path(cache)
    return {(row["video"], int(row["frame"])): row["text"]
            for part in iter_committed_parts(cache) for row in part_captions(cache, part)}


def video_column(part: CommittedPart, column: str) -> np.ndarray:
    """One column of a part's committed video table (names, frame counts, ...)."""
    spec = ArraySpec(f"videos/{column}", (), VIDEO_COLUMNS[column], "videos", column)
    arr = open_array(part.group(), part.path, spec.name)
    if arr is None:
        raise CacheError(f"{part.path}: array {spec.name} is missing")
    return np.concatenate([block for _, block in iter_blocks(part.path, spec.name, arr, part.n_videos, spec)]
                          or [np.zeros(0, dtype=str if spec.dtype == "str" else spec.dtype)])


def committed_videos(cache: str | Path, exclude: Path | None = None) -> dict[str, str]:
    """{video name: part name} of every committed video (parts other than `exclude`)."""
    names: dict[str, str] = {}
    for part in iter_committed_parts(cache):
        if part.n_videos == 0 or (exclude is not None and part.path == cache_path(exclude)):
            continue
        for name in video_column(part, "name").tolist():
            names.setdefault(name, part.name)
    return names


def cache_fingerprint(cache: str | Path) -> str:
    """sha256 of cache.json and the committed videos (sorted names with their frame counts).

    Reads only cache.json, each part's commit.json and its two small video columns, so it is
    cheap on a large cache. Re-extracting a cache with other encoders, sampling or videos
    changes it; rewriting the same videos' features with the same settings does not.
    """
    cache = cache_path(cache)
    digest = hashlib.sha256((cache / SPEC_FILE).read_bytes())
    videos = []
    for part in iter_committed_parts(cache):
        if part.n_videos == 0:
            continue
        names = video_column(part, "name").tolist()
        frames = video_column(part, "n_frames").tolist()
        videos += [f"{name}\t{int(f)}" for name, f in zip(names, frames)]
    digest.update("\n".join(sorted(videos)).encode())
    return digest.hexdigest()
