"""`drop_duplicates`: keep one copy of every video committed in more than one part.

The copy kept is the first in part order (then row order), so the result does not depend on
how the duplicates came about. Every part that loses a video is rewritten without it: its
other videos are read back as `VideoRecord`s and appended by a `PartWriter` into a staging
directory (so they get fresh checksums and the part keeps its stamp, failures and finished
flag), which then replaces the part. The cache must otherwise verify clean, so damaged rows
are never copied under new checksums (rows of fgvu 0.1 parts, which have none, get their
first). Run it while no extraction writes to the cache; a
repair killed half-way is completed or rolled back by the next one.
"""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.cache.commit import CommittedPart, iter_committed_parts
from fgvu.cache.layout import OFFSET_COLUMNS, CacheError, Layout, layout_of, part_path
from fgvu.cache.location import cache_path, is_store
from fgvu.cache.reader import part_captions, video_column
from fgvu.cache.record import VideoRecord
from fgvu.cache.spec import read_spec
from fgvu.cache.storage import open_array, read_rows
from fgvu.cache.verify import verify_report
from fgvu.cache.ownership import LOCK_FILE
from fgvu.cache.writer import PartWriter
from fgvu.modalities import GRIDS

STAGING = ".repair"
_FIXED = {"window_start", "valid", "targets", "target_mask"}


@dataclass
class Dropped:
    """One removed copy: the video, the part it was removed from, and the part that keeps it."""

    video: str
    part: str
    kept_in: str


def drop_duplicates(cache: str | Path, progress: bool = False) -> list[Dropped]:
    """Remove every copy of a video but the first; returns what was removed (empty: nothing to do)."""
    cache = cache_path(cache)
    if is_store(cache):  # it swaps part folders by renaming them, which an object store cannot do
        raise CacheError(f"cache {cache}: repair works on a local copy only; copy the cache to a disk, repair it, "
                         "and copy it back")
    _finish_interrupted(cache)
    report = verify_report(cache)
    others = [p for p in report.problems if "is committed in both" not in p]
    if others:
        raise CacheError(f"cache {cache}: repair only removes duplicate videos, and the cache has other problems "
                         f"({others[0]}); run `fgvu cache verify` and re-extract the damaged parts first")
    spec = read_spec(cache)
    first: dict[str, str] = {}
    dropped: list[Dropped] = []
    plan: list[tuple[CommittedPart, set[int]]] = []
    for part in iter_committed_parts(cache):
        if not part.n_videos:
            continue
        rows = set()
        for row, name in enumerate(video_column(part, "name").tolist()):
            if name in first:
                rows.add(row)
                dropped.append(Dropped(name, part.name, first[name]))
            else:
                first[name] = part.name
        if rows:
            plan.append((part, rows))
    for part, rows in plan:
        _rewrite_without(cache, spec, part, rows, progress)
    return dropped


def _rewrite_without(cache: Path, spec, part: CommittedPart, drop: set[int], progress: bool) -> None:
    """Replace `part` by a copy without the video rows in `drop`."""
    from tqdm import tqdm

    staging = cache / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    with open(part.path / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheError(f"cache {cache}: {part.name} is being written by another process; repair when "
                             "the extraction has stopped") from None
        layout = layout_of(spec)
        writer = PartWriter(staging, spec, part.index, parts=spec.parts)
        with writer:
            keep = [row for row in range(part.n_videos) if row not in drop]
            for rec in tqdm(part_records(cache, part, layout, keep), total=len(keep), unit="video",
                            desc=f"repair {part.name}", disable=not progress):
                writer.append_video(rec)
            for failure in part.failures:
                writer.record_failure(failure["video"], failure["reason"])
            if part.finished:
                writer.mark_finished()
        old = part.path.with_name(f".old-{part.name}")
        part.path.rename(old)
        part_path(staging, part.index).rename(part.path)
    shutil.rmtree(old)
    shutil.rmtree(staging)


def _finish_interrupted(cache: Path) -> None:
    """Complete or roll back a repair that was killed between its two renames."""
    for old in (cache / "parts").glob(".old-part-*.zarr"):
        target = old.with_name(old.name[len(".old-"):])
        if target.exists():
            shutil.rmtree(old)  # the new part is in place
        else:
            old.rename(target)  # killed between the renames: put the original back
    shutil.rmtree(cache / STAGING, ignore_errors=True)


def part_records(cache: Path, part: CommittedPart, layout: Layout, rows: list[int]) -> Iterator[VideoRecord]:
    """The part's videos at `rows` as records with video-local indices, as they were appended."""
    group = part.group()
    arrays = {a.name: open_array(group, part.path, a.name) for a in layout}
    column = {a.key: read_rows(arrays[a.name], 0, part.n_videos, a) for a in layout if a.table == "videos"}
    captions = [c["text"] for c in part_captions(cache, part)]
    if len(captions) != part.rows[GRIDS["caption"].table]:
        captions = None  # a cache that keeps no captions
    ends = {t: np.append(column[col][1:], part.rows[t]).astype(np.int64) for t, col in OFFSET_COLUMNS.items()}
    for row in rows:
        span = {t: (int(column[col][row]), int(ends[t][row])) for t, col in OFFSET_COLUMNS.items()}
        span["videos"] = (row, row + 1)
        fields: dict = {}
        streams: dict = {}
        for a in layout:
            if a.table == "videos" or a.key == "window_video":
                continue
            lo, hi = span[a.table]
            value = read_rows(arrays[a.name], lo, hi, a)
            if a.offset_table is not None:  # back to rows of this video
                value = value - span[a.offset_table][0]
            if a.key in _FIXED:
                fields[a.key] = value
            elif a.clip_length is not None:
                streams.setdefault(a.key, {})[a.clip_length] = value
            else:
                streams[a.key] = value
        lo, hi = span[GRIDS["caption"].table]
        yield VideoRecord(
            name=str(column["name"][row]), split=str(column["split"][row]), n_frames=int(column["n_frames"][row]),
            fps=float(column["fps"][row]), width=int(column["width"][row]), height=int(column["height"][row]),
            captions=None if captions is None else captions[lo:hi], **fields, **streams)


def repair_lines(dropped: list[Dropped]) -> list[str]:
    """What a repair did, one line per removed copy."""
    if not dropped:
        return ["no video is committed twice: nothing to repair"]
    return [f"removed {d.video!r} from {d.part} (kept in {d.kept_in})" for d in dropped]
