"""`cache_info`: counts, setup and part status of a finished (or growing) cache, without loading features.

It reads only committed rows, so it is safe to run while an extraction is still writing.
(`verify_cache` lives in `fgvu.cache.verify`, the HDF5 export in `fgvu.cache.export`.)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from fgvu.cache.commit import iter_committed_parts
from fgvu.cache.integrity import part_findings, status_lines
from fgvu.cache.location import cache_path, is_store
from fgvu.cache.reader import video_column
from fgvu.cache.spec import read_spec
from fgvu.cache.storage import format_bytes
from fgvu.modalities import GRIDS, MODALITIES


def disk_size(path: str | Path) -> int:
    """Bytes of every file (or object of a store) under `path`."""
    path = cache_path(path)
    if is_store(path):
        return sum(path.files().values())
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cache_info(cache: str | Path) -> dict:
    """Counts and setup of a cache, without loading its features."""
    cache = cache_path(cache)
    spec = read_spec(cache)
    splits: Counter = Counter()
    totals: Counter = Counter()
    failures = []
    missing = []  # frames without an image, per video
    labelled = 0  # frames with every target valid; 0 for a cache extracted without labels
    masked = {m for m in MODALITIES.values() if m.masked and m.name in spec.dims}
    valid_rows: Counter = Counter()
    parts = list(iter_committed_parts(cache))
    for part in parts:
        totals.update(part.rows)
        failures += [{**f, "part": part.name} for f in part.failures]
        if part.n_videos:
            splits.update(video_column(part, "split").tolist())
            group = part.group()
            if "videos/missing_frames" in group:  # absent from parts written by fgvu 0.1
                missing += video_column(part, "missing_frames").tolist()
            labelled += int(np.asarray(group["targets/mask"][: part.rows["frames"]]).all(axis=1).sum())
            for m in masked:  # bool rows: cheap to count
                valid_rows[m.name] += int(np.count_nonzero(group[m.mask][: part.rows[m.on_grid.table]]))
    findings = part_findings(cache, spec, parts)
    return {
        "path": str(cache),
        "dataset": spec.dataset,
        "task": spec.task,
        "parts": len(parts),
        "partition": spec.parts,
        "part_status": status_lines(spec, parts),
        "incomplete": findings.incomplete,
        "problems": findings.problems,
        "notes": findings.notes,
        "videos": totals["videos"],
        "videos_per_split": dict(sorted(splits.items())),
        "windows": totals["windows"],
        "frames": totals["frames"],
        "missing_frames": int(sum(missing)),
        "videos_with_missing_frames": sum(1 for m in missing if m > 0),
        "labelled_frames": labelled,
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
    partition = f"split into {info['partition']} part(s)" if info["partition"] else "partition not recorded"
    lines = [
        f"cache {info['path']}: dataset {info['dataset']} (task {info['task']}), {info['parts']} part(s), "
        f"{partition}, {format_bytes(info['bytes'])} on disk",
        f"videos: {info['videos']} ({splits})",
        f"windows: {info['windows']}   frames: {info['frames']}   image rows: {info['image_rows']}   "
        f"caption rows: {info['caption_rows']}",
        f"frames without an image (no face crop; masked): {info['missing_frames']} in "
        f"{info['videos_with_missing_frames']} videos",
        f"labelled frames: {info['labelled_frames']}" if info["labelled_frames"] or not info["frames"]
        else "labels: none (every target is masked; `fgvu predict` works, `fgvu fit` and `evaluate` need labels)",
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
    lines.append("parts:" + ("" if info["part_status"] else " none"))
    lines += [f"  {line}" for line in info["part_status"]]
    if info["incomplete"]:
        lines.append(f"incomplete: {len(info['incomplete'])} part(s) missing or unfinished")
    lines += [f"  {line}" for line in info["incomplete"]]
    lines += [f"problem: {line}" for line in info["problems"]]
    lines += [f"note: {line}" for line in info["notes"]]
    lines.append(f"failures: {len(info['failures'])}")
    lines += [f"  {f['video']} ({f['part']}): {f['reason']}" for f in info["failures"]]
    return lines
