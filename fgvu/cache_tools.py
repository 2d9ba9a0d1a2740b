"""Tools over a finished (or growing) cache: summary, integrity check, HDF5 export, captions.

Every tool reads only committed rows (those `commit.json` counts), so it is safe to run while
an extraction is still writing.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from fgvu.cache_schema import (
    CacheError, array_specs, open_cache, open_part, part_dirs, read_commit, read_spec, table_of,
)

FLOAT_ARRAYS_PREFIXES = ("frames/image", "frames/text", "clips/", "targets/values")
BLOCK_ROWS = 1 << 14  # rows read at a time when scanning large arrays


def committed_rows(part: Path) -> dict[str, int]:
    """Committed row counts of one part, per table."""
    return read_commit(Path(part))["rows"]


def read_captions(cache: str | Path) -> dict[tuple[str, int], str]:
    """{(video, frame): caption} of every committed caption row of every part."""
    table: dict[tuple[str, int], str] = {}
    for part in part_dirs(cache):
        n = committed_rows(part)["text"]
        path = part / "captions.jsonl"
        if not n:
            continue
        if not path.exists():
            raise CacheError(f"cache {cache}: {part.name} commits {n} captions but has no captions.jsonl")
        lines = path.read_text().splitlines()[:n]
        for line in lines:
            row = json.loads(line)
            table[(row["video"], int(row["frame"]))] = row["text"]
    return table


def disk_size(path: str | Path) -> int:
    """Bytes of every file under `path`."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


# ---- info ----------------------------------------------------------------------------------


def cache_info(cache: str | Path) -> dict:
    """Counts and setup of a cache, without loading its features."""
    cache = Path(cache)
    spec = read_spec(cache)
    splits: Counter = Counter()
    totals = Counter()
    failures = []
    parts = part_dirs(cache)
    for part in parts:
        commit = read_commit(part)
        rows = commit["rows"]
        totals.update(rows)
        failures += [{**f, "part": part.name} for f in commit["failures"]]
        if rows["videos"]:
            group = open_part(part)
            splits.update(group["videos/split"][: rows["videos"]].tolist())
    return {
        "path": str(cache),
        "dataset": spec.dataset,
        "task": spec.task,
        "parts": len(parts),
        "videos": totals["videos"],
        "videos_per_split": dict(sorted(splits.items())),
        "windows": totals["windows"],
        "frames": totals["frames"],
        "image_rows": totals["image"],
        "caption_rows": totals["text"],
        "dims": dict(spec.dims),
        "video_frames": list(spec.sampling.video_frames),
        "sampling": spec.sampling.to_dict(),
        "encoders": spec.encoders,
        "caption_prompt": spec.caption_prompt,
        "failures": failures,
        "bytes": disk_size(cache),
    }


def info_lines(info: dict) -> list[str]:
    """`cache_info` as human-readable lines."""
    splits = ", ".join(f"{k} {v}" for k, v in info["videos_per_split"].items()) or "none"
    lines = [
        f"cache {info['path']}: dataset {info['dataset']} (task {info['task']}), {info['parts']} part(s), "
        f"{_fmt_bytes(info['bytes'])} on disk",
        f"videos: {info['videos']} ({splits})",
        f"windows: {info['windows']}   frames: {info['frames']}   image rows: {info['image_rows']}   "
        f"caption rows: {info['caption_rows']}",
        "dims: " + ", ".join(f"{k} {v}" for k, v in info["dims"].items())
        + f"   video clips: T = {', '.join(map(str, info['video_frames']))}",
        "sampling: " + ", ".join(f"{k}={v}" for k, v in info["sampling"].items()),
        "encoders:",
    ]
    for role, fp in info["encoders"].items():
        lines.append(f"  {role}: {fp.get('name')} ({fp.get('variant')}, {str(fp.get('checkpoint', ''))[:24]})")
    if info["caption_prompt"]:
        lines.append(f"caption prompt: {info['caption_prompt']!r}")
    lines.append(f"failures: {len(info['failures'])}")
    lines += [f"  {f['video']} ({f['part']}): {f['reason']}" for f in info["failures"]]
    return lines


# ---- verify --------------------------------------------------------------------------------


def verify_cache(cache: str | Path) -> list[str]:
    """Every problem found in the committed rows of a cache; an empty list means it is sound.

    Checks: every array present with the committed rows and the right row shape; features and
    targets finite; window, image, caption and frame indices in range and inside their own
    video; the windows' grid rows showing the frames the sampling plan says; video offsets
    consistent; captions.jsonl matching the caption rows; no video committed twice.
    """
    cache = Path(cache)
    spec = read_spec(cache)
    expected = array_specs(spec)
    problems: list[str] = []
    seen: dict[str, str] = {}
    for part in part_dirs(cache):
        try:
            rows = committed_rows(part)
        except CacheError as e:
            problems.append(str(e))
            continue
        if not rows["videos"]:
            continue
        try:
            group = open_part(part)
        except CacheError as e:
            problems.append(str(e))
            continue
        arrays, part_problems = {}, []
        for name, (row_shape, _) in expected.items():
            n = rows[table_of(name)]
            if name not in group:
                part_problems.append(f"{part.name}: array {name} is missing")
                continue
            arr = group[name]
            if tuple(arr.shape[1:]) != row_shape:
                part_problems.append(f"{part.name}/{name}: rows of shape {arr.shape[1:]}, expected {row_shape}")
            elif arr.shape[0] < n:
                part_problems.append(f"{part.name}/{name}: {arr.shape[0]} rows but {n} committed")
            else:
                arrays[name] = arr
        problems += part_problems
        if part_problems:
            continue
        problems += _verify_part(part, spec, rows, arrays)
        for name in arrays["videos/name"][: rows["videos"]].tolist():
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


def _verify_part(part: Path, spec, rows: dict[str, int], arrays: dict) -> list[str]:
    plan = spec.sampling
    problems: list[str] = []
    # finiteness of the big float arrays, block by block
    for name, arr in arrays.items():
        if not name.startswith(FLOAT_ARRAYS_PREFIXES):
            continue
        n = rows[table_of(name)]
        for lo in range(0, n, BLOCK_ROWS):
            try:
                block = np.asarray(arr[lo: min(n, lo + BLOCK_ROWS)])
            except Exception as e:
                problems.append(f"{part.name}/{name}: rows {lo}.. unreadable ({type(e).__name__}: {e})")
                break
            bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
            if bad.any():
                problems.append(f"{part.name}/{name}: {int(bad.sum())} rows with NaN/Inf (first row {lo + int(np.flatnonzero(bad)[0])})")
    small = {}  # the index tables, read whole
    for name in [n for n in arrays if n.startswith(("windows/", "videos/")) or n.endswith("_frame")]:
        value = _read_all(arrays[name], rows[table_of(name)], f"{part.name}/{name}", problems)
        if value is None:
            return problems
        small[name] = value
    n_vid, n_img, n_txt, n_win, n_frm = (rows[t] for t in ("videos", "image", "text", "windows", "frames"))
    v = {k.split("/")[1]: small[k] for k in small if k.startswith("videos/")}
    where = part.name

    # video offsets: non-decreasing, starting at 0, ending inside the tables
    for key, total in (("image_offset", n_img), ("text_offset", n_txt), ("window_offset", n_win), ("frame_offset", n_frm)):
        off = v[key].astype(np.int64)
        if off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] > total:
            problems.append(f"{where}: videos/{key} is not a non-decreasing run of rows in [0, {total}]")
    frame_off = v["frame_offset"].astype(np.int64)
    n_frames = v["n_frames"].astype(np.int64)
    if not np.array_equal(np.append(frame_off[1:], n_frm) - frame_off, n_frames):
        problems.append(f"{where}: videos/frame_offset does not step by each video's n_frames (total {n_frm})")
    if np.any(n_frames <= 0):
        problems.append(f"{where}: videos with n_frames <= 0")

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
    for index_name, frame_name, off_key, total, every in (
        ("windows/image_index", "frames/image_frame", "image_offset", n_img, plan.image_every),
        ("windows/caption_index", "frames/caption_frame", "text_offset", n_txt, plan.caption_every),
    ):
        idx = small[index_name].astype(np.int64)
        if np.any((idx < 0) | (idx >= total)):
            bad = np.flatnonzero(((idx < 0) | (idx >= total)).any(axis=1))
            problems.append(f"{where}: {index_name} out of range [0, {total}) in {len(bad)} windows (first {int(bad[0])})")
            continue
        off = v[off_key].astype(np.int64)
        end = np.append(off[1:], total)
        if np.any((idx < off[vid][:, None]) | (idx >= end[vid][:, None])):
            problems.append(f"{where}: {index_name} points outside its window's video")
            continue
        planned = np.minimum(start[:, None] + every * np.arange(idx.shape[1])[None, :], nf[:, None] - 1)
        if not np.array_equal(small[frame_name].astype(np.int64)[idx], planned):
            problems.append(f"{where}: {index_name} rows do not show the frames of the sampling plan")

    # captions.jsonl: one line per text row, naming the row's video and frame
    if n_txt:
        problems += _verify_captions(part, small["frames/caption_frame"], v, n_txt)
    return problems


def _verify_captions(part: Path, caption_frame: np.ndarray, v: dict, n_txt: int) -> list[str]:
    path = part / "captions.jsonl"
    if not path.exists():
        return [f"{part.name}: captions.jsonl is missing ({n_txt} caption rows committed)"]
    lines = path.read_text().splitlines()
    if len(lines) < n_txt:
        return [f"{part.name}: captions.jsonl has {len(lines)} lines, {n_txt} caption rows committed"]
    text_off = v["text_offset"].astype(np.int64)
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
            return [f"{part.name}: captions.jsonl line {row + 1} does not match caption row {row}"]
    return []


# ---- export --------------------------------------------------------------------------------


def export_h5(cache: str | Path, out: str | Path) -> Path:
    """Write every committed array of the cache, with cache-global indices, into one HDF5 file.

    Datasets keep the cache's array names (`frames/image`, `clips/video_f16`, `windows/...`,
    `targets/...`, `videos/...`); `captions/{video,frame,text}` hold the captions; the root
    attribute `cache.json` holds the spec and `failures` the failure list (both JSON).
    """
    import h5py

    from fgvu.cache_schema import clip_array

    view = open_cache(cache, load_captions=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = h5py.string_dtype("utf-8")
    arrays = {
        "windows/video_id": view.window_video.astype(np.int32),
        "windows/start": view.window_start.astype(np.int32),
        "windows/image_index": view.image_index.astype(np.int32),
        "windows/caption_index": view.caption_index.astype(np.int32),
        "windows/valid": view.valid,
        "targets/values": view.targets,
        "targets/mask": view.target_mask,
        "frames/image_frame": view.image_frame.astype(np.int32),
        "frames/caption_frame": view.caption_frame.astype(np.int32),
    }
    if view.image is not None:
        arrays["frames/image"] = view.image
    if view.text is not None:
        arrays["frames/text"] = view.text
    for t, clips in view.video.items():
        arrays[clip_array(t)] = clips
    tmp = out.with_suffix(out.suffix + ".partial")
    with h5py.File(tmp, "w") as f:
        for name, value in arrays.items():
            f.create_dataset(name, data=value)
        for key in ("name", "split"):
            f.create_dataset(f"videos/{key}", data=np.asarray(getattr(view.videos, key), dtype=object), dtype=text)
        for key in ("n_frames", "image_offset", "text_offset", "window_offset", "frame_offset"):
            f.create_dataset(f"videos/{key}", data=np.asarray(getattr(view.videos, key), dtype=np.int64))
        f.create_dataset("videos/fps", data=np.asarray(view.videos.fps, dtype=np.float64))
        for key in ("width", "height"):
            f.create_dataset(f"videos/{key}", data=np.asarray(getattr(view.videos, key), dtype=np.int32))
        captions = view.captions or []
        f.create_dataset("captions/video", data=np.asarray([c["video"] for c in captions], dtype=object), dtype=text)
        f.create_dataset("captions/frame", data=np.asarray([c["frame"] for c in captions], dtype=np.int32))
        f.create_dataset("captions/text", data=np.asarray([c["text"] for c in captions], dtype=object), dtype=text)
        f.attrs["cache.json"] = json.dumps(view.spec.to_dict())
        f.attrs["failures"] = json.dumps(view.failures)
    tmp.replace(out)
    return out
