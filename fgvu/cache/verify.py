"""`verify_cache`: check every committed row of a cache and list every problem found.

Reads only committed rows (those `commit.json` counts), so it is safe to run while an
extraction is still writing. Besides the checks every reader makes (`fgvu.cache.integrity`:
stamps, partition and completeness, arrays, stored shards, checksums, target ranges,
duplicates), it checks that features are finite, that window, grid and frame indices are in
range and inside their own video and show the planned frames, that video offsets are
consistent, and that captions.jsonl matches the caption rows. `fast=True` skips reading the
feature arrays (their checksums and the NaN scan), for huge caches. Every array comes from the
layout, so new modalities are checked without an edit here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.cache.commit import CommittedPart, empty_commit, read_commit
from fgvu.cache.integrity import (
    checksum_lines, checksum_problems, duplicate_problems, part_arrays, part_findings, read_checked, status_lines,
    target_problems,
)
from fgvu.cache.layout import CacheError, layout_of, part_dirs
from fgvu.cache.location import cache_path
from fgvu.cache.spec import read_spec
from fgvu.cache.storage import read_lines
from fgvu.cache.writer import CAPTIONS_FILE
from fgvu.modalities import GRIDS


@dataclass
class VerifyReport:
    """What `verify` found: problems (exit 1), notes on what could not be checked, one line per part."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)


def verify_cache(cache: str | Path, fast: bool = False) -> list[str]:
    """Every problem found in the committed rows of a cache; an empty list means it is sound."""
    return verify_report(cache, fast).problems


def verify_report(cache: str | Path, fast: bool = False) -> VerifyReport:
    """Check a cache (see the module docstring); a corrupt cache.json is a CacheError."""
    cache = cache_path(cache)
    spec = read_spec(cache)
    layout = layout_of(spec)
    report = VerifyReport()
    parts = []
    for path in part_dirs(cache):
        try:
            commit = read_commit(path)
        except CacheError as e:
            report.problems.append(str(e))
            continue
        rows = (commit or empty_commit())["rows"]
        parts.append(CommittedPart(path, rows, list((commit or {}).get("failures", [])), commit))
    findings = part_findings(cache, spec, parts)
    report.problems += findings.problems + findings.incomplete
    report.notes += findings.notes
    report.parts = status_lines(spec, parts)
    names_by_part = []
    for part in parts:
        if not part.n_videos or part.path in findings.foreign:
            continue
        part_problems: list[str] = []
        try:
            found = part_arrays(part, layout, part_problems, checksum_lines(part))
            if not part_problems:
                names = _verify_part(part, spec, layout, found, fast, part_problems)
                names_by_part.append((part, names))
        except CacheError as e:
            part_problems.append(str(e))
        report.problems += part_problems
    report.problems += duplicate_problems(names_by_part)
    return report


def _read_checked(part: CommittedPart, a, found, problems: list[str], on_block=None) -> np.ndarray | None:
    """All committed rows of one array with their checksums checked (None when unreadable)."""
    blocks = []

    def keep(lo: int, block: np.ndarray) -> None:
        if on_block is None:
            blocks.append(block)
        else:
            on_block(lo, block)

    try:
        bad = read_checked(part, a, found.arrays[a.name], found.ranges[a.name], keep)
    except CacheError as e:
        problems.append(str(e))
        return None
    problems += checksum_problems(part, a, found.arrays[a.name], bad)
    if on_block is not None:
        return None
    return np.concatenate(blocks) if blocks else np.zeros((0, *a.row_shape), dtype=str if a.dtype == "str" else a.dtype)


def _check_features(part: CommittedPart, layout, found, problems: list[str]) -> None:
    """Checksums and finiteness of the feature arrays, block by block."""
    for a in layout:
        if a.modality is None:
            continue
        nonfinite = [0, None]  # rows with NaN/Inf, the first one

        def scan(lo: int, block: np.ndarray) -> None:
            if not a.is_float:
                return
            bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if bad.any():
                nonfinite[0] += int(bad.sum())
                if nonfinite[1] is None:
                    nonfinite[1] = lo + int(np.flatnonzero(bad)[0])

        _read_checked(part, a, found, problems, on_block=scan)
        if nonfinite[0]:
            problems.append(f"{part.name}/{a.name}: {nonfinite[0]} rows with NaN/Inf (first row {nonfinite[1]})")


def _verify_part(part: CommittedPart, spec, layout, found, fast: bool, problems: list[str]) -> list[str]:
    """Append the part's problems; returns its committed video names."""
    plan = spec.sampling
    if not fast:
        _check_features(part, layout, found, problems)
    small = {}  # everything but the features (indices, offsets, targets), read whole
    for a in layout:
        if a.modality is not None or (a.optional and a.name not in found.arrays):
            continue
        value = _read_checked(part, a, found, problems)
        if value is None:
            return []
        small[a.name] = value
    names = small["videos/name"].tolist()
    problems += target_problems(spec, part, small["targets/values"], small["targets/mask"], small["videos/name"],
                                small["videos/frame_offset"].astype(np.int64))
    problems += _index_problems(part, plan, small)
    n_txt = part.rows[GRIDS["caption"].table]
    if n_txt and "text" in spec.dims:
        v = {k.split("/")[1]: small[k] for k in small if k.startswith("videos/")}
        problems += _verify_captions(part, small[GRIDS["caption"].frames], v, n_txt)
    return names


def _index_problems(part: CommittedPart, plan, small: dict) -> list[str]:
    """Offsets, window ids and starts, validity and grid indices against each other and the plan."""
    problems: list[str] = []
    rows = part.rows
    n_vid, n_win, n_frm = rows["videos"], rows["windows"], rows["frames"]
    v = {k.split("/")[1]: small[k] for k in small if k.startswith("videos/")}
    where = part.name

    # video offsets: non-decreasing, starting at 0, ending inside the tables
    for table, key in (("windows", "window_offset"), ("frames", "frame_offset"),
                       *((g.table, f"{g.table}_offset") for g in GRIDS.values())):
        off, total = v[key].astype(np.int64), rows[table]
        if off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] > total:
            problems.append(f"{where}: videos/{key} is not a non-decreasing run of rows in [0, {total}]")
    frame_off = v["frame_offset"].astype(np.int64)
    n_frames = v["n_frames"].astype(np.int64)
    if not np.array_equal(np.append(frame_off[1:], n_frm) - frame_off, n_frames):
        problems.append(f"{where}: videos/frame_offset does not step by each video's n_frames (total {n_frm})")
    if np.any(n_frames <= 0):
        problems.append(f"{where}: videos with n_frames <= 0")
    if "missing_frames" in v and np.any((v["missing_frames"] < 0) | (v["missing_frames"] > n_frames)):
        problems.append(f"{where}: videos/missing_frames outside [0, n_frames]")

    # windows: video ids, starts, validity mask
    vid = small["windows/video_id"].astype(np.int64)
    if np.any((vid < 0) | (vid >= n_vid)):
        problems.append(f"{where}: windows/video_id out of range [0, {n_vid})")
        return problems
    win_off = v["window_offset"].astype(np.int64)
    expected_vid = np.searchsorted(np.append(win_off[1:], n_win), np.arange(n_win), side="right")
    if not np.array_equal(vid, expected_vid):
        problems.append(f"{where}: windows/video_id disagrees with videos/window_offset")
    start = small["windows/start"].astype(np.int64)
    nf = n_frames[vid]
    if np.any((start < 0) | (start >= np.maximum(nf, 1))):
        problems.append(f"{where}: windows/start outside its video")
    if not np.array_equal(small["windows/valid"], (start[:, None] + np.arange(plan.window)[None, :]) < nf[:, None]):
        problems.append(f"{where}: windows/valid disagrees with window starts and video lengths")

    # grid indices: in range, inside the window's own video, showing the planned frames
    for grid in GRIDS.values():
        total, every = rows[grid.table], getattr(plan, grid.every)
        idx = small[grid.index].astype(np.int64)
        if np.any((idx < 0) | (idx >= total)):
            bad = np.flatnonzero(((idx < 0) | (idx >= total)).any(axis=1))
            problems.append(f"{where}: {grid.index} out of range [0, {total}) in {len(bad)} windows (first {int(bad[0])})")
            continue
        off = v[f"{grid.table}_offset"].astype(np.int64)
        end = np.append(off[1:], total)
        if np.any((idx < off[vid][:, None]) | (idx >= end[vid][:, None])):
            problems.append(f"{where}: {grid.index} points outside its window's video")
            continue
        planned = np.minimum(start[:, None] + every * np.arange(idx.shape[1])[None, :], nf[:, None] - 1)
        if not np.array_equal(small[grid.frames].astype(np.int64)[idx], planned):
            problems.append(f"{where}: {grid.index} rows do not show the frames of the sampling plan")
    return problems


def _verify_captions(part: CommittedPart, caption_frame: np.ndarray, v: dict, n_txt: int) -> list[str]:
    """captions.jsonl: one line per caption row, naming the row's video and frame."""
    path = part.path / CAPTIONS_FILE
    if not path.exists():
        return [f"{path} is missing ({n_txt} caption rows committed)"]
    lines = read_lines(path)
    if len(lines) < n_txt:
        return [f"{part.name}: {CAPTIONS_FILE} has {len(lines)} lines, {n_txt} caption rows committed"]
    text_off = v[f"{GRIDS['caption'].table}_offset"].astype(np.int64)
    owner = np.searchsorted(np.append(text_off[1:], n_txt), np.arange(n_txt), side="right")
    names = v["name"]
    for row, line in enumerate(lines[:n_txt]):
        try:
            entry = json.loads(line)
            ok = entry["video"] == names[owner[row]] and int(entry["frame"]) == int(caption_frame[row]) \
                and isinstance(entry["text"], str)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            return [f"{part.name}: {CAPTIONS_FILE} line {row + 1} does not match caption row {row}"]
    return []
