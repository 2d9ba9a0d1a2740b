"""The cache's file operations, in one place: opening parts and arrays, stored shards, reading
committed rows block by block, line files, free space, and turning OS errors into one line.

Everything that touches the file system or the Zarr store goes through the small functions
here, so a different store changes this module rather than code spread over the writer, reader
and verifier. A location is a `Path` or, on an fsspec store, a `StorePath`
(`fgvu.cache.location`); the functions below take either, and keep the local path's behaviour
(appends, truncation in place, fsync) unchanged. Damage found here (an unreadable `zarr.json`, a
shard that cannot be decoded) is a `CacheError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fgvu.cache.layout import ArraySpec, CacheError
from fgvu.cache.location import is_store
from fgvu.errors import StorageError

BLOCK_BYTES = 64 << 20  # committed rows are read in shard-aligned blocks of about this size


# ---- parts and arrays ------------------------------------------------------------------------


def open_part(part: Path, mode: str = "r"):
    """A part's Zarr group; a damaged part raises CacheError naming its zarr.json."""
    import zarr

    try:
        return zarr.open_group(zarr_store(part, mode == "r"), mode=mode, zarr_format=3)
    except Exception as e:  # zarr raises several types for a damaged group
        raise CacheError(f"part {part} is not a readable Zarr group ({part / 'zarr.json'}: "
                         f"{type(e).__name__}: {e})") from None


def zarr_store(part, read_only: bool = True):
    """What zarr opens for a part: the local folder itself, or an fsspec store over its URL."""
    return part.zarr_store(read_only) if is_store(part) else part


def open_array(group, part: Path, name: str):
    """Array `name` of an open part, or None when absent; a corrupt zarr.json is a CacheError naming it."""
    try:
        if name not in group:
            return None
        return group[name]
    except Exception as e:  # a garbage zarr.json surfaces as JSON, key or value errors inside zarr
        raise CacheError(f"{part / name / 'zarr.json'} is corrupt ({type(e).__name__}: {e})") from None


def stored_rows(part: Path) -> int:
    """Rows held by all arrays of a part, from their metadata (1 when a damaged one cannot be counted)."""
    import warnings

    import zarr

    try:
        group = zarr.open_group(zarr_store(part), mode="r", zarr_format=3)
        with warnings.catch_warnings():  # zarr warns about our own files (commit.json, captions.jsonl)
            warnings.simplefilter("ignore")
            members = list(group.members(max_depth=None))
        return sum(int(obj.shape[0]) for _, obj in members if isinstance(obj, zarr.Array))
    except FileNotFoundError:
        return 0
    except Exception:  # damaged metadata: rows that cannot even be counted
        return 1


def block_rows(arr) -> int:
    """Rows of one stored object (a shard, or a chunk when unsharded): the unit of reads and writes."""
    return int((arr.shards or arr.chunks)[0])


def shard_file(part: Path, name: str, arr, index: int) -> Path:
    """The file holding shard `index` (along rows) of array `name`."""
    key = arr.metadata.chunk_key_encoding.encode_chunk_key((index,) + (0,) * (arr.ndim - 1))
    return part / name / key


def missing_shards(part: Path, name: str, arr, n: int) -> list[int]:
    """Shards that rows [0, n) need but that are not stored (reading them would give fill values)."""
    rows = block_rows(arr)
    return [i for i in range(-(-n // rows)) if not shard_file(part, name, arr, i).exists()]


def iter_blocks(part: Path, name: str, arr, n: int, spec: ArraySpec) -> Iterator[tuple[int, np.ndarray]]:
    """Rows [0, n) as (first row, block) in shard-aligned blocks of about BLOCK_BYTES.

    A block that cannot be read is a CacheError naming the shard file it comes from.
    """
    rows = block_rows(arr)
    step = rows * max(1, BLOCK_BYTES // max(1, rows * spec.row_bytes))
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        try:
            block = read_rows(arr, lo, hi, spec)
        except Exception as e:  # a damaged chunk or shard: find which file
            bad = _first_unreadable(arr, lo, hi, rows, spec)
            raise CacheError(f"{shard_file(part, name, arr, bad)} is damaged: rows {bad * rows}..{min(n, (bad + 1) * rows) - 1} "
                             f"of {part.name}/{name} cannot be read ({type(e).__name__}: {e})") from None
        yield lo, block


def _first_unreadable(arr, lo: int, hi: int, rows: int, spec: ArraySpec) -> int:
    for start in range(lo, hi, rows):
        try:
            read_rows(arr, start, min(hi, start + rows), spec)
        except Exception:
            return start // rows
    return lo // rows


def read_rows(arr, lo: int, hi: int, spec: ArraySpec) -> np.ndarray:
    """Rows [lo, hi) of a Zarr array as numpy (strings as a str array)."""
    if hi <= lo:
        return np.zeros((0, *spec.row_shape), dtype=str if spec.dtype == "str" else spec.dtype)
    if spec.dtype == "str":  # zarr returns numpy StringDType
        return np.array(arr[lo:hi].tolist(), dtype=object).astype(str)
    return np.asarray(arr[lo:hi])


# ---- line files (captions.jsonl, checksums.jsonl) ----------------------------------------------


def read_lines(path: Path, n: int | None = None) -> list[str]:
    """The first `n` lines of a text file (all when None); an absent file has none."""
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise CacheError(f"{path} is corrupt (not UTF-8 text: {e})") from None
    return lines if n is None else lines[:n]


def truncate_lines(path: Path, n: int) -> None:
    """Cut a text file after its first `n` lines, in place (the bytes before the cut are never touched)."""
    if not path.exists():
        return
    data = path.read_bytes()
    end = 0
    for _ in range(n):
        nl = data.find(b"\n", end)
        if nl < 0:
            return  # fewer lines than committed: damage for the verifier, not something to cut
        end = nl + 1
    if end < len(data):
        if is_store(path):  # an object is replaced whole (one PUT); only its single writer does this
            path.write_bytes(data[:end])
        else:
            os.truncate(path, end)


def append_lines(path: Path, lines: list[str]) -> None:
    """Append lines to a text file (created when absent)."""
    if lines and is_store(path):  # objects cannot be appended to: rewrite it whole, in one PUT
        old = path.read_bytes() if path.exists() else b""
        path.write_bytes(old + "".join(line + "\n" for line in lines).encode("utf-8"))
    elif lines:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))


# ---- space, leftovers, OS errors ---------------------------------------------------------------


def free_bytes(path: Path) -> int:
    """Free bytes on the file system holding `path` (or its nearest existing parent); an object
    store has no such limit to check (reported as unlimited)."""
    if is_store(path):
        return 1 << 62
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def remove_partials(root: Path) -> None:
    """Delete the temporary files of writes that never finished (zarr's *.partial, our .*.tmp).

    An object store leaves none: each object is one PUT that either happened or did not.
    """
    if is_store(root):
        return
    for pattern in ("*.partial", ".*.tmp"):
        for leftover in Path(root).rglob(pattern):
            leftover.unlink(missing_ok=True)


def format_bytes(n: float) -> str:
    """'12.3 MiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} GiB"


@contextlib.contextmanager
def os_errors(path: Path, what: str, need_bytes: int = 0, cleanup=None) -> Iterator[None]:
    """Turn an OSError inside the block into one StorageError line naming `path` and the space needed.

    `cleanup` runs first (removing what the failed write left behind); its own errors are ignored,
    since the disk that just failed may refuse it too.
    """
    try:
        yield
    except OSError as e:
        if cleanup is not None:
            with contextlib.suppress(Exception):
                cleanup()
        where = e.filename if getattr(e, "filename", None) else path
        reason = os.strerror(e.errno) if e.errno else str(e)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise StorageError(
                f"{where}: {reason.lower()} while {what}: needs about {format_bytes(need_bytes)}, "
                f"{format_bytes(free_bytes(path))} free; free some space and re-run to resume") from None
        raise StorageError(f"{where}: {reason.lower()} while {what}; fix it and re-run to resume") from None
