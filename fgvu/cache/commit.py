"""commit.json: what a part has committed, under which cache.json, and whether its video list is done.

    {"rows": {table: n},            committed rows per table (readers ignore rows past these)
     "failures": [{"video", "reason"}],
     "stamp": {"fingerprint", "spec"},  the cache.json spec the part was written under (spec.stamp())
     "part": k, "parts": K | null,  its place in the partition (K null: not declared)
     "finished": bool,              the last run that wrote it finished its video list
     "checksums": {"algorithm": "crc32c", "lines": n, "legacy_videos": m}}

A part written by fgvu 0.1 has only "rows" and "failures": it is *legacy*, and the fields it
lacks read as unknown. A writer resuming a legacy part stamps it and records how many of its
videos were committed without checksums (`legacy_videos`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fgvu.atomic_io import write_json
from fgvu.cache.layout import TABLES, CacheError, part_dirs
from fgvu.cache.location import cache_path

COMMIT_FILE = "commit.json"
CHECKSUM_ALGORITHM = "crc32c"


def empty_commit() -> dict:
    return {"rows": {t: 0 for t in TABLES}, "failures": []}


def read_commit(part: Path) -> dict | None:
    """A part's commit.json with defaults filled in; None when the file does not exist."""
    path = cache_path(part) / COMMIT_FILE
    if not path.exists():
        return None
    try:
        commit = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"{path} is corrupt ({e})") from None
    if not isinstance(commit, dict) or not isinstance(commit.get("rows", {}), dict) \
            or not isinstance(commit.get("failures", []), list):
        raise CacheError(f"{path} is malformed (expected an object with 'rows' and 'failures')")
    empty = empty_commit()
    try:
        rows = {t: int(n) for t, n in {**empty["rows"], **commit.get("rows", {})}.items()}
    except (TypeError, ValueError):
        raise CacheError(f"{path} is malformed (row counts are not integers)") from None
    if any(n < 0 for n in rows.values()):
        raise CacheError(f"{path} is malformed (negative row counts)")
    return {**empty, **commit, "rows": rows}


def write_commit(part: Path, commit: dict) -> None:
    """Replace commit.json atomically (readers see the old commit or the new one)."""
    write_json(cache_path(part) / COMMIT_FILE, commit)


@dataclass
class CommittedPart:
    """One part directory and what its commit.json says (an absent file commits nothing)."""

    path: Path
    rows: dict[str, int]
    failures: list[dict] = field(default_factory=list)
    commit: dict | None = None  # the whole commit.json, None when the file is absent

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def index(self) -> int:
        """The part number in the directory name (part-00003.zarr -> 3)."""
        return int(self.name.split("-")[1].split(".")[0])

    @property
    def n_videos(self) -> int:
        return int(self.rows["videos"])

    @property
    def has_commit(self) -> bool:
        return self.commit is not None

    @property
    def stamp(self) -> dict | None:
        """The spec stamp; None for a legacy part (written by fgvu 0.1) or one without commit.json."""
        return (self.commit or {}).get("stamp")

    @property
    def finished(self) -> bool | None:
        """Whether the part finished its video list; None when unknown (legacy)."""
        return (self.commit or {}).get("finished")

    @property
    def checksum_lines(self) -> int:
        return int(((self.commit or {}).get("checksums") or {}).get("lines", 0))

    @property
    def legacy_videos(self) -> int:
        """Videos committed without checksums: all of them in a legacy part."""
        if self.stamp is None:
            return self.n_videos
        return int(((self.commit or {}).get("checksums") or {}).get("legacy_videos", 0))

    def group(self):
        """The part's Zarr group, read-only; a damaged part raises CacheError naming it."""
        from fgvu.cache.storage import open_part

        return open_part(self.path)


def iter_committed_parts(cache: str | Path) -> Iterator[CommittedPart]:
    """Every part of a cache with its commit.json, in part order; a corrupt commit.json is a CacheError."""
    for path in part_dirs(cache):
        commit = read_commit(path)
        rows = (commit or empty_commit())["rows"]
        yield CommittedPart(path, rows, list((commit or {}).get("failures", [])), commit)
