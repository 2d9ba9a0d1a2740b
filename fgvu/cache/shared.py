"""One read-only copy of a cache's arrays for several processes: the ablation workers.

Each worker that opens the cache itself holds its own copy of the feature arrays; with
`--jobs 2` that is twice the memory of one run. Instead, the parent writes the arrays that
the runs need once, as `.npy` files in a folder, and every worker maps them read-only
(`np.load(mmap_mode="r")`): the pages are the operating system's, shared by all workers.

The folder goes to /dev/shm when it has room (it lives in memory, so half of the memory
available is the limit), else under the output folder, where the page cache holds the pages
the runs touch and can drop them under pressure. `SharedCache` removes it on exit; a folder
left by a killed parent is removed by the next one (its name carries the parent's pid).

    with share_cache(cache, modalities={"v", "i"}, video_frames={16}, fallback=out) as shared:
        view = open_shared(shared.folder)      # in each worker: the same CacheView, mapped
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.cache.commit import iter_committed_parts
from fgvu.cache.layout import TABLES, ArraySpec, CacheError, layout_of
from fgvu.cache.location import cache_path, is_store
from fgvu.cache.reader import CacheView, assemble_view, open_cache
from fgvu.cache.spec import read_spec

MANIFEST = "manifest.json"
PREFIX = "fgvu-shared-"
SHM = Path("/dev/shm")
SHM_SHARE = 0.5  # at most this share of the available memory goes to /dev/shm


@dataclass
class SharedCache:
    """A folder of .npy arrays of one cache; removed when the `with` block ends."""

    folder: Path
    nbytes: int

    def __enter__(self) -> "SharedCache":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _file_of(name: str) -> str:
    return name.replace("/", "__") + ".npy"


def _array_bytes(cache: Path, layout) -> int:
    """Bytes of the selected arrays over every committed row (strings counted as 64 bytes each)."""
    totals = {t: 0 for t in TABLES}
    for part in iter_committed_parts(cache):
        for t in TABLES:
            totals[t] += part.rows[t]
    total = 0
    for a in layout:
        itemsize = 64 if a.dtype == "str" else np.dtype(a.dtype).itemsize
        total += totals[a.table] * int(np.prod(a.row_shape, dtype=np.int64)) * itemsize
    return total


def _memory_available() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 where it cannot be read)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def choose_base(nbytes: int, fallback: Path) -> Path:
    """/dev/shm when it and the memory have room for `nbytes`, else `fallback` (on disk)."""
    if SHM.is_dir() and os.access(SHM, os.W_OK):
        room = min(shutil.disk_usage(SHM).free, SHM_SHARE * _memory_available())
        if nbytes <= room:
            return SHM
    return Path(fallback)


def _remove_stale(base: Path) -> None:
    """Shared folders whose parent process is gone (killed before it could clean up)."""
    for folder in base.glob(PREFIX + "*"):
        try:
            pid = int(folder.name[len(PREFIX):].split("-")[0])
        except ValueError:
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # another user's live process
            pass


def share_cache(cache: str | Path, modalities, video_frames, fallback: str | Path) -> SharedCache:
    """Write the arrays of `modalities` (letters) and clip lengths `video_frames` of `cache` once.

    Returns the folder (use it as a context manager to remove it). The arrays are filled part
    by part straight into the mapped files, so the parent never holds them in memory.
    """
    cache = cache_path(cache)
    layout = layout_of(read_spec(cache)).select(set(modalities), set(video_frames))
    nbytes = _array_bytes(cache, layout)
    base = choose_base(nbytes, Path(fallback))
    base.mkdir(parents=True, exist_ok=True)
    _remove_stale(base)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
    shared = SharedCache(folder, nbytes)
    try:
        raw: dict[str, np.ndarray] = {}

        def allocate(a: ArraySpec, shape: tuple[int, ...]) -> np.ndarray:
            if a.dtype == "str":  # strings are saved after reading (a .npy of fixed-width unicode)
                raw[a.name] = np.zeros(shape, dtype=object)
            else:
                raw[a.name] = np.lib.format.open_memmap(folder / _file_of(a.name), mode="w+", dtype=a.dtype,
                                                        shape=shape)
            return raw[a.name]

        view = open_cache(cache, modalities=set(modalities), video_frames=set(video_frames), allocate=allocate)
        for a in layout:
            if a.dtype == "str":
                np.save(folder / _file_of(a.name), raw[a.name].astype(str), allow_pickle=False)
            else:
                raw[a.name].flush()
        manifest = {"cache": str(cache if is_store(cache) else cache.resolve()), "modalities": sorted(modalities),
                    "video_frames": sorted(int(t) for t in video_frames), "arrays": layout.names(),
                    "failures": view.failures, "nbytes": nbytes}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    except BaseException:
        shared.remove()
        raise
    return shared


def open_shared(folder: str | Path) -> CacheView:
    """The CacheView of a shared folder, its feature arrays mapped read-only (no copy)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CacheError(f"shared cache {folder}: {MANIFEST} is missing or unreadable ({e})") from None
    cache = cache_path(manifest["cache"])
    spec = read_spec(cache)
    layout = layout_of(spec).select(set(manifest["modalities"]), set(manifest["video_frames"]))
    if layout.names() != manifest["arrays"]:
        raise CacheError(f"shared cache {folder}: its arrays no longer match cache {cache}")
    arrays = {a.name: np.load(folder / _file_of(a.name), mmap_mode=None if a.dtype == "str" else "r",
                              allow_pickle=False) for a in layout}
    return assemble_view(cache, spec, layout, arrays, manifest["failures"], None)
