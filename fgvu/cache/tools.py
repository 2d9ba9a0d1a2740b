"""Operator tools over a finished (or growing) cache: `cache_info` and the HDF5 export.

Both read only committed rows, so they are safe to run while an extraction is still writing.
(`verify_cache` lives in `fgvu.cache.verify`.)
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from fgvu.cache.layout import iter_committed_parts, layout_of
from fgvu.cache.reader import open_cache
from fgvu.cache.spec import read_spec
from fgvu.modalities import GRIDS, MODALITIES


def disk_size(path: str | Path) -> int:
    """Bytes of every file under `path`."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def format_bytes(n: float) -> str:
    """'12.3 MiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


def cache_info(cache: str | Path) -> dict:
    """Counts and setup of a cache, without loading its features."""
    cache = Path(cache)
    spec = read_spec(cache)
    splits: Counter = Counter()
    totals: Counter = Counter()
    failures = []
    masked = {m for m in MODALITIES.values() if m.masked and m.name in spec.dims}
    valid_rows: Counter = Counter()
    parts = list(iter_committed_parts(cache))
    for part in parts:
        totals.update(part.rows)
        failures += [{**f, "part": part.name} for f in part.failures]
        if part.n_videos:
            group = part.group()
            splits.update(group["videos/split"][: part.n_videos].tolist())
            for m in masked:  # bool rows: cheap to count
                valid_rows[m.name] += int(np.count_nonzero(group[m.mask][: part.rows[m.on_grid.table]]))
    return {
        "path": str(cache),
        "dataset": spec.dataset,
        "task": spec.task,
        "parts": len(parts),
        "videos": totals["videos"],
        "videos_per_split": dict(sorted(splits.items())),
        "windows": totals["windows"],
        "frames": totals["frames"],
        "image_rows": totals[GRIDS["image"].table],
        "caption_rows": totals[GRIDS["caption"].table],
        "dims": dict(spec.dims),
        "modalities": [m.name for m in MODALITIES.values() if m.name in spec.dims],
        "missing_modalities": [m.name for m in MODALITIES.values() if m.name not in spec.dims],
        "valid_rows": {m.name: [valid_rows[m.name], totals[m.on_grid.table]] for m in masked},
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
        f"{format_bytes(info['bytes'])} on disk",
        f"videos: {info['videos']} ({splits})",
        f"windows: {info['windows']}   frames: {info['frames']}   image rows: {info['image_rows']}   "
        f"caption rows: {info['caption_rows']}",
        "dims: " + ", ".join(f"{k} {v}" for k, v in info["dims"].items())
        + f"   video clips: T = {', '.join(map(str, info['video_frames']))}",
        "streams: " + (", ".join(info["modalities"]) or "none")
        + (f"   not in this cache: {', '.join(info['missing_modalities'])}" if info["missing_modalities"] else ""),
        *(f"{name}: {valid} of {total} rows hold real input ({valid / total if total else 0:.0%}), the rest masked"
          for name, (valid, total) in info["valid_rows"].items()),
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


def export_h5(cache: str | Path, out: str | Path) -> Path:
    """Write every committed array of the cache, with cache-global indices, into one HDF5 file.

    Datasets keep the cache's array names (`frames/image`, `clips/video_f16`, `windows/...`,
    `targets/...`, `videos/...`); `captions/{video,frame,text}` hold the captions; the root
    attribute `cache.json` holds the spec and `failures` the failure list (both JSON).
    """
    import h5py

    view = open_cache(cache, load_captions=True)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = h5py.string_dtype("utf-8")
    fixed = {"window_video": view.window_video, "window_start": view.window_start, "valid": view.valid,
             "targets": view.targets, "target_mask": view.target_mask}
    tmp = out.with_suffix(out.suffix + ".partial")
    with h5py.File(tmp, "w") as f:
        for a in layout_of(view.spec):
            if a.table == "videos":
                value = getattr(view.videos, a.key)
            elif a.key in fixed:
                value = fixed[a.key]
            else:
                value = view.arrays[a.key]
                value = value[a.clip_length] if a.clip_length is not None else value
            if a.dtype == "str":
                f.create_dataset(a.name, data=np.asarray(value, dtype=object), dtype=text)
            else:
                f.create_dataset(a.name, data=np.asarray(value).astype(a.dtype, copy=False))
        captions = view.captions or []
        f.create_dataset("captions/video", data=np.asarray([c["video"] for c in captions], dtype=object), dtype=text)
        f.create_dataset("captions/frame", data=np.asarray([c["frame"] for c in captions], dtype=np.int32))
        f.create_dataset("captions/text", data=np.asarray([c["text"] for c in captions], dtype=object), dtype=text)
        f.attrs["cache.json"] = json.dumps(view.spec.to_dict())
        f.attrs["failures"] = json.dumps(view.failures)
    tmp.replace(out)
    return out
