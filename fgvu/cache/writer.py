"""`PartWriter`: the single writer of one part. Appends whole videos and commits them.

- **One writer.** It holds the part for its lifetime (`fgvu.cache.ownership`): an exclusive
  flock on a local disk (released by the kernel even on kill -9), a lease taken with a
  conditional PUT on an object store (checked before every commit). Opening truncates rows past the last commit, so a re-run after a crash
  resumes cleanly.
- **Whole-shard writes.** Appended videos are buffered in memory and written in blocks, so
  a partly filled shard is not rewritten for every video (Zarr rewrites a whole shard to
  change part of it). A flush happens when the bytes it would rewrite are small next to the
  bytes it adds (at most `REWRITE_RATIO` of them, or `REWRITE_FLOOR`), or when the buffer
  holds `buffer_bytes`; so each byte is written about once. `buffer_bytes=0` writes video
  by video.
- **Exactly once.** A flush writes the rows, then the captions and checksum lines, then
  commit.json (atomically), which covers only whole videos. A buffered video that was not
  flushed before a crash is simply extracted again by the next run.
- **Integrity.** Each committed video gets a line in checksums.jsonl (`fgvu.cache.checksums`);
  commit.json carries the stamp of the cache.json spec (`CacheSpec.stamp`), the part's place in
  the partition and whether its video list is finished (`mark_finished`). Chunks are written
  even when they hold only fill values, so a missing chunk always means damage.
- **Clean failures.** An OS error while writing (a full disk) removes the temporary files,
  rolls the arrays back to the last commit and raises one `StorageError` line naming the path
  and the space needed; a re-run resumes.

Every array comes from the layout (`fgvu.cache.layout.layout_of`), so the writer knows no
modality by name. File operations go through `fgvu.cache.storage`.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from fgvu.cache.location import cache_path
from fgvu.cache.ownership import LEASE_SECONDS, acquire_part
from fgvu.cache.checksums import CHECKSUMS_FILE, digest, video_line
from fgvu.cache.commit import CHECKSUM_ALGORITHM, read_commit, write_commit
from fgvu.cache.layout import (
    TABLES, CacheError, Layout, array_options, layout_of, part_path, stored_everywhere,
)
from fgvu.cache.record import VideoRecord, record_arrays, record_rows
from fgvu.cache.spec import CacheSpec, ensure_spec
from fgvu.cache.storage import (
    StorageError, append_lines, block_rows, open_array, open_part, os_errors, remove_partials, truncate_lines,
)
from fgvu.modalities import GRIDS

CAPTIONS_FILE = "captions.jsonl"
BUFFER_BYTES = 128 << 20  # flush at the latest when this much is buffered
REWRITE_RATIO = 0.125  # ... or as soon as a flush rewrites at most this share of what it adds
REWRITE_FLOOR = 1 << 20  # ... or at most this many bytes (small caches commit video by video)
PAGE = 4096  # the least a file takes on disk


class PartWriter:
    """The single writer of one part of a cache.

    `parts` declares the partition (K): cache.json records it when it creates the cache, and a
    cache split into another K is refused. None declares nothing (fgvu 0.1's behaviour).
    `lease_seconds` is the length of the part's lease on an object store (unused on a local disk).
    """

    def __init__(self, cache: str | Path, spec: CacheSpec, part: int, parts: int | None = None,
                 buffer_bytes: int = BUFFER_BYTES, lease_seconds: float = LEASE_SECONDS):
        self.cache = cache_path(cache)
        self.spec = ensure_spec(self.cache, spec if parts is None else replace(spec, parts=parts))
        if self.spec.parts is not None and not 0 <= part < self.spec.parts:
            raise CacheError(f"cache {self.cache} is split into {self.spec.parts} part(s); there is no part {part}")
        self.layout: Layout = layout_of(self.spec)
        self.index, self.buffer_bytes = part, buffer_bytes
        self.path = part_path(self.cache, part)
        self._buffer = _Buffer(self.layout)
        self._broken = False  # a write failed: nothing more is written by this writer
        with os_errors(self.path, f"opening {self.path.name}"):
            self._lock = acquire_part(self.cache, self.path, lease_seconds)
        try:
            with os_errors(self.path, f"opening {self.path.name}"):
                self._open()
        except BaseException:
            self._broken = True
            self.close()  # never keep the part locked after a failed open
            raise

    # ---- opening --------------------------------------------------------------------------

    def _open(self) -> None:
        remove_partials(self.path)  # temp files of a writer killed mid-write
        self.group = open_part(self.path, mode="a")
        found = read_commit(self.path)
        self.commit = self._adopt(found)
        self.arrays = {a.name: self._open_array(a) for a in self.layout}
        self._truncate_to_commit()
        if self.commit != found:
            self._write_commit(self.commit)

    def _adopt(self, commit: dict | None) -> dict:
        """The commit to continue from: a fresh one, a legacy one stamped, or a stamped one checked."""
        stamp = self.spec.stamp()
        if commit is None:  # a new part (rows written before any commit are truncated)
            return {"rows": {t: 0 for t in TABLES}, "failures": [], "stamp": stamp, "part": self.index,
                    "parts": self.spec.parts, "finished": False,
                    "checksums": {"algorithm": CHECKSUM_ALGORITHM, "lines": 0, "legacy_videos": 0}}
        if commit.get("stamp") is None:  # written by fgvu 0.1: its videos have no checksums
            return {**commit, "stamp": stamp, "part": self.index, "parts": self.spec.parts, "finished": False,
                    "checksums": {"algorithm": CHECKSUM_ALGORITHM, "lines": 0,
                                  "legacy_videos": commit["rows"]["videos"]}}
        where = f"cache {self.cache}: {self.path.name}"
        problems = self.spec.stamp_problems(commit["stamp"])
        if problems:
            raise CacheError(f"{where} was written under another cache.json ({'; '.join(problems)}); move it "
                             "out of this cache or delete it to re-extract its videos")
        if commit.get("part") != self.index:
            raise CacheError(f"{where} records that it is part {commit.get('part')}: it was copied or renamed; "
                             "move it out of this cache")
        if commit.get("parts") not in (None, self.spec.parts) and self.spec.parts is not None:
            raise CacheError(f"{where} belongs to a partition into {commit.get('parts')} parts, but cache.json "
                             f"says {self.spec.parts}")
        return {**commit, "parts": self.spec.parts if self.spec.parts is not None else commit.get("parts")}

    def _open_array(self, a):
        arr = open_array(self.group, self.path, a.name)
        if arr is not None:
            if tuple(arr.shape[1:]) != a.row_shape:
                raise CacheError(f"cache {self.cache}: {self.path.name}/{a.name} has rows {arr.shape[1:]}, "
                                 f"expected {a.row_shape}")
        else:
            arr = self.group.create_array(a.name, shape=(0, *a.row_shape), **array_options(a))
        return stored_everywhere(arr)

    def _truncate_to_commit(self) -> None:
        rows = self.commit["rows"]
        for a in self.layout:
            arr = self.arrays[a.name]
            if arr.shape[0] != rows[a.table]:
                arr.resize((rows[a.table], *arr.shape[1:]))
        truncate_lines(self.path / CAPTIONS_FILE, rows[GRIDS["caption"].table])
        truncate_lines(self.path / CHECKSUMS_FILE, self.commit["checksums"]["lines"])

    @property
    def committed_videos(self) -> set[str]:
        """Names of the videos already committed in this part."""
        n = self.commit["rows"]["videos"]
        return set(self.arrays["videos/name"][:n].tolist()) if n else set()

    # ---- appending and committing ------------------------------------------------------------

    def append_video(self, rec: VideoRecord) -> None:
        """Append one whole video; it is committed with the next flush. Indices in `rec` are local.

        A record that does not fit the layout is refused with a CacheError before anything is kept.
        """
        if self._broken:
            raise StorageError(f"cache {self.cache}: {self.path.name} stopped after a failed write; re-run to resume")
        start = self._buffer.end_rows(self.commit["rows"])
        counts = record_rows(rec)
        values = record_arrays(self.cache, self.spec, self.layout, rec, start, counts)
        ranges = {t: (start[t], start[t] + counts.get(t, 0)) for t in TABLES}
        line = video_line(rec.name, ranges, {name: digest(v) for name, v in values.items()})
        captions = [] if rec.captions is None else [
            json.dumps({"video": rec.name, "frame": frame, "text": text})
            for frame, text in zip(rec.caption_frame.tolist(), rec.captions)]
        self._buffer.add(rec.name, values, counts, captions, line)
        if self._should_flush():
            self.flush()

    def _should_flush(self) -> bool:
        new = self._buffer.nbytes
        return new >= self.buffer_bytes or self._rewrite_bytes() <= max(REWRITE_FLOOR, REWRITE_RATIO * new)

    def _rewrite_bytes(self) -> int:
        """Bytes of committed rows in the partly filled shards that the next flush would rewrite."""
        total = 0
        for a in self.layout:
            if self._buffer.rows[a.name]:
                total += (self.arrays[a.name].shape[0] % block_rows(self.arrays[a.name])) * a.row_bytes
        return total

    def _append(self, name: str, values: np.ndarray) -> None:
        """Write rows after the end of one array (one array's share of a flush)."""
        arr = self.arrays[name]
        start = arr.shape[0]
        arr.resize((start + len(values), *arr.shape[1:]))
        if len(values):
            arr[start:] = values

    def flush(self) -> None:
        """Write every buffered video and commit them."""
        buf = self._buffer
        if not buf.videos or self._broken:
            return
        rows = buf.end_rows(self.commit["rows"])
        names = set(buf.videos)
        commit = {**self.commit, "rows": rows, "finished": False,
                  "failures": [f for f in self.commit["failures"] if f["video"] not in names],  # they worked now
                  "checksums": {**self.commit["checksums"],
                                "lines": self.commit["checksums"]["lines"] + len(buf.lines)}}
        self._still_owner()  # a writer that lost its lease must not touch the successor's objects
        # the new rows, the shards rewritten next to their old copies, a page per file written
        need = buf.nbytes + self._rewrite_bytes() + 2 * len(buf.arrays) * PAGE
        with os_errors(self.path, f"writing {len(names)} video(s) into {self.path.name}", need,
                       cleanup=self._roll_back):
            for name, blocks in buf.arrays.items():
                self._append(name, np.concatenate(blocks) if len(blocks) > 1 else blocks[0])
            append_lines(self.path / CAPTIONS_FILE, buf.captions)
            append_lines(self.path / CHECKSUMS_FILE, buf.lines)
            self._write_commit(commit)
        self.commit = commit
        self._buffer = _Buffer(self.layout)

    def _write_commit(self, commit: dict) -> None:
        """Replace commit.json, if this writer still holds the part (a lease can be lost)."""
        self._still_owner()
        write_commit(self.path, commit)

    def _still_owner(self) -> None:
        """Raise a CacheError, and write nothing more, once the part's lease is lost (never for an flock)."""
        try:
            self._lock.check()
        except CacheError:
            self._broken = True
            raise

    def _roll_back(self) -> None:
        """After a failed write: no temp files, no rows past the commit; the writer takes no more videos."""
        self._broken = True
        remove_partials(self.path)
        self._truncate_to_commit()

    def record_failure(self, video: str, reason: str) -> None:
        """Log a video that could not be extracted; it stays in the part's failure list."""
        failures = [f for f in self.commit["failures"] if f["video"] != video]
        commit = {**self.commit, "failures": [*failures, {"video": video, "reason": reason}], "finished": False}
        with os_errors(self.path, f"recording a failure in {self.path.name}"):
            self._write_commit(commit)
        self.commit = commit

    def mark_finished(self) -> None:
        """The part's video list is done: flush and record it, so readers know the part is complete."""
        self.flush()
        if not self.commit.get("finished"):
            commit = {**self.commit, "finished": True}
            with os_errors(self.path, f"finishing {self.path.name}"):
                self._write_commit(commit)
            self.commit = commit

    def close(self) -> None:
        """Flush what is buffered (unless a write failed) and release the lock."""
        try:
            if not self._broken:
                self.flush()
        finally:
            self._lock.release()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Buffer:
    """Videos appended but not yet written: each array's rows, captions and checksum lines."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.arrays: dict[str, list[np.ndarray]] = {a.name: [] for a in layout}
        self.rows: dict[str, int] = {a.name: 0 for a in layout}
        self.counts: dict[str, int] = {t: 0 for t in TABLES}
        self.videos: list[str] = []
        self.captions: list[str] = []
        self.lines: list[str] = []
        self.nbytes = 0

    def end_rows(self, committed: dict[str, int]) -> dict[str, int]:
        """Row counts per table once the buffer is written."""
        return {t: committed[t] + self.counts[t] for t in committed}

    def add(self, video: str, values: dict[str, np.ndarray], counts: dict[str, int], captions: list[str],
            line: str) -> None:
        for name, value in values.items():
            self.arrays[name].append(value)
            self.rows[name] += len(value)
            self.nbytes += len(value) * self.layout[name].row_bytes
        for t, n in counts.items():
            self.counts[t] += n
        self.videos.append(video)
        self.captions += captions
        self.lines.append(line)
