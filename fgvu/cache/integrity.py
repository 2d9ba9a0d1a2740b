"""The checks every reader of a cache makes, shared by `open_cache` (which refuses on the first)
and `verify_cache` (which lists them all).

- **Parts and partition** (`part_findings`): commit.json present, each part stamped with this
  cache.json (a foreign part is named with what differs), at its place in the partition, and,
  when cache.json records K, every part present and finished.
- **Arrays** (`part_arrays`): every array present with the committed rows and the right row
  shape; every shard those rows need stored (a missing one would read as zeros); checksum
  ranges covering the committed rows.
- **Content** (`read_checked`, `checksum_problems`, `target_problems`, `duplicate_problems`):
  rows equal to their checksums, valid targets inside the task's range, no video in two parts.

Problems are one line each and name the file. Legacy parts (fgvu 0.1) have no stamp and no
checksums: what cannot be checked for them is a note, not a problem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.cache.checksums import CHECKSUMS_FILE, Range, RangeChecker, coverage_problem, expected_ranges, \
    read_checksum_lines
from fgvu.cache.commit import COMMIT_FILE, CommittedPart
from fgvu.cache.layout import TABLES, ArraySpec, Layout, part_path
from fgvu.cache.spec import CacheSpec
from fgvu.cache.storage import block_rows, iter_blocks, missing_shards, open_array, shard_file, stored_rows
from fgvu.tasks import TASKS

REPAIR_DUPLICATES = "repair with `fgvu cache repair --drop-duplicates CACHE` (keeps the first copy) or re-extract"


@dataclass
class Findings:
    """What the checks found: damage (always refused), missing work (refused unless partial), notes."""

    problems: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    foreign: set[Path] = field(default_factory=set)  # parts written under another spec: not read further

    def refusal(self, allow_partial: bool = False) -> str | None:
        """The first reason to refuse the cache, with a count of the others; None when it may be used."""
        reasons = self.problems + ([] if allow_partial else self.incomplete)
        if not reasons:
            return None
        more = f" (and {len(reasons) - 1} more problem(s): run `fgvu cache verify`)" if len(reasons) > 1 else ""
        hint = "; pass --allow-partial to use the finished parts" if not self.problems else ""
        return reasons[0] + more + hint


# ---- parts and the partition -----------------------------------------------------------------


def part_findings(cache: Path, spec: CacheSpec, parts: list[CommittedPart]) -> Findings:
    """Stamps, partition and completeness of every part (reads only the commit.json files and shapes)."""
    found = Findings()
    for part in parts:
        where = part.path
        if not part.has_commit:
            rows = stored_rows(part.path)
            if rows:
                found.problems.append(f"{where / COMMIT_FILE} is missing while the part holds {rows} rows: its "
                                      f"videos are not trusted; re-run the extraction of part {part.index} to "
                                      "rebuild it")
            elif spec.parts is not None:
                found.incomplete.append(f"{where}: part {part.index} has committed nothing yet (no {COMMIT_FILE})")
            continue
        if part.stamp is None:
            if spec.schema_version >= 2:
                found.foreign.add(part.path)
                found.problems.append(f"{where}: {COMMIT_FILE} has no stamp of the cache it was written under: "
                                      "the part does not belong to this cache; move it out")
            else:
                found.notes.append(f"{part.name}: written by fgvu 0.1 (no stamp, no checksums, no chunk checks)")
            continue
        differences = spec.stamp_problems(part.stamp)
        if differences:
            found.foreign.add(part.path)
            found.problems.append(f"{where} was written under another cache.json ({'; '.join(differences)}); "
                                  "move it out of this cache")
            continue
        recorded = part.commit.get("part")
        if recorded != part.index:
            found.problems.append(f"{where}: {COMMIT_FILE} says it is part {recorded}: it was copied or renamed")
        if spec.parts is not None and part.commit.get("parts") not in (None, spec.parts):
            found.problems.append(f"{where} belongs to a partition into {part.commit.get('parts')} parts, "
                                  f"cache.json says {spec.parts}")
        if part.legacy_videos:
            found.notes.append(f"{part.name}: its first {part.legacy_videos} video(s) were written by fgvu 0.1 "
                               "(no checksums)")
    found.incomplete += _partition_gaps(cache, spec, parts)
    if spec.parts is None:
        found.notes.append("the partition is not recorded in cache.json (fgvu 0.1, or written without --parts): "
                           "missing parts cannot be detected")
    return found


def _partition_gaps(cache: Path, spec: CacheSpec, parts: list[CommittedPart]) -> list[str]:
    if spec.parts is None:
        return []
    gaps = []
    present = {p.index: p for p in parts}
    for k in range(spec.parts):
        part = present.get(k)
        if part is None:
            gaps.append(f"{part_path(cache, k)}: part {k} of {spec.parts} is missing; run `fgvu extract ... "
                        f"--parts {spec.parts} --part {k}`")
        elif part.has_commit and part.stamp is not None and not part.finished:
            gaps.append(f"{part.path}: part {k} of {spec.parts} has not finished its video list "
                        f"({part.n_videos} videos committed); re-run `fgvu extract ... --parts {spec.parts} --part {k}`")
    gaps += [f"{p.path} is outside the cache's partition into {spec.parts} parts" for p in parts if p.index >= spec.parts]
    return gaps


def status_lines(spec: CacheSpec, parts: list[CommittedPart]) -> list[str]:
    """One line per part: index, videos, finished / unfinished / missing / legacy."""
    lines = []
    present = {p.index: p for p in parts}
    indices = sorted(set(present) | set(range(spec.parts or 0)))
    for k in indices:
        part = present.get(k)
        if part is None:
            state = "missing"
        elif not part.has_commit:
            state = "nothing committed"
        elif part.stamp is None:
            state = "legacy (fgvu 0.1): completeness unknown"
        else:
            state = "finished" if part.finished else "unfinished"
        videos = f"{part.n_videos} videos" if part is not None else "-"
        lines.append(f"part {k}: {state}, {videos}")
    return lines


# ---- arrays of one part ----------------------------------------------------------------------


@dataclass
class PartArrays:
    """One part's open arrays and the checksum ranges of each (None: nothing to check against)."""

    arrays: dict
    ranges: dict[str, list[Range] | None]


def checksum_lines(part: CommittedPart) -> list[dict]:
    """The part's committed checksum lines ([] for a legacy part)."""
    return read_checksum_lines(part.path, part.checksum_lines) if part.stamp is not None else []


def part_arrays(part: CommittedPart, layout: Layout, problems: list[str], lines: list[dict]) -> PartArrays:
    """Open the layout's arrays of one committed part, appending what is wrong to `problems`."""
    group = part.group()
    arrays, ranges = {}, {}
    expected = expected_ranges(part.path, layout, lines) if part.stamp is not None else {}
    start = legacy_rows(part, lines)
    for a in layout:
        n, where = part.rows[a.table], part.path / a.name
        arr = open_array(group, part.path, a.name)
        if arr is None and a.optional:
            continue  # a part older than the array: its rows read as 0
        if arr is None:
            problems.append(f"{part.path}: array {a.name} is missing (a part missing array {a.name} cannot be "
                            "read; re-extract it)")
            continue
        if tuple(arr.shape[1:]) != a.row_shape:
            problems.append(f"{where}: {part.name}/{a.name} has rows of shape {arr.shape[1:]}, cache.json says "
                            f"{a.row_shape}")
            continue
        if arr.shape[0] < n:
            problems.append(f"{where}: {arr.shape[0]} rows, but commit.json commits {n}")
            continue
        if part.stamp is not None:
            first = start[a.table] // block_rows(arr)
            gone = [i for i in missing_shards(part.path, a.name, arr, n) if i >= first]
            if gone:
                problems.append(f"{shard_file(part.path, a.name, arr, gone[0])} is missing ({len(gone)} shard(s) of "
                                f"committed rows of {part.name}/{a.name} would read as zeros); re-extract the part")
                continue
            gap = coverage_problem(expected[a.name], start[a.table], n)
            if gap:
                problems.append(f"{part.path / CHECKSUMS_FILE}: {a.name}: {gap}")
                continue
        arrays[a.name] = arr
        ranges[a.name] = expected.get(a.name) if part.stamp is not None else None
    return PartArrays(arrays, ranges)


def legacy_rows(part: CommittedPart, lines: list[dict]) -> dict[str, int]:
    """Per table, the rows committed without checksums (by fgvu 0.1), which checksums cannot cover."""
    if part.stamp is None:
        return dict(part.rows)
    if not part.legacy_videos:
        return {t: 0 for t in TABLES}
    firsts = [line["rows"] for line in lines if line["rows"]]
    return {t: min((int(r[t][0]) for r in firsts if t in r), default=part.rows[t]) for t in TABLES}


def read_checked(part: CommittedPart, a: ArraySpec, arr, ranges: list[Range] | None,
                 on_block: Callable[[int, np.ndarray], None]) -> list[Range]:
    """Read the committed rows of one array block by block into `on_block`; the ranges that differ."""
    checker = RangeChecker(ranges) if ranges is not None else None
    for lo, block in iter_blocks(part.path, a.name, arr, part.rows[a.table], a):
        if checker is not None:
            checker.feed(lo, block)
        on_block(lo, block)
    return checker.finish() if checker is not None else []


def checksum_problems(part: CommittedPart, a: ArraySpec, arr, bad: list[Range]) -> list[str]:
    """One line per range whose rows differ from their checksum, naming the files they are in."""
    out = []
    rows = block_rows(arr)
    for r in bad:
        first, last = r.lo // rows, max(r.lo, r.hi - 1) // rows
        files = str(shard_file(part.path, a.name, arr, first)) + (f" .. {shard_file(part.path, a.name, arr, last).name}"
                                                                  if last > first else "")
        out.append(f"{files}: rows {r.lo}..{r.hi - 1} of {part.name}/{a.name} (video {r.video!r}) differ from "
                   f"their checksum; re-extract the part")
    return out


# ---- content ----------------------------------------------------------------------------------


def target_problems(spec: CacheSpec, part: CommittedPart, values: np.ndarray, mask: np.ndarray,
                    names: np.ndarray, frame_offset: np.ndarray) -> list[str]:
    """Targets marked valid whose values lie outside the task's range (rows local to the part)."""
    bad = mask & ~TASKS[spec.task].valid_values(values)
    if not bad.any():
        return []
    rows = np.flatnonzero(bad.any(axis=1))
    row = int(rows[0])
    video = int(np.clip(np.searchsorted(frame_offset, row, side="right") - 1, 0, len(names) - 1))
    value = values[row][bad[row]][0]
    return [f"{part.path / 'targets/values'}: {len(rows)} frame(s) marked valid hold values outside the "
            f"{spec.task} range (first: video {names[video]!r} frame {row - int(frame_offset[video])} = {value:g})"]


def duplicate_problems(names_by_part: list[tuple[CommittedPart, list[str]]]) -> list[str]:
    """One line per video committed more than once, naming the parts that hold it."""
    holders: dict[str, list[str]] = {}
    for part, names in names_by_part:
        for name in names:
            holders.setdefault(name, []).append(part.name)
    out = []
    for name, where in holders.items():
        if len(where) == 2 and where[0] != where[1]:
            out.append(f"video {name!r} is committed in both {where[0]} and {where[1]}; {REPAIR_DUPLICATES}")
        elif len(where) > 1:
            out.append(f"video {name!r} is committed {len(where)} times (in {', '.join(where)}); {REPAIR_DUPLICATES}")
    return out
