"""Adding one modality to the committed videos of an existing cache, exactly once, touching nothing else.

`fgvu extract --only <stream> --into CACHE` computes a stream the cache lacks and hands it here,
video by video. For any grid modality of the registry (`fgvu.modalities`), `CacheExtension`
adds its arrays (features, and the mask when it has one) to every part:

- **Per part, one writer.** A part is extended under the same lock as `PartWriter` holds
  (`fgvu.cache.ownership`: flock locally, a lease on an object store), so no extraction appends to it meanwhile. Rows are added in the part's
  video order; after each whole video, `extend-<modality>.json` in the part records, atomically,
  how many videos and rows are done. Opening a part truncates the new arrays to that record,
  so `kill -9` then a re-run equals an uninterrupted run, and no video is added twice.
- **Nothing else changes.** The part's other arrays and captions are never opened for
  writing, so they stay byte-identical.
- **Invisible until complete.** When every part holds the new rows of every committed video,
  with every part's lock held, each stamped part gets one checksums.jsonl line per video naming
  only the new arrays (`fgvu.cache.checksums`) and commit.json the new line count and the stamp
  of the new spec; then cache.json is rewritten (dims and encoder fingerprint). Until then
  readers see the cache as it was. Videos committed by an extraction in the meantime are
  extended before that. A crash between the parts' commits and cache.json leaves parts stamped
  with the new spec, which readers refuse as foreign; running the same `--only` again finishes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from fgvu.atomic_io import write_json
from fgvu.cache.checksums import CHECKSUMS_FILE, digest, video_line
from fgvu.cache.commit import empty_commit, read_commit, write_commit
from fgvu.cache.layout import ArraySpec, CacheError, array_options, layout_of, part_dirs, stored_everywhere
from fgvu.cache.location import cache_path
from fgvu.cache.ownership import acquire_part
from fgvu.cache.storage import append_lines, open_part, truncate_lines
from fgvu.cache.spec import SPEC_FILE, CacheSpec, read_spec
from fgvu.modalities import MODALITIES, Modality


def progress_file(part: Path, modality: Modality) -> Path:
    """The part's record of how far the extension with `modality` got."""
    return cache_path(part) / f"extend-{modality.name}.json"


@dataclasses.dataclass(frozen=True)
class PendingVideo:
    """A committed video whose new rows are still to be added."""

    index: int  # its row in the part's videos table
    name: str
    n_frames: int
    fps: float
    grid_frames: np.ndarray  # the frame of each of its rows on the modality's grid


class PartExtension:
    """Adds the modality's arrays to one part, video by video, under the part's lock."""

    def __init__(self, extension: "CacheExtension", part: Path):
        self.ext, self.path = extension, cache_path(part)
        self._lock = acquire_part(extension.cache, self.path)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        ext = self.ext
        self.group = open_part(self.path, mode="a")
        self.commit = read_commit(self.path) or empty_commit()
        self.progress = self._read_progress()
        self.arrays = {a.name: self._open_array(a) for a in ext.arrays}
        for arr in self.arrays.values():  # rows past the record are a crashed run's: drop them
            if arr.shape[0] != self.progress["rows"]:
                arr.resize((self.progress["rows"], *arr.shape[1:]))

    def _read_progress(self) -> dict:
        ext = self.ext
        fresh = {"modality": ext.modality.letter, "fingerprint": ext.fingerprint, "dim": ext.dim,
                 "videos": 0, "rows": 0}
        path = progress_file(self.path, ext.modality)
        if not path.exists():
            return fresh
        try:
            progress = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CacheError(f"{path} is corrupt ({e}); delete it to add {ext.modality.name} to this part "
                             "from the start") from None
        if {k: progress.get(k) for k in ("fingerprint", "dim")} != {"fingerprint": ext.fingerprint, "dim": ext.dim}:
            return fresh  # begun with another encoder and never made visible: start over with this one
        return progress

    def _open_array(self, a: ArraySpec):
        if a.name in self.group:
            arr = self.group[a.name]
            if tuple(arr.shape[1:]) != a.row_shape:
                raise CacheError(f"cache {self.ext.cache}: {self.path.name}/{a.name} has rows {arr.shape[1:]}, "
                                 f"expected {a.row_shape}; delete that array to add it again")
            return stored_everywhere(arr)
        return stored_everywhere(self.group.create_array(a.name, shape=(0, *a.row_shape), **array_options(a)))

    @property
    def n_videos(self) -> int:
        return int(self.commit["rows"]["videos"])

    @property
    def complete(self) -> bool:
        """Every committed video of the part has its rows."""
        return self.progress["videos"] >= self.n_videos

    def pending(self) -> list[PendingVideo]:
        """The committed videos still without rows, in the part's order."""
        done, n = self.progress["videos"], self.n_videos
        if done >= n:
            return []
        table = self.ext.grid.table
        names = self.group["videos/name"][:n].tolist()
        frames_n = np.asarray(self.group["videos/n_frames"][:n])
        fps = np.asarray(self.group["videos/fps"][:n])
        offsets = np.append(np.asarray(self.group[f"videos/{table}_offset"][:n], np.int64), self.commit["rows"][table])
        grid = np.asarray(self.group[self.ext.grid.frames][offsets[done]: offsets[n]])
        return [PendingVideo(v, str(names[v]), int(frames_n[v]), float(fps[v]),
                             grid[offsets[v] - offsets[done]: offsets[v + 1] - offsets[done]])
                for v in range(done, n)]

    def append(self, video: PendingVideo, values: dict[str, np.ndarray]) -> None:
        """Add one video's rows (by layout key: the modality's name and its mask key) and record it."""
        if video.index != self.progress["videos"]:
            raise ValueError(f"videos must be added in order: expected row {self.progress['videos']}, "
                             f"got {video.index} ({video.name})")
        n = len(video.grid_frames)
        checked = {}
        for a in self.ext.arrays:
            value = values.get(a.key)
            if value is None:
                raise CacheError(f"cache {self.ext.cache}: video {video.name!r}: no {a.key} rows")
            value = np.asarray(value)
            if value.shape != (n, *a.row_shape):
                raise CacheError(f"cache {self.ext.cache}: video {video.name!r}: {a.key} shape {value.shape}, "
                                 f"expected {(n, *a.row_shape)}")
            if a.is_float and not np.isfinite(value).all():
                raise CacheError(f"cache {self.ext.cache}: video {video.name!r}: {a.key} features contain NaN or Inf")
            checked[a.name] = value.astype(a.dtype)
        start = self.progress["rows"]
        for name, value in checked.items():
            arr = self.arrays[name]
            arr.resize((start + n, *arr.shape[1:]))
            if n:
                arr[start:] = value
        self.progress = {**self.progress, "videos": video.index + 1, "rows": start + n}
        self._lock.check()
        write_json(progress_file(self.path, self.ext.modality), self.progress)

    def commit_checksums(self) -> None:
        """Record the new arrays in the part's checksums and stamp it with the new spec (a complete,
        stamped part; legacy parts carry neither). Idempotent: a part already stamped is left alone."""
        stamp = self.commit.get("stamp")
        target = self.ext.target.stamp()
        if not stamp or stamp.get("fingerprint") == target["fingerprint"]:
            return
        n, table = self.n_videos, self.ext.grid.table
        committed = self.commit["checksums"]["lines"]
        offsets = np.append(np.asarray(self.group[f"videos/{table}_offset"][:n], np.int64), self.commit["rows"][table])
        names = self.group["videos/name"][:n].tolist()
        lines = []
        for v in range(int(self.commit["checksums"].get("legacy_videos", 0)), n):
            lo, hi = int(offsets[v]), int(offsets[v + 1])
            sums = {a.name: digest(np.asarray(self.arrays[a.name][lo:hi])) for a in self.ext.arrays}
            lines.append(video_line(str(names[v]), {table: (lo, hi)}, sums))
        path = self.path / CHECKSUMS_FILE
        truncate_lines(path, committed)
        append_lines(path, lines)
        self.commit = {**self.commit, "stamp": target,
                       "checksums": {**self.commit["checksums"], "lines": committed + len(lines)}}
        self._lock.check()
        write_commit(self.path, self.commit)

    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> "PartExtension":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class CacheExtension:
    """Adding the grid modality `letter` (width `dim`, encoder `fingerprint`) to an existing cache."""

    def __init__(self, cache: str | Path, letter: str, dim: int, fingerprint: dict):
        self.cache = cache_path(cache)
        self.spec = read_spec(self.cache)
        self.modality = MODALITIES[letter]
        if self.modality.storage != "grid":
            raise CacheError(f"only grid modalities can be added to a cache, not {self.modality.name}")
        self.grid = self.modality.on_grid
        self.dim, self.fingerprint = int(dim), dict(fingerprint)
        name, role = self.modality.name, self.modality.role
        recorded = (self.spec.dims.get(name), self.spec.encoders.get(role))
        if name in self.spec.dims and recorded != (self.dim, self.fingerprint):
            have = self.spec.encoders.get(role, {})
            raise CacheError(f"cache {self.cache} already has {name} features from {have.get('variant')} "
                             f"(dim {self.spec.dims[name]}); this run's encoder is {self.fingerprint.get('variant')} "
                             f"(dim {self.dim}). Extract into a new cache to change it.")
        self.target = CacheSpec.from_dict({**self.spec.to_dict(), "dims": {**self.spec.dims, name: self.dim},
                                           "encoders": {**self.spec.encoders, role: self.fingerprint}})
        self.arrays = tuple(a for a in layout_of(self.target) if a.modality == letter)

    @property
    def done(self) -> bool:
        """cache.json already lists the modality: the cache is complete."""
        return self.modality.name in self.spec.dims

    def part_paths(self) -> list[Path]:
        return part_dirs(self.cache)

    def open_part(self, part: Path) -> PartExtension:
        """The extension of one part (hold it with `with`; it holds the part's lock)."""
        return PartExtension(self, part)

    def finish(self) -> list[Path]:
        """Make the modality visible if every part is complete; else return the parts that are not.

        Takes every part's lock first, so no video can be committed in between.
        """
        if self.done:
            return []
        held: list[PartExtension] = []
        try:
            for part in self.part_paths():
                held.append(PartExtension(self, part))
            incomplete = [p.path for p in held if not p.complete]
            if incomplete:
                return incomplete
            for p in held:
                p.commit_checksums()
            write_json(self.cache / SPEC_FILE, self.target.to_dict())
            for p in held:
                progress_file(p.path, self.modality).unlink(missing_ok=True)
            self.spec = self.target
            return []
        finally:
            for p in held:
                p.close()
