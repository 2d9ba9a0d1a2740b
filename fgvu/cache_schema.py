"""The cache: the contract between stage 1 (extract) and stage 2 (fit).

Layout of one cache (one dataset x one encoder set)::

    CACHE/cache.json                 schema version, dataset, task, sampling plan, encoders, dims
    CACHE/parts/part-NNNNN.zarr/     a Zarr v3 group, written by exactly one writer
        frames/image        f16 [n_image_rows, Di]   CLIP image embedding per image-grid frame
        frames/image_frame  i32 [n_image_rows]       frame number of each image row
        frames/text         f16 [n_text_rows, Dt]    CLIP text embedding of each caption
        frames/caption_frame i32 [n_text_rows]       frame number of each caption row
        clips/video_fT      f16 [n_windows, T, Dv]   VideoPrism per-frame tokens, one array per T
        windows/video_id    i32 [n_windows]          row in this part's videos table
        windows/start       i32 [n_windows]          first frame of the window
        windows/image_index i32 [n_windows, 16]      part-global rows of frames/image
        windows/caption_index i32 [n_windows, 4]     part-global rows of frames/text
        windows/valid       bool [n_windows, window] False where the frame is padding
        targets/values      f32 [n_frames, K]        per-frame targets of every video
        targets/mask        bool [n_frames, K]       True where the target is valid
        videos/*            one row per video: name, split, n_frames, fps, width, height and the
                            row offsets of the video in each table
        captions.jsonl      one line per text row: {"video", "frame", "text"}
        commit.json         row counts of the last completely written video, and failures

A part commits after each whole video; rows past `commit.json` are ignored by readers and
truncated by the next writer, so a crash can neither lose nor duplicate a video.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fgvu.errors import FgvuError
from fgvu.sampling import SamplingPlan

SCHEMA_VERSION = 1
TASKS = {"va": ("valence", "arousal"), "violence": ("violence",)}
MODALITIES = {"v": "video", "i": "image", "t": "text"}
# Row tables and the arrays that grow with each. Video clip arrays join "windows" per T.
TABLES = {
    "image": ("frames/image", "frames/image_frame"),
    "text": ("frames/text", "frames/caption_frame"),
    "windows": ("windows/video_id", "windows/start", "windows/image_index", "windows/caption_index", "windows/valid"),
    "frames": ("targets/values", "targets/mask"),
    "videos": (
        "videos/name", "videos/split", "videos/n_frames", "videos/fps", "videos/width", "videos/height",
        "videos/image_offset", "videos/text_offset", "videos/window_offset", "videos/frame_offset",
    ),
}
CHUNK_BYTES = 1 << 20  # ~1 MiB chunks inside ...
CHUNKS_PER_SHARD = 16  # ... 16 MiB shards


class CacheError(FgvuError):
    """A cache that cannot be used as asked; the message names the cache and the problem."""


def clip_array(t: int) -> str:
    """The array name of the T-frame VideoPrism clips."""
    return f"clips/video_f{t}"


@dataclass
class CacheSpec:
    """What cache.json records. Two writers may share a cache only if their specs agree."""

    dataset: str
    task: str
    sampling: SamplingPlan
    encoders: dict[str, dict]
    dims: dict[str, int]
    splits: list[str] = field(default_factory=lambda: ["train", "val", "test"])
    caption_prompt: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise CacheError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        unknown = set(self.dims) - set(MODALITIES.values())
        if unknown:
            raise CacheError(f"unknown modalities in dims: {sorted(unknown)}")

    @property
    def target_names(self) -> tuple[str, ...]:
        return TASKS[self.task]

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality letters present in the cache, in v, i, t order."""
        return tuple(k for k, name in MODALITIES.items() if name in self.dims)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["sampling"] = self.sampling.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "CacheSpec":
        return cls(**{**d, "sampling": SamplingPlan.from_dict(d["sampling"])})

    def compatibility_problems(self, other: "CacheSpec") -> list[str]:
        """Differences that forbid appending `other`'s videos to a cache made with `self`."""
        problems = []
        for key in ("dataset", "task", "dims", "caption_prompt"):
            if getattr(self, key) != getattr(other, key):
                problems.append(f"{key}: cache has {getattr(self, key)!r}, this run has {getattr(other, key)!r}")
        if self.sampling != other.sampling:
            problems.append(f"sampling plan: cache has {self.sampling.to_dict()}, this run has {other.sampling.to_dict()}")
        for role in sorted(set(self.encoders) | set(other.encoders)):
            mine, theirs = self.encoders.get(role), other.encoders.get(role)
            if mine != theirs:
                problems.append(f"encoder {role!r}: cache has {_short(mine)}, this run has {_short(theirs)}")
        return problems


def _short(fp: dict | None) -> str:
    if fp is None:
        return "none"
    return f"{fp.get('name')} ({fp.get('variant')}, {fp.get('checkpoint', '')[:16]})"


@dataclass
class VideoRecord:
    """Everything stage 1 produced for one whole video, with indices local to the video."""

    name: str
    split: str
    n_frames: int
    fps: float
    width: int
    height: int
    window_start: np.ndarray  # [W]
    image_index: np.ndarray  # [W, image_frames] rows of `image`
    caption_index: np.ndarray  # [W, captions] rows of `text`
    valid: np.ndarray  # [W, window]
    targets: np.ndarray  # [n_frames, K]
    target_mask: np.ndarray  # [n_frames, K]
    image: np.ndarray | None = None  # [n_img, Di]
    image_frame: np.ndarray | None = None  # [n_img]
    text: np.ndarray | None = None  # [n_cap, Dt]
    caption_frame: np.ndarray | None = None  # [n_cap]
    captions: list[str] | None = None  # n_cap strings
    video: dict[int, np.ndarray] = field(default_factory=dict)  # T -> [W, T, Dv]


def write_json(path: Path, obj) -> None:
    """Write JSON atomically and durably: a crash leaves the old file or the new one, never half."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_spec(cache: str | Path) -> CacheSpec:
    """Read and validate cache.json."""
    cache = Path(cache)
    path = cache / "cache.json"
    if not cache.exists():
        raise CacheError(f"cache {cache}: no such directory")
    if not path.exists():
        raise CacheError(f"cache {cache}: not an fgvu cache (cache.json is missing)")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CacheError(f"cache {cache}: cache.json is corrupt ({e})") from None
    version = d.get("schema_version")
    if version != SCHEMA_VERSION:
        raise CacheError(
            f"cache {cache}: schema version {version} is not supported by this fgvu (expects {SCHEMA_VERSION}); "
            "re-extract the cache with this version"
        )
    try:
        return CacheSpec.from_dict(d)
    except (TypeError, KeyError, ValueError) as e:
        raise CacheError(f"cache {cache}: cache.json is malformed ({e})") from None


def part_dirs(cache: str | Path) -> list[Path]:
    """All part directories of a cache, in order."""
    return sorted((Path(cache) / "parts").glob("part-*.zarr"))


def part_path(cache: str | Path, index: int) -> Path:
    return Path(cache) / "parts" / f"part-{index:05d}.zarr"


def array_specs(spec: CacheSpec) -> dict[str, tuple[tuple[int, ...], str]]:
    """name -> (row shape, dtype) of every array a part of this cache holds."""
    plan = spec.sampling
    k = len(spec.target_names)
    arrays: dict[str, tuple[tuple[int, ...], str]] = {
        "windows/video_id": ((), "int32"),
        "windows/start": ((), "int32"),
        "windows/image_index": ((plan.image_frames,), "int32"),
        "windows/caption_index": ((plan.captions,), "int32"),
        "windows/valid": ((plan.window,), "bool"),
        "targets/values": ((k,), "float32"),
        "targets/mask": ((k,), "bool"),
        "videos/name": ((), "str"),
        "videos/split": ((), "str"),
        "videos/n_frames": ((), "int64"),
        "videos/fps": ((), "float64"),
        "videos/width": ((), "int32"),
        "videos/height": ((), "int32"),
        "videos/image_offset": ((), "int64"),
        "videos/text_offset": ((), "int64"),
        "videos/window_offset": ((), "int64"),
        "videos/frame_offset": ((), "int64"),
    }
    if "image" in spec.dims:
        arrays["frames/image"] = ((spec.dims["image"],), "float16")
    arrays["frames/image_frame"] = ((), "int32")
    if "text" in spec.dims:
        arrays["frames/text"] = ((spec.dims["text"],), "float16")
    arrays["frames/caption_frame"] = ((), "int32")
    if "video" in spec.dims:
        for t in plan.video_frames:
            arrays[clip_array(t)] = ((t, spec.dims["video"]), "float16")
    return arrays


def table_of(name: str) -> str:
    """The row table ("image", "text", "windows", "frames" or "videos") that array `name` grows with."""
    if name.startswith("clips/"):
        return "windows"
    for table, names in TABLES.items():
        if name in names:
            return table
    raise KeyError(name)


def _chunk_rows(row_shape: tuple[int, ...], dtype: str) -> int:
    row_bytes = int(np.prod(row_shape, dtype=np.int64)) * (8 if dtype == "str" else np.dtype(dtype).itemsize)
    return int(max(64, min(1 << 16, 2 ** int(np.log2(max(1, CHUNK_BYTES // max(1, row_bytes)))))))


class PartWriter:
    """The single writer of one part. Appends whole videos and commits after each.

    Holds an exclusive lock (flock, released by the kernel even on kill -9) for its lifetime.
    Opening truncates rows past the last commit, so re-running after a crash resumes cleanly.
    """

    def __init__(self, cache: str | Path, spec: CacheSpec, part: int):
        self.cache = Path(cache)
        self.spec = ensure_spec(self.cache, spec)
        self.path = part_path(self.cache, part)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / "writer.lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise CacheError(
                f"cache {self.cache}: part {part} is being written by another process (lock {self.path / 'writer.lock'})"
            ) from None
        try:
            self._open(part)
        except BaseException:
            self.close()  # never keep the part locked after a failed open
            raise

    def _open(self, part: int) -> None:
        import zarr

        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        for leftover in self.path.rglob("*.partial"):  # temp files of a writer killed mid-write
            leftover.unlink()
        self.group = zarr.open_group(self.path, mode="a", zarr_format=3)
        self.commit = read_commit(self.path)
        self.arrays = {}
        for name, (row_shape, dtype) in array_specs(self.spec).items():
            self.arrays[name] = self._open_array(name, row_shape, dtype)
        self._truncate_to_commit()

    def _open_array(self, name: str, row_shape: tuple[int, ...], dtype: str):
        if name in self.group:
            arr = self.group[name]
            if tuple(arr.shape[1:]) != row_shape:
                raise CacheError(f"cache {self.cache}: {self.path.name}/{name} has rows {arr.shape[1:]}, expected {row_shape}")
            return arr
        rows = 1024 if name.startswith("videos/") else _chunk_rows(row_shape, dtype)
        kwargs = {}
        # Variable-length strings cannot be sharded; the small videos table needs no shards.
        if dtype != "str" and not name.startswith("videos/"):
            kwargs["shards"] = (rows * CHUNKS_PER_SHARD, *row_shape)
        fill = "" if dtype == "str" else 0
        return self.group.create_array(
            name, shape=(0, *row_shape), chunks=(rows, *row_shape), dtype=str if dtype == "str" else dtype,
            fill_value=fill, **kwargs,
        )

    def _truncate_to_commit(self) -> None:
        rows = self.commit["rows"]
        for name, arr in self.arrays.items():
            n = rows[table_of(name)]
            if arr.shape[0] != n:
                arr.resize((n, *arr.shape[1:]))
        captions = self.path / "captions.jsonl"
        if captions.exists():
            lines = captions.read_text().splitlines(keepends=True)
            if len(lines) != rows["text"]:  # rewrite atomically: committed lines must survive a crash
                tmp = captions.with_suffix(".jsonl.tmp")
                tmp.write_text("".join(lines[: rows["text"]]))
                os.replace(tmp, captions)

    @property
    def committed_videos(self) -> set[str]:
        """Names of the videos already committed in this part."""
        n = self.commit["rows"]["videos"]
        return set(self.arrays["videos/name"][:n].tolist()) if n else set()

    def _append(self, name: str, values: np.ndarray) -> None:
        arr = self.arrays[name]
        start = arr.shape[0]
        arr.resize((start + len(values), *arr.shape[1:]))
        if len(values):
            arr[start:] = values

    def append_video(self, rec: VideoRecord) -> None:
        """Append one whole video and commit it. Indices in `rec` are local to the video."""
        spec, rows = self.spec, self.commit["rows"]
        _check_record(self.cache, spec, rec)
        n_win = len(rec.window_start)
        n_img = 0 if rec.image_frame is None else len(rec.image_frame)
        n_cap = 0 if rec.caption_frame is None else len(rec.caption_frame)
        video_row = rows["videos"]
        self._append("windows/video_id", np.full(n_win, video_row, np.int32))
        self._append("windows/start", rec.window_start.astype(np.int32))
        self._append("windows/image_index", (rec.image_index + rows["image"]).astype(np.int32))
        self._append("windows/caption_index", (rec.caption_index + rows["text"]).astype(np.int32))
        self._append("windows/valid", rec.valid.astype(bool))
        for t in spec.sampling.video_frames if "video" in spec.dims else ():
            self._append(clip_array(t), rec.video[t].astype(np.float16))
        if "image" in spec.dims:
            self._append("frames/image", rec.image.astype(np.float16))
        if n_img:
            self._append("frames/image_frame", rec.image_frame.astype(np.int32))
        if "text" in spec.dims:
            self._append("frames/text", rec.text.astype(np.float16))
        if n_cap:
            self._append("frames/caption_frame", rec.caption_frame.astype(np.int32))
        self._append("targets/values", rec.targets.astype(np.float32))
        self._append("targets/mask", rec.target_mask.astype(bool))
        table = {
            "videos/name": rec.name, "videos/split": rec.split, "videos/n_frames": rec.n_frames, "videos/fps": rec.fps,
            "videos/width": rec.width, "videos/height": rec.height, "videos/image_offset": rows["image"],
            "videos/text_offset": rows["text"], "videos/window_offset": rows["windows"],
            "videos/frame_offset": rows["frames"],
        }
        for name, value in table.items():
            self._append(name, np.array([value], dtype=str if name in ("videos/name", "videos/split") else None))
        if rec.captions is not None:
            with open(self.path / "captions.jsonl", "a") as f:
                for frame, text in zip(rec.caption_frame.tolist(), rec.captions):
                    f.write(json.dumps({"video": rec.name, "frame": frame, "text": text}) + "\n")
        rows = {
            "videos": rows["videos"] + 1, "image": rows["image"] + n_img, "text": rows["text"] + n_cap,
            "windows": rows["windows"] + n_win, "frames": rows["frames"] + rec.n_frames,
        }
        failures = [f for f in self.commit["failures"] if f["video"] != rec.name]  # it failed before, not now
        self.commit = {**self.commit, "rows": rows, "failures": failures}
        write_json(self.path / "commit.json", self.commit)

    def record_failure(self, video: str, reason: str) -> None:
        """Log a video that could not be extracted; it stays in the part's failure list."""
        failures = [f for f in self.commit["failures"] if f["video"] != video]
        self.commit = {**self.commit, "failures": [*failures, {"video": video, "reason": reason}]}
        write_json(self.path / "commit.json", self.commit)

    def close(self) -> None:
        if not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_record(cache: Path, spec: CacheSpec, rec: VideoRecord) -> None:
    """Refuse a record whose shapes do not match the cache, naming the video."""
    plan, n_win = spec.sampling, len(rec.window_start)

    def need(cond: bool, what: str) -> None:
        if not cond:
            raise CacheError(f"cache {cache}: video {rec.name!r}: {what}")

    need(rec.image_index.shape == (n_win, plan.image_frames), f"image_index shape {rec.image_index.shape}")
    need(rec.caption_index.shape == (n_win, plan.captions), f"caption_index shape {rec.caption_index.shape}")
    need(rec.valid.shape == (n_win, plan.window), f"valid shape {rec.valid.shape}")
    k = len(spec.target_names)
    need(rec.targets.shape == (rec.n_frames, k), f"targets shape {rec.targets.shape}, expected {(rec.n_frames, k)}")
    need(rec.target_mask.shape == rec.targets.shape, "target_mask shape differs from targets")
    for role, feats, frames in (("image", rec.image, rec.image_frame), ("text", rec.text, rec.caption_frame)):
        if role in spec.dims:
            need(feats is not None and feats.ndim == 2 and feats.shape[1] == spec.dims[role],
                 f"{role} features must be [n, {spec.dims[role]}], got {None if feats is None else feats.shape}")
            need(frames is not None and len(frames) == len(feats), f"{role} rows and frame numbers differ in length")
            need(np.isfinite(feats).all(), f"{role} features contain NaN or Inf")
    if "video" in spec.dims:
        for t in plan.video_frames:
            v = rec.video.get(t)
            need(v is not None and v.shape == (n_win, t, spec.dims["video"]),
                 f"video clips for T={t} must be {(n_win, t, spec.dims['video'])}, got {None if v is None else v.shape}")
            need(np.isfinite(v).all(), f"video features (T={t}) contain NaN or Inf")
    if rec.captions is not None:
        need(rec.caption_frame is not None and len(rec.captions) == len(rec.caption_frame), "captions and caption frames differ")


def read_commit(part: Path) -> dict:
    """A part's commit.json (committed row counts and failures); an absent file means nothing committed."""
    path = part / "commit.json"
    empty = {"rows": {t: 0 for t in TABLES}, "failures": []}
    if not path.exists():
        return empty
    try:
        commit = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CacheError(f"part {part}: commit.json is corrupt ({e})") from None
    return {**empty, **commit, "rows": {**empty["rows"], **commit.get("rows", {})}}


def ensure_spec(cache: Path, spec: CacheSpec) -> CacheSpec:
    """Create cache.json, or check that an existing one agrees with `spec` (refusing if not)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "cache.json"
    # Write a complete temporary file, then link it into place: the link fails if another
    # writer got there first, and nobody ever sees a half-written cache.json.
    tmp = cache / f".cache.json.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(spec.to_dict(), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        tmp.unlink()
        existing = read_spec(cache)
        problems = existing.compatibility_problems(spec)
        if problems:
            raise CacheError(
                f"cache {cache}: refusing to append with a different setup:\n  - " + "\n  - ".join(problems)
                + "\nUse a new --out directory for a different encoder set or sampling plan."
            )
        return existing
    tmp.unlink()
    return spec


# ---- reading ---------------------------------------------------------------------------


@dataclass
class VideoTable:
    """One row per committed video, across all parts. Offsets are cache-global rows."""

    name: np.ndarray
    split: np.ndarray
    n_frames: np.ndarray
    fps: np.ndarray
    width: np.ndarray
    height: np.ndarray
    image_offset: np.ndarray
    text_offset: np.ndarray
    window_offset: np.ndarray
    frame_offset: np.ndarray

    def __len__(self) -> int:
        return len(self.name)


@dataclass
class CacheView:
    """All committed rows of every part, concatenated in memory with cache-global indices."""

    path: Path
    spec: CacheSpec
    videos: VideoTable
    window_video: np.ndarray  # [W] row of `videos`
    window_start: np.ndarray  # [W]
    image_index: np.ndarray  # [W, image_frames] rows of `image`
    caption_index: np.ndarray  # [W, captions] rows of `text`
    valid: np.ndarray  # [W, window]
    targets: np.ndarray  # [F, K]
    target_mask: np.ndarray  # [F, K]
    image_frame: np.ndarray  # [n_img]
    caption_frame: np.ndarray  # [n_cap]
    image: np.ndarray | None = None  # [n_img, Di] f16
    text: np.ndarray | None = None  # [n_cap, Dt] f16
    video: dict[int, np.ndarray] = field(default_factory=dict)  # T -> [W, T, Dv] f16
    failures: list[dict] = field(default_factory=list)
    captions: list[dict] | None = None

    @property
    def n_windows(self) -> int:
        return len(self.window_start)

    @property
    def modalities(self) -> tuple[str, ...]:
        return self.spec.modalities

    def windows_of(self, video_rows: np.ndarray) -> np.ndarray:
        """Window indices belonging to the given video rows."""
        return np.flatnonzero(np.isin(self.window_video, np.asarray(video_rows)))


def open_part(part: Path):
    """A part's Zarr group, read-only; a damaged part raises CacheError naming it."""
    import zarr

    try:
        return zarr.open_group(part, mode="r", zarr_format=3)
    except Exception as e:  # zarr raises several types for a damaged group
        raise CacheError(f"part {part} is not a readable Zarr group ({e})") from None


def open_cache(cache: str | Path, load_captions: bool = False) -> CacheView:
    """Read every committed row of every part of a cache into one in-memory view.

    Validates the schema version, the presence and row shapes of every array, and that
    committed rows exist; rows past a part's commit are ignored.
    """
    cache = Path(cache)
    spec = read_spec(cache)
    expected = array_specs(spec)
    pieces: dict[str, list[np.ndarray]] = {name: [] for name in expected}
    offsets = {t: 0 for t in TABLES}
    failures, captions = [], []
    for part in part_dirs(cache):
        commit = read_commit(part)
        rows = commit["rows"]
        failures += [{**f, "part": part.name} for f in commit["failures"]]
        if rows["videos"] == 0:
            continue
        group = open_part(part)
        for name, (row_shape, _) in expected.items():
            if name not in group:
                raise CacheError(f"cache {cache}: {part.name} is missing array {name}")
            arr = group[name]
            n = rows[table_of(name)]
            if tuple(arr.shape[1:]) != row_shape:
                raise CacheError(f"cache {cache}: {part.name}/{name} has rows of shape {arr.shape[1:]}, cache.json says {row_shape}")
            if arr.shape[0] < n:
                raise CacheError(f"cache {cache}: {part.name}/{name} has {arr.shape[0]} rows but {n} are committed")
            if name in ("videos/name", "videos/split"):  # zarr returns numpy StringDType
                values = np.array(arr[:n].tolist() if n else [], dtype=object)
            else:
                values = np.asarray(arr[:n]) if n else np.zeros((0, *row_shape), dtype=arr.dtype)
            pieces[name].append(_rebase(name, values, offsets))
        if load_captions and (part / "captions.jsonl").exists():
            lines = (part / "captions.jsonl").read_text().splitlines()[: rows["text"]]
            captions += [json.loads(line) for line in lines]
        for t in TABLES:
            offsets[t] += rows[t]

    def cat(name: str, row_shape=(), dtype="float32") -> np.ndarray:
        if pieces.get(name):
            return np.concatenate(pieces[name])
        return np.zeros((0, *row_shape), dtype=dtype)

    videos = VideoTable(**{n.split("/")[1]: cat(n, dtype=object if expected[n][1] == "str" else expected[n][1])
                           for n in TABLES["videos"]})
    videos.name = videos.name.astype(str)
    videos.split = videos.split.astype(str)
    return CacheView(
        path=cache,
        spec=spec,
        videos=videos,
        window_video=cat("windows/video_id", dtype="int32").astype(np.int64),
        window_start=cat("windows/start", dtype="int32").astype(np.int64),
        image_index=cat("windows/image_index", (spec.sampling.image_frames,), "int32").astype(np.int64),
        caption_index=cat("windows/caption_index", (spec.sampling.captions,), "int32").astype(np.int64),
        valid=cat("windows/valid", (spec.sampling.window,), "bool"),
        targets=cat("targets/values", (len(spec.target_names),)),
        target_mask=cat("targets/mask", (len(spec.target_names),), "bool"),
        image_frame=cat("frames/image_frame", dtype="int32").astype(np.int64),
        caption_frame=cat("frames/caption_frame", dtype="int32").astype(np.int64),
        image=cat("frames/image", (spec.dims.get("image", 0),), "float16") if "image" in spec.dims else None,
        text=cat("frames/text", (spec.dims.get("text", 0),), "float16") if "text" in spec.dims else None,
        video={t: cat(clip_array(t), (t, spec.dims["video"]), "float16") for t in spec.sampling.video_frames}
        if "video" in spec.dims else {},
        failures=failures,
        captions=captions if load_captions else None,
    )


def _rebase(name: str, values: np.ndarray, offsets: dict[str, int]) -> np.ndarray:
    """Turn part-global row references into cache-global ones."""
    shift = {
        "windows/video_id": "videos", "windows/image_index": "image", "windows/caption_index": "text",
        "videos/image_offset": "image", "videos/text_offset": "text", "videos/window_offset": "windows",
        "videos/frame_offset": "frames",
    }.get(name)
    return values + offsets[shift] if shift else values
