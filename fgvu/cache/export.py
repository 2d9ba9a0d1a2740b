"""`export_h5`: every committed array of a cache, with cache-global indices, in one HDF5 file.

The export never leaves a half-written file and never takes the interpreter down:

- the free space is checked first against the size the file will have (its arrays are stored
  uncompressed), and a shortfall is one line naming the path and both sizes;
- the file is written by a child process into `OUT.partial`, then renamed over `OUT`. HDF5 can
  crash its process on a full disk (h5py has segfaulted on ENOSPC): the child's death is
  reported as one line, and the partial file removed.

    python -m fgvu.cache.export CACHE OUT.partial   (the child; not for direct use)
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from fgvu.cache.commit import iter_committed_parts
from fgvu.cache.layout import CacheError, layout_of
from fgvu.cache.location import cache_path
from fgvu.cache.spec import read_spec
from fgvu.cache.storage import StorageError, format_bytes, free_bytes, os_errors

ERROR_MARK = "fgvu-export-error: "  # how the child reports a failure it caught
OVERHEAD = 1.05  # HDF5 metadata and string heaps on top of the raw array bytes, plus slack


def export_size(cache: Path) -> int:
    """The bytes the HDF5 file will take, estimated from the committed rows (features uncompressed)."""
    spec = read_spec(cache)
    rows: dict[str, int] = {}
    caption_bytes = 0
    for part in iter_committed_parts(cache):
        for t, n in part.rows.items():
            rows[t] = rows.get(t, 0) + n
        captions = part.path / "captions.jsonl"
        caption_bytes += captions.stat().st_size if captions.exists() else 0
    raw = sum(rows.get(a.table, 0) * a.row_bytes for a in layout_of(spec)) + caption_bytes
    return int(raw * OVERHEAD) + (1 << 20)


def export_h5(cache: str | Path, out: str | Path) -> Path:
    """Write the cache into `out` (see the module docstring); problems are one-line CacheErrors."""
    cache, out = cache_path(cache), Path(out)
    need = export_size(cache)
    with os_errors(out.parent, "creating the export folder", need):
        out.parent.mkdir(parents=True, exist_ok=True)
    free = free_bytes(out.parent)
    if free < need:
        raise StorageError(f"{out}: not enough free space for the export: needs about {format_bytes(need)}, "
                           f"{format_bytes(free)} free")
    tmp = out.with_name(out.name + ".partial")
    try:
        _write_in_child(cache, tmp, need)
        with os_errors(out, "renaming the finished export", need):
            tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _write_in_child(cache: Path, tmp: Path, need: int) -> None:
    import fgvu

    root = str(Path(fgvu.__file__).resolve().parents[1])  # the child imports this very fgvu
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "fgvu.cache.export", str(cache), str(tmp)],
                          capture_output=True, text=True, env=env)
    if proc.returncode == 0:
        return
    tmp.unlink(missing_ok=True)
    said = [json.loads(line[len(ERROR_MARK):]) for line in proc.stderr.splitlines() if line.startswith(ERROR_MARK)]
    if said:
        if said[-1]["errno"] in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(f"{tmp.with_suffix('')}: no space left on device while exporting: needs about "
                               f"{format_bytes(need)}, {format_bytes(free_bytes(tmp.parent))} free")
        raise CacheError(said[-1]["message"])
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise StorageError(f"{tmp.with_suffix('')}: the HDF5 writer crashed ({name}) while exporting; needs about "
                           f"{format_bytes(need)}, {format_bytes(free_bytes(tmp.parent))} free")
    tail = proc.stderr.strip().splitlines()[-1:] or ["no message"]
    raise CacheError(f"{tmp.with_suffix('')}: the export failed ({tail[0]})")


def write_h5(cache: str | Path, out: str | Path) -> None:
    """Datasets keep the cache's array names (`frames/image`, `clips/video_f16`, `windows/...`,
    `targets/...`, `videos/...`); `captions/{video,frame,text}` hold the captions; the root
    attribute `cache.json` holds the spec and `failures` the failure list (both JSON)."""
    import h5py

    from fgvu.cache.reader import open_cache

    view = open_cache(cache, load_captions=True)
    text = h5py.string_dtype("utf-8")
    fixed = {"window_video": view.window_video, "window_start": view.window_start, "valid": view.valid,
             "targets": view.targets, "target_mask": view.target_mask}
    with h5py.File(out, "w") as f:
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


def _child_main(argv: list[str]) -> int:
    from fgvu.errors import FgvuError

    cache, out = argv
    try:
        write_h5(cache, out)
    except (FgvuError, OSError) as e:  # one line for the parent: h5py's messages span several
        report = {"message": " ".join(str(e).split()), "errno": getattr(e, "errno", None)}
        print(ERROR_MARK + json.dumps(report), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
