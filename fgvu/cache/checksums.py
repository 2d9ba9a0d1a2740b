"""Content checksums: the crc32c of every committed video's rows in every array of a part.

The API, for any code that writes rows into a part:

- `digest(values)`: the crc32c of rows exactly as stored (numeric rows: their C-order bytes;
  string rows: UTF-8 with a NUL after each). `extend(crc, values)` continues it over more rows.
- `video_line(video, rows, sums)`: one line of `checksums.jsonl`,
  `{"video": name, "rows": {table: [lo, hi]}, "sums": {array name: crc}}`. The writer appends
  one line per committed video, covering every array of the layout; the part's commit.json
  counts the committed lines (`checksums.lines`) and a writer truncates lines past it.
- A tool that adds an array to videos already committed (a new modality) appends one line per
  video naming only the new array, then commits the new line count. Lines are merged by array:
  each array's ranges must cover its committed rows (after the part's legacy videos) once.
- `expected_ranges(part, layout, lines)` -> {array: [Range]}; `RangeChecker` recomputes the
  sums while rows are read block by block and reports every range that differs.

Checksums live per `ArraySpec`, so arrays a new modality adds are covered without an edit here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.cache.layout import CacheError, Layout
from fgvu.cache.location import cache_path
from fgvu.cache.storage import read_lines

CHECKSUMS_FILE = "checksums.jsonl"


def extend(crc: int, values) -> int:
    """crc32c of `values`' rows appended to a running `crc`."""
    import google_crc32c

    values = np.asarray(values)
    if values.dtype.kind in "OUT":  # strings: UTF-8, each row NUL-terminated
        data = b"".join(str(v).encode("utf-8") + b"\0" for v in values.ravel().tolist())
        return google_crc32c.extend(crc, data)
    return google_crc32c.extend(crc, np.ascontiguousarray(values).view(np.uint8).ravel())


def digest(values) -> int:
    """crc32c of rows as stored."""
    return extend(0, values)


def video_line(video: str, rows: dict[str, tuple[int, int]], sums: dict[str, int]) -> str:
    """One line of checksums.jsonl: a video's row ranges per table and the crc32c per array."""
    return json.dumps({"video": video, "rows": {t: [int(lo), int(hi)] for t, (lo, hi) in rows.items()},
                       "sums": {name: int(crc) for name, crc in sums.items()}})


def read_checksum_lines(part: Path, n: int) -> list[dict]:
    """The first `n` (committed) lines of a part's checksums.jsonl; damage is a CacheError naming it."""
    path = cache_path(part) / CHECKSUMS_FILE
    lines = read_lines(path, n)
    if len(lines) < n:
        raise CacheError(f"{path}: {len(lines)} lines, but commit.json commits {n}")
    out = []
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
            ok = isinstance(entry["video"], str) and isinstance(entry["rows"], dict) and isinstance(entry["sums"], dict)
        except (json.JSONDecodeError, KeyError, TypeError):
            ok = False
        if not ok:
            raise CacheError(f"{path}: line {number} is corrupt")
        out.append(entry)
    return out


@dataclass(frozen=True)
class Range:
    """Rows [lo, hi) of one array that belong to `video`, and their recorded crc32c."""

    lo: int
    hi: int
    crc: int
    video: str


def expected_ranges(path: Path, layout: Layout, lines: list[dict]) -> dict[str, list[Range]]:
    """Each array's recorded ranges, sorted; a malformed line is a CacheError naming the file."""
    out: dict[str, list[Range]] = {a.name: [] for a in layout}
    tables = {a.name: a.table for a in layout}
    for number, entry in enumerate(lines, start=1):
        for name, crc in entry["sums"].items():
            if name not in out:
                continue  # an array this reader does not load
            try:
                lo, hi = (int(x) for x in entry["rows"][tables[name]])
            except (KeyError, TypeError, ValueError):
                raise CacheError(f"{path / CHECKSUMS_FILE}: line {number} has no {tables[name]} rows "
                                 f"for {name}") from None
            out[name].append(Range(lo, hi, int(crc), entry["video"]))
    return {name: sorted(ranges, key=lambda r: r.lo) for name, ranges in out.items()}


def coverage_problem(ranges: list[Range], start: int, n: int) -> str | None:
    """Why `ranges` do not cover rows [start, n) exactly once, in order; None when they do."""
    at = start
    for r in ranges:
        if r.lo != at or r.hi < r.lo:
            what = "overlap" if r.lo < at else "leave a gap"
            return f"checksum ranges {what} at row {at} (video {r.video!r} has rows {r.lo}..{r.hi})"
        at = r.hi
    if at != n:
        return f"checksums cover rows {start}..{at}, but {n} rows are committed"
    return None


class RangeChecker:
    """Recomputes the sums of sorted, contiguous ranges from blocks of rows fed in order."""

    def __init__(self, ranges: list[Range]):
        self.ranges = ranges
        self._i, self._crc = 0, 0
        self.mismatches: list[Range] = []

    def feed(self, lo: int, block: np.ndarray) -> None:
        """Rows [lo, lo + len(block)) of the array; blocks must follow each other."""
        hi = lo + len(block)
        while self._i < len(self.ranges):
            r = self.ranges[self._i]
            a, b = max(r.lo, lo), min(r.hi, hi)
            if a < b:
                self._crc = extend(self._crc, block[a - lo: b - lo])
            if r.hi > hi:
                return  # the range continues in the next block
            if self._crc != r.crc:
                self.mismatches.append(r)
            self._i, self._crc = self._i + 1, 0

    def finish(self) -> list[Range]:
        """After the last block: every range whose rows differ from their sum (or were never read)."""
        for r in self.ranges[self._i:]:
            if r.hi > r.lo or r.crc != 0:
                self.mismatches.append(r)
        self._i = len(self.ranges)
        return self.mismatches
