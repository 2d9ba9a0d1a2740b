"""Any folder of videos with labels, for data that follows no benchmark layout.

Labels come from either

- one CSV of per-video labels (`labels=PATH`, default `ROOT/labels.csv`) with a header:
  `video,label` (0/1: violence) or `video,valence,arousal` (va), and optionally a `split`
  column. Each video's label is broadcast to all its frames. `video` may be a file name, a
  path relative to ROOT, with or without its suffix.
- or one per-frame CSV per video, next to it (`clip.mp4` + `clip.csv`) or in
  `ROOT/annotations/` (same relative path, or just the name): a `label` column (violence) or
  `valence,arousal` columns (va), an optional frame-number column.

The task is inferred (labels in {0,1} -> violence; two columns valence,arousal -> va) unless
`task=` names one of `fgvu.tasks.TASKS`, whose entry gives the target columns and their valid
range. Splits: the `split` column, else a top folder named train/val/test
(training/validation/testing), else a deterministic `val_fraction` of the videos (chosen by
a hash of the name) is "val" and the rest "train". Videos without labels are skipped with a
warning (`unannotated` lists them), and so are rows of the labels CSV that name no video
(`orphans`); both are in the extraction summary (`notices`). The labels CSV follows CSV
quoting, so `"clip, take 2.mp4",1` names one video.

A folder with no labels at all (no labels CSV, no per-frame CSV) is read unlabelled when `task=`
names its task: every video is an item of the "test" split whose targets are all masked, ready
for `fgvu predict --split test`.
"""

from __future__ import annotations

import warnings
import zlib
from pathlib import Path

import numpy as np

from fgvu.tasks import TASKS, get_task

from .base import (
    FRAME_COLUMNS,
    LABEL_COLUMNS,
    VIDEO_SUFFIXES,
    DatasetAdapter,
    DatasetError,
    Targets,
    VideoItem,
    find_videos,
    listed,
    parse_float,
    parse_va_rows,
    read_label_table,
    read_rows,
    reconcile,
    register_adapter,
)

VIDEO_COLUMNS = ("video", "name", "file", "filename", "path", "id", "video_id")
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}


@register_adapter
class FolderAdapter(DatasetAdapter):
    """A folder of videos plus a per-video labels CSV or per-frame CSVs."""

    name = "folder"
    default_prompt = "Describe what is happening in this image."
    layout_help = """\
  ROOT/
    <any/sub/folders>/<video>.mp4 ...   (any video format FFmpeg reads)
    labels.csv                          ("video,label" with 0/1, or "video,valence,arousal"; optional "split")
  or, instead of labels.csv, one per-frame CSV per video:
    <video>.csv next to it, or annotations/<video>.csv ("label" or "valence,arousal" columns)"""

    def __init__(self, root, labels: str | Path | None = None, task: str | None = None, val_fraction: float = 0.2):
        super().__init__(root)
        if task is not None and task not in TASKS:
            raise DatasetError(f"folder: task must be one of {', '.join(TASKS)}, got {task!r}")
        if not 0.0 <= val_fraction < 1.0:
            raise DatasetError(f"folder: val_fraction must be in [0, 1), got {val_fraction}")
        self.labels = Path(labels) if labels else None
        self.val_fraction = val_fraction
        self._task = task
        self._per_video: dict[str, tuple[np.ndarray, np.ndarray, str | None]] | None = None
        self.orphans: list[str] = []  # labels-CSV rows that name no video

    # ---- discovery ---------------------------------------------------------------------

    def _labels_file(self) -> Path | None:
        if self.labels is not None:
            if not self.labels.is_file():
                raise DatasetError(f"folder: labels file not found: {self.labels}")
            return self.labels
        default = self.root / "labels.csv"
        return default if default.is_file() else None

    def _videos(self) -> dict[str, Path]:
        """name (path relative to the root, without suffix) -> video file."""
        self.check_root()
        videos = {}
        for path in find_videos(self.root, skip_dirs=("annotations",), notes=self.link_loops):
            name = path.relative_to(self.root).with_suffix("").as_posix()
            if name in videos:
                raise DatasetError(f"folder: two videos named {name!r}: {videos[name]} and {path}")
            videos[name] = path
        if not videos:
            raise DatasetError(f"folder: no video files under {self.root}. Expected layout:\n{self.layout_help}")
        return videos

    @property
    def task(self) -> str:
        """'violence' or 'va', from the `task` option or the labels themselves."""
        if self._task is None:
            labels = self._labels_file()
            if labels is not None:
                self._read_per_video(labels)
            else:
                first = next((a for a in map(self._frame_annotation, self._videos().values()) if a), None)
                if first is None:
                    raise DatasetError(f"folder: no labels.csv and no per-frame CSVs under {self.root}; pass "
                                       f"--task {'|'.join(TASKS)} to read the videos without labels. "
                                       f"Expected layout:\n{self.layout_help}")
                self._task = _frame_table_task(first)
        return self._task

    def items(self) -> list[VideoItem]:
        videos = self._videos()
        labels = self._labels_file()
        per_video = self._read_per_video(labels) if labels is not None else None
        items, self.unannotated, self.orphans = [], [], []
        for name, path in sorted(videos.items()):
            if per_video is not None:
                key = self._match(name, per_video)
                annotation, split = (labels, per_video[key][2]) if key is not None else (None, None)
            else:
                annotation, split = self._frame_annotation(path), None
            if annotation is None:
                self.unannotated.append(name)
                continue
            items.append(VideoItem(name, path, split or self._split(name), annotation))
        if not items and labels is None and self._task is not None:
            # no labels anywhere and the task was named: every video unlabelled, targets all masked
            self.skipped = []
            return [VideoItem(name, path, "test", None) for name, path in sorted(videos.items())]
        if per_video is not None:
            names = set(videos) | {n.rsplit("/", 1)[-1] for n in videos}
            self.orphans = sorted(set(per_video) - names)
        for notice in self.notices():
            warnings.warn(notice, stacklevel=2)
        if not items:
            hint = f" (pass --task {'|'.join(TASKS)} to read them without labels)" if labels is None else ""
            raise DatasetError(f"folder: none of the {len(videos)} videos under {self.root} has labels{hint}. "
                               f"Expected layout:\n{self.layout_help}")
        self._assign_hashed_splits(items)
        return items

    def _split(self, name: str) -> str | None:
        """The split a top folder names (train/, val/, test/, ...), else None (hashed later)."""
        top = name.split("/")[0].lower() if "/" in name else ""
        return SPLIT_NAMES.get(top)

    def _assign_hashed_splits(self, items: list[VideoItem]) -> None:
        """Items without a split: the val_fraction with the smallest name hashes become val."""
        open_items = [it for it in items if it.split is None]
        ranked = sorted(open_items, key=lambda it: (zlib.crc32(it.name.encode()), it.name))
        n_val = round(len(ranked) * self.val_fraction)
        if self.val_fraction > 0 and len(ranked) >= 2:
            n_val = max(n_val, 1)
        for k, it in enumerate(ranked):
            it.split = "val" if k < n_val else "train"

    @staticmethod
    def _match(name: str, per_video: dict) -> str | None:
        """The labels-CSV key naming video `name` (relative path or bare name, no suffix)."""
        if name in per_video:
            return name
        base = name.rsplit("/", 1)[-1]
        return base if base in per_video else None

    def notices(self) -> list[str]:
        lines = list(self.link_loops)
        if self.unannotated:
            lines.append(f"folder: {len(self.unannotated)} videos have no labels and are skipped: "
                         + listed(self.unannotated))
        if self.orphans:
            lines.append(f"folder: {len(self.orphans)} rows of the labels CSV name no video: " + listed(self.orphans))
        return lines

    def _frame_annotation(self, video: Path) -> Path | None:
        """The per-frame CSV of `video`, if there is one."""
        rel = video.relative_to(self.root).with_suffix(".csv")
        for candidate in (self.root / rel, self.root / "annotations" / rel, self.root / "annotations" / rel.name):
            if candidate.is_file():
                return candidate
        return None

    # ---- per-video labels ----------------------------------------------------------------

    def _read_per_video(self, path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, str | None]]:
        """video key -> (values [K], mask [K], split or None); infers the task."""
        if self._per_video is not None:
            return self._per_video
        header, rows, first_line = read_rows(path)
        if header is None:
            raise DatasetError(f"{path}: needs a header, e.g. 'video,label' or 'video,valence,arousal'")
        video_col = next((header.index(c) for c in VIDEO_COLUMNS if c in header), 0)
        split_col = header.index("split") if "split" in header else None
        value_cols = [i for i in range(len(header)) if i not in (video_col, split_col)]
        if "valence" in header and "arousal" in header:
            value_cols, task = [header.index("valence"), header.index("arousal")], "va"
        elif len(value_cols) == 1:
            task = "violence"
        elif len(value_cols) == 2:
            task = "va"
        else:
            raise DatasetError(f"{path}: expected 'video,label' or 'video,valence,arousal', got {','.join(header)}")
        if self._task is not None and self._task != task:
            raise DatasetError(f"{path}: labels look like task {task!r} but task={self._task!r} was given")
        self._task = task
        table: dict[str, tuple[np.ndarray, np.ndarray, str | None]] = {}
        bad = []
        for i, row in enumerate(rows):
            if len(row) <= max(video_col, *value_cols):
                bad.append(first_line + i)
                continue
            key = row[video_col]
            if key.lower().endswith(VIDEO_SUFFIXES):
                key = key.rsplit(".", 1)[0]
            numbers = [parse_float(row[c]) for c in value_cols]
            values = np.array([np.nan if v is None else v for v in numbers], np.float32)
            ok = get_task(task).valid_values(values)  # NaN is never valid
            if not ok.all():
                bad.append(first_line + i)
            split_text = row[split_col].lower() if split_col is not None and len(row) > split_col else ""
            split = SPLIT_NAMES.get(split_text)
            if split_text and split is None:
                bad.append(first_line + i)  # an empty cell just leaves the split to the hash
            table[key] = (np.where(ok, values, 0.0).astype(np.float32), ok, split)
        if bad:
            warnings.warn(f"{path}: {len(bad)} rows with bad labels or splits are masked or hashed "
                          f"(line {', '.join(map(str, bad[:8]))})", stacklevel=3)
        self._per_video = table
        return table

    # ---- targets ---------------------------------------------------------------------------

    def load_targets(self, item: VideoItem, n_frames: int) -> Targets:
        """Per-video labels broadcast to every frame, or the per-frame CSV reconciled."""
        if item.annotation is None:
            return self.unlabelled(n_frames)
        labels = self._labels_file()
        if labels is not None and Path(item.annotation) == labels:
            per_video = self._read_per_video(labels)
            key = self._match(item.name, per_video)
            if key is None:
                raise DatasetError(f"{labels}: no row for video {item.name!r}")
            values, mask, _ = per_video[key]
            return Targets(np.repeat(values[None], n_frames, 0), np.repeat(mask[None], n_frames, 0), [])
        warns: list[str] = []
        if self.task == "violence":
            values, mask = read_label_table(item.annotation, warns)
        else:
            values, mask = _read_va_table(item.annotation, warns)
        return reconcile(values, mask, n_frames, item.annotation, warns)


def _frame_table_task(path: Path) -> str:
    """'va' or 'violence' from the columns of one per-frame CSV."""
    header, rows, _ = read_rows(path)
    if header is not None:
        if "valence" in header and "arousal" in header:
            return "va"
        if any(c in header for c in LABEL_COLUMNS):
            return "violence"
        columns = [c for c in header if c not in FRAME_COLUMNS]
    else:
        columns = list(range(max((len(r) for r in rows), default=0)))
    if len(columns) == 1:
        return "violence"
    if len(columns) == 2:
        # Headerless "frame,label" has integer frame numbers and 0/1 labels.
        firsts = [parse_float(r[0]) for r in rows if len(r) == 2]
        seconds = [parse_float(r[1]) for r in rows if len(r) == 2]
        if header is None and seconds and all(v in (0.0, 1.0) for v in seconds) and all(
                v is not None and np.isfinite(v) and v == int(v) for v in firsts):
            return "violence"
        return "va"
    raise DatasetError(f"{path}: cannot tell the task from its columns; expected 'label' or 'valence,arousal'")


def _read_va_table(path: Path, warns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame valence,arousal rows (an optional frame column is ignored; rows are frames)."""
    header, rows, first_line = read_rows(path)
    if header is not None and "valence" in header and "arousal" in header:
        cols = [header.index("valence"), header.index("arousal")]
    elif header is not None:
        cols = [i for i, c in enumerate(header) if c not in FRAME_COLUMNS][:2]
    else:
        width = max((len(r) for r in rows), default=2)
        cols = [width - 2, width - 1]
    picked = [[row[c] if c < len(row) else "" for c in cols] for row in rows]
    return parse_va_rows(picked, first_line, path, warns)

