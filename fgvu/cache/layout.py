"""The cache's layout: schema version, paths, the row tables, and the spec of every array.

One cache is one dataset seen through one encoder set::

    CACHE/cache.json                  schema version, dataset, task, sampling plan, encoders, dims
    CACHE/parts/part-NNNNN.zarr/      a Zarr v3 group, written by exactly one writer
        windows/video_id, start, valid        one row per window
        windows/<grid>_index                  [n_windows, steps] rows of each frame grid
        frames/<grid>_frame                   frame number of each grid row
        frames/<modality>, frames/<m>_mask     grid modalities: one feature row per grid row
        clips/<modality>_fT                   clip modalities: [n_windows, T, D] per length T
        targets/values, targets/mask          [n_frames, K] per-frame targets of every video
        videos/*                              one row per video: name, split, size, row offsets
        captions.jsonl                        one line per caption-grid row: {"video", "frame", "text"}
        commit.json                           row counts of the last whole video, and failures

The arrays of the streams come from the modality registry (`fgvu.modalities`): this module
iterates over `GRIDS` and `MODALITIES`, so a new modality needs no edit here. A part commits
after each whole video; rows past `commit.json` are ignored by readers and truncated by the
next writer, so a crash can neither lose nor duplicate a video.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.errors import FgvuError
from fgvu.modalities import GRIDS, MODALITIES

SCHEMA_VERSION = 1
CHUNK_BYTES = 1 << 20  # ~1 MiB chunks inside ...
CHUNKS_PER_SHARD = 16  # ... 16 MiB shards
# Row tables: every array grows with one of them, and commit.json counts each.
BASE_TABLES = ("videos", "windows", "frames")
TABLES = BASE_TABLES + tuple(g.table for g in GRIDS.values())
# The videos table holds each video's first row in every other table.
OFFSET_COLUMNS = {"windows": "window_offset", "frames": "frame_offset",
                  **{g.table: f"{g.table}_offset" for g in GRIDS.values()}}
VIDEO_COLUMNS = {"name": "str", "split": "str", "n_frames": "int64", "fps": "float64", "width": "int32",
                 "height": "int32", **{col: "int64" for col in OFFSET_COLUMNS.values()}}


class CacheError(FgvuError):
    """A cache that cannot be used as asked; the message names the cache and the problem."""


@dataclass(frozen=True)
class ArraySpec:
    """One array of a part: its rows, what they grow with, and where records and views keep it."""

    name: str  # path inside the part ("frames/image")
    row_shape: tuple[int, ...]
    dtype: str  # a numpy dtype name, or "str"
    table: str  # the row table it grows with
    key: str  # the attribute on records and views ("image", "image_index", "window_start")
    offset_table: str | None = None  # its values are rows of this table (rebased across parts)
    clip_length: int | None = None  # clip arrays: T
    modality: str | None = None  # the letter of the modality it stores

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")


@dataclass(frozen=True)
class Layout:
    """Every array a part of one cache holds (from its spec), in a fixed order."""

    arrays: tuple[ArraySpec, ...]

    def __iter__(self) -> Iterator[ArraySpec]:
        return iter(self.arrays)

    def __getitem__(self, name: str) -> ArraySpec:
        for spec in self.arrays:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def names(self) -> list[str]:
        return [a.name for a in self.arrays]

    def select(self, modalities=None, video_frames=None) -> "Layout":
        """The arrays a reader needs for some modalities (letters) and clip lengths; None keeps all."""
        keep = []
        for a in self.arrays:
            if a.modality is not None and modalities is not None and a.modality not in modalities:
                continue
            if a.clip_length is not None and video_frames is not None and a.clip_length not in video_frames:
                continue
            keep.append(a)
        return Layout(tuple(keep))


def layout_of(spec) -> Layout:
    """The arrays of a cache with this CacheSpec: fixed tables, the grids, then each stored modality."""
    plan = spec.sampling
    k = len(spec.target_names)
    arrays = [
        ArraySpec("windows/video_id", (), "int32", "windows", "window_video", offset_table="videos"),
        ArraySpec("windows/start", (), "int32", "windows", "window_start"),
        ArraySpec("windows/valid", (plan.window,), "bool", "windows", "valid"),
    ]
    for grid in GRIDS.values():
        arrays.append(ArraySpec(grid.index, (grid.steps(plan),), "int32", "windows", grid.index_key,
                                offset_table=grid.table))
    arrays += [
        ArraySpec("targets/values", (k,), "float32", "frames", "targets"),
        ArraySpec("targets/mask", (k,), "bool", "frames", "target_mask"),
    ]
    for column, dtype in VIDEO_COLUMNS.items():
        offset_table = next((t for t, c in OFFSET_COLUMNS.items() if c == column), None)
        arrays.append(ArraySpec(f"videos/{column}", (), dtype, "videos", column, offset_table=offset_table))
    for grid in GRIDS.values():
        arrays.append(ArraySpec(grid.frames, (), "int32", grid.table, grid.frames_key))
    for m in MODALITIES.values():
        if m.name not in spec.dims:
            continue
        dim = int(spec.dims[m.name])
        if m.storage == "clip":
            for t in plan.video_frames:
                arrays.append(ArraySpec(m.clip_array(t), (t, dim), "float16", "windows", m.name, clip_length=t,
                                        modality=m.letter))
            continue
        table = m.on_grid.table
        arrays.append(ArraySpec(m.features, (dim,), "float16", table, m.name, modality=m.letter))
        if m.masked:
            arrays.append(ArraySpec(m.mask, (), "bool", table, m.mask_key, modality=m.letter))
    return Layout(tuple(arrays))


def stream_keys() -> set[str]:
    """Attribute names of the stream arrays on records and views: grids and every registered modality."""
    keys = {k for g in GRIDS.values() for k in (g.frames_key, g.index_key)}
    for m in MODALITIES.values():
        keys.add(m.name)
        if m.masked:
            keys.add(m.mask_key)
    return keys


def clip_keys() -> set[str]:
    """Attribute names that hold {T: clips} dicts (the clip modalities)."""
    return {m.name for m in MODALITIES.values() if m.storage == "clip"}


def chunk_rows(spec: ArraySpec) -> int:
    """Rows per chunk: about CHUNK_BYTES per chunk, a power of two in [64, 65536]."""
    if spec.table == "videos":
        return 1024
    itemsize = 8 if spec.dtype == "str" else np.dtype(spec.dtype).itemsize
    row_bytes = int(np.prod(spec.row_shape, dtype=np.int64)) * itemsize
    return int(max(64, min(1 << 16, 2 ** int(np.log2(max(1, CHUNK_BYTES // max(1, row_bytes)))))))


def array_options(spec: ArraySpec) -> dict:
    """How an array of a part is created (chunks, shards, dtype, fill value), for code that adds
    arrays to an existing part (`fgvu.cache.extend`); the same choices as `PartWriter` makes."""
    rows = chunk_rows(spec)
    options = {"chunks": (rows, *spec.row_shape), "dtype": str if spec.dtype == "str" else spec.dtype,
               "fill_value": "" if spec.dtype == "str" else 0}
    # Variable-length strings cannot be sharded; the small videos table needs no shards.
    if spec.dtype != "str" and spec.table != "videos":
        options["shards"] = (rows * CHUNKS_PER_SHARD, *spec.row_shape)
    return options


# ---- paths and parts -------------------------------------------------------------------------


def part_path(cache: str | Path, index: int) -> Path:
    """The directory of part `index`."""
    return Path(cache) / "parts" / f"part-{index:05d}.zarr"


def part_dirs(cache: str | Path) -> list[Path]:
    """All part directories of a cache, in order."""
    return sorted((Path(cache) / "parts").glob("part-*.zarr"))


def empty_commit() -> dict:
    return {"rows": {t: 0 for t in TABLES}, "failures": []}


def read_commit(part: Path) -> dict:
    """A part's commit.json (committed row counts and failures); an absent file means nothing committed."""
    path = Path(part) / "commit.json"
    empty = empty_commit()
    if not path.exists():
        return empty
    try:
        commit = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"part {part}: commit.json is corrupt ({e})") from None
    if not isinstance(commit, dict) or not isinstance(commit.get("rows", {}), dict):
        raise CacheError(f"part {part}: commit.json is malformed (expected an object with 'rows')")
    return {**empty, **commit, "rows": {**empty["rows"], **commit.get("rows", {})}}


@dataclass
class CommittedPart:
    """One part and what its commit.json says is committed."""

    path: Path
    rows: dict[str, int]
    failures: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def n_videos(self) -> int:
        return int(self.rows["videos"])

    def group(self):
        """The part's Zarr group, read-only; a damaged part raises CacheError naming it."""
        return open_part(self.path)


def iter_committed_parts(cache: str | Path) -> Iterator[CommittedPart]:
    """Every part of a cache with its committed row counts and failures, in part order."""
    for path in part_dirs(cache):
        commit = read_commit(path)
        yield CommittedPart(path, commit["rows"], list(commit["failures"]))


def open_part(part: Path):
    """A part's Zarr group, read-only; a damaged part raises CacheError naming it."""
    import zarr

    try:
        return zarr.open_group(part, mode="r", zarr_format=3)
    except Exception as e:  # zarr raises several types for a damaged group
        raise CacheError(f"part {part} is not a readable Zarr group ({e})") from None


def read_rows(arr, n: int, spec: ArraySpec) -> np.ndarray:
    """The first `n` rows of a Zarr array as numpy (strings as a str array)."""
    if spec.dtype == "str":  # zarr returns numpy StringDType
        return np.array(arr[:n].tolist() if n else [], dtype=object).astype(str)
    return np.asarray(arr[:n]) if n else np.zeros((0, *spec.row_shape), dtype=spec.dtype)
