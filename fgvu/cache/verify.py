"""`verify_cache`: check every committed row of a cache and list every problem found.

Reads only committed rows (those `commit.json` counts), so it is safe to run while an
extraction is still writing. Every array comes from the layout, so new modalities are checked
without an edit here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fgvu.cache.layout import CacheError, CommittedPart, Layout, iter_committed_parts, layout_of
from fgvu.cache.spec import read_spec
from fgvu.cache.writer import CAPTIONS_FILE
from fgvu.modalities import GRIDS

BLOCK_ROWS = 1 << 14  # rows read at a time when scanning large arrays


def verify_cache(cache: str | Path) -> list[str]:
    """Every problem found in the committed rows of a cache; an empty list means it is sound.

    Checks: every array present with the committed rows and the right row shape; features and
    targets finite; window, grid and frame indices in range and inside their own video; the
    windows' grid rows showing the frames the sampling plan says; video offsets consistent;
    captions.jsonl matching the caption rows; no video committed twice.
    """
    cache = Path(cache)
    spec = read_spec(cache)
    layout = layout_of(spec)
    problems: list[str] = []
    seen: dict[str, str] = {}
    try:
        parts = list(iter_committed_parts(cache))
    except CacheError as e:
        return [str(e)]
    for part in parts:
        if not part.n_videos:
            continue
        try:
            group = part.group()
        except CacheError as e:
            problems.append(str(e))
            continue
        arrays, part_problems = {}, []
        for a in layout:
            n = part.rows[a.table]
            if a.name not in group:
                if not a.optional:  # optional arrays are absent from parts older than them
                    part_problems.append(f"{part.name}: array {a.name} is missing")
                continue
            arr = group[a.name]
            if tuple(arr.shape[1:]) != a.row_shape:
                part_problems.append(f"{part.name}/{a.name}: rows of shape {arr.shape[1:]}, expected {a.row_shape}")
            elif arr.shape[0] < n:
                part_problems.append(f"{part.name}/{a.name}: {arr.shape[0]} rows but {n} committed")
            else:
                arrays[a.name] = arr
        problems += part_problems
        if part_problems:
            continue
        present = Layout(tuple(a for a in layout if a.name in arrays))
        problems += _verify_part(part, spec, present, arrays)
        for name in arrays["videos/name"][: part.n_videos].tolist():
            if name in seen:
                problems.append(f"video {name!r} is committed in both {seen[name]} and {part.name}")
            seen[name] = part.name
    return problems


def _read_all(arr, n: int, where: str, problems: list[str]) -> np.ndarray | None:
    try:
        return np.asarray(arr[:n])
    except Exception as e:  # a damaged chunk or shard
        problems.append(f"{where}: committed rows unreadable ({type(e).__name__}: {e})")
        return None


def _check_finite(part: CommittedPart, layout, arrays: dict, problems: list[str]) -> None:
    """Finiteness of the float arrays, block by block."""
    for a in layout:
        if not a.is_float:
            continue
        arr, n = arrays[a.name], part.rows[a.table]
        for lo in range(0, n, BLOCK_ROWS):
            try:
                block = np.asarray(arr[lo: min(n, lo + BLOCK_ROWS)])
            except Exception as e:
                problems.append(f"{part.name}/{a.name}: rows {lo}.. unreadable ({type(e).__name__}: {e})")
                break
            bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if bad.any():
                problems.append(f"{part.name}/{a.name}: {int(bad.sum())} rows with NaN/Inf "
                                f"(first row {lo + int(np.flatnonzero(bad)[0])})")


def _verify_part(part: CommittedPart, spec, layout, arrays: dict) -> list[str]:
    plan = spec.sampling
    problems: list[str] = []
    _check_finite(part, layout, arrays, problems)
    small = {}  # the index tables, read whole
    for a in layout:
        if a.is_float or a.modality is not None:
            continue
        value = _read_all(arrays[a.name], part.rows[a.table], f"{part.name}/{a.name}", problems)
        if value is None:
            return problems
        small[a.name] = value
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

    n_txt = rows[GRIDS["caption"].table]
    if n_txt and "text" in spec.dims:
        problems += _verify_captions(part, small[GRIDS["caption"].frames], v, n_txt)
    return problems


def _verify_captions(part: CommittedPart, caption_frame: np.ndarray, v: dict, n_txt: int) -> list[str]:
    """captions.jsonl: one line per caption row, naming the row's video and frame."""
    path = part.path / CAPTIONS_FILE
    if not path.exists():
        return [f"{part.name}: {CAPTIONS_FILE} is missing ({n_txt} caption rows committed)"]
    lines = path.read_text().splitlines()
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
