"""The cache's layout: schema version, paths, the row tables, and the spec of every array.

One cache is one dataset seen through one encoder set::

    CACHE/cache.json                  schema version, dataset, task, sampling plan, encoders, dims, parts K
    CACHE/parts/part-NNNNN.zarr/      a Zarr v3 group, written by exactly one writer
        windows/video_id, start, valid        one row per window
        windows/<grid>_index                  [n_windows, steps] rows of each frame grid
        frames/<grid>_frame                   frame number of each grid row
        frames/<modality>, frames/<m>_mask     grid modalities: one feature row per grid row
        clips/<modality>_fT                   clip modalities: [n_windows, T, D] per length T
        targets/values, targets/mask          [n_frames, K] per-frame targets of every video
        videos/*                              one row per video: name, split, size, row offsets,
                                              frames without an image (missing_frames)
        captions.jsonl                        one line per caption-grid row: {"video", "frame", "text"}
        checksums.jsonl                       one line per committed video: crc32c of its rows in every array
        commit.json                           committed row counts, failures, the spec stamp, part k of K,
                                              finished, checksum lines (`fgvu.cache.commit`)

The arrays of the streams come from the modality registry (`fgvu.modalities`): this module
iterates over `GRIDS` and `MODALITIES`, so a new modality needs no edit here. A part commits
after whole videos; rows past `commit.json` are ignored by readers and truncated by the next
writer, so a crash can neither lose nor duplicate a video.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.cache.location import cache_path
from fgvu.errors import FgvuError
from fgvu.modalities import GRIDS, MODALITIES

SCHEMA_VERSION = 2  # 2: checksums, part stamps, the partition; 1 (fgvu 0.1) stays readable
SUPPORTED_SCHEMAS = (1, 2)
PART_NAME = re.compile(r"part-(\d+)\.zarr")
CHUNK_BYTES = 1 << 20  # ~1 MiB chunks inside ...
CHUNKS_PER_SHARD = 16  # ... 16 MiB shards
# Row tables: every array grows with one of them, and commit.json counts each.
BASE_TABLES = ("videos", "windows", "frames")
TABLES = BASE_TABLES + tuple(g.table for g in GRIDS.values())
# The videos table holds each video's first row in every other table.
OFFSET_COLUMNS = {"windows": "window_offset", "frames": "frame_offset",
                  **{g.table: f"{g.table}_offset" for g in GRIDS.values()}}
# Video columns added after fgvu 0.1. Parts written before a column existed lack its array:
# readers take 0 for their videos, and a writer resuming such a part fills the committed rows with 0.
ADDED_VIDEO_COLUMNS = {
    "missing_frames": "int64",  # frames without an image (a missing face crop); their targets are masked
}
VIDEO_COLUMNS = {"name": "str", "split": "str", "n_frames": "int64", "fps": "float64", "width": "int32",
                 "height": "int32", **{col: "int64" for col in OFFSET_COLUMNS.values()}, **ADDED_VIDEO_COLUMNS}


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
    optional: bool = False  # added after fgvu 0.1: a part may lack it, and its rows then read as 0

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith("float")

    @property
    def row_bytes(self) -> int:
        """Bytes of one row in memory (strings counted as 8)."""
        itemsize = 8 if self.dtype == "str" else np.dtype(self.dtype).itemsize
        return int(np.prod(self.row_shape, dtype=np.int64)) * itemsize


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
        arrays.append(ArraySpec(f"videos/{column}", (), dtype, "videos", column, offset_table=offset_table,
                                optional=column in ADDED_VIDEO_COLUMNS))
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
    return int(max(64, min(1 << 16, 2 ** int(np.log2(max(1, CHUNK_BYTES // max(1, spec.row_bytes)))))))


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


def stored_everywhere(arr):
    """The array set to store every chunk, also one of fill values, so that a missing chunk always
    means damage (the integrity checks rely on it)."""
    return arr.with_config({"write_empty_chunks": True})


# ---- paths and parts -------------------------------------------------------------------------


def part_path(cache: str | Path, index: int) -> Path:
    """The directory of part `index`."""
    return cache_path(cache) / "parts" / f"part-{index:05d}.zarr"


def part_dirs(cache: str | Path) -> list[Path]:
    """All part directories of a cache (parts/part-NNNNN.zarr), in order."""
    return sorted(p for p in (cache_path(cache) / "parts").glob("part-*.zarr") if PART_NAME.fullmatch(p.name))
