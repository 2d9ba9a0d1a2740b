"""The dataset adapter interface: which videos a dataset has, their per-frame targets, the caption prompt.

An adapter lists `VideoItem`s (name, source, split, annotation) and turns an item's
annotation into `Targets` aligned to the frames of its source: row f is frame f (0-based),
one column per target of its task (`fgvu.tasks`). Its `default_prompt` is what the captioner
is asked about each frame unless `--caption-prompt` says otherwise.
Annotations that are too short are padded with invalid rows, too long ones truncated, and
bad values masked, each with a warning in `Targets.warnings`; they never crash a run.
What listing the items left out (videos without annotations, annotations without videos) is
warned about once and kept in `notices()`, which the extraction summary prints.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.errors import FgvuError
from fgvu.tasks import get_task

SPLITS = ("train", "val", "test")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
# How many offending line numbers a warning lists before "...".
MAX_LISTED = 8
# How many names a notice lists before "... and N more".
MAX_NAMES = 10


class DatasetError(FgvuError):
    """A dataset that cannot be read: missing root, missing annotation, ambiguous layout."""


@dataclass
class VideoItem:
    """One labelled (or unlabelled) video of a dataset."""

    name: str  # unique in the dataset, e.g. "12-24-1920x1080_left"
    source: Path  # video file or frame folder; items may share a source (_left/_right)
    split: str  # "train" | "val" | "test"
    annotation: Path | None  # None: unlabelled
    half: str | None = None  # "left" | "right": the item sees only that half of each frame

    @property
    def input_kind(self) -> str:
        """What the encoders see of this item: "frame folder", "half frame" or "whole frame"."""
        if self.source.is_dir():
            return "frame folder"
        return "whole frame" if self.half is None else "half frame"


@dataclass
class Targets:
    """Per-frame targets [n, K] and their validity mask; masked values are 0."""

    values: np.ndarray
    mask: np.ndarray
    warnings: list[str] = field(default_factory=list)


class DatasetAdapter(ABC):
    """Lists a dataset's videos and reads their targets."""

    name: str
    task: str  # a key of fgvu.tasks.TASKS
    layout_help: str = ""  # the expected folder layout, shown when the root is missing
    # What the captioner is asked about each frame; adapters ask about what their task needs.
    default_prompt: str = "Describe this image briefly."

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.unannotated: list[str] = []  # videos found without an annotation, set by items()
        self.link_loops: list[str] = []  # folders find_videos did not enter twice (`find_videos` notes)

    @abstractmethod
    def items(self) -> list[VideoItem]:
        """Every video item, sorted by name. A missing root raises DatasetError."""

    @abstractmethod
    def load_targets(self, item: VideoItem, n_frames: int) -> Targets:
        """Targets for the `n_frames` frames of `item`'s source, reconciled and masked."""

    def frame_count(self, item: VideoItem) -> int | None:
        """How many frames `item` has when its source cannot say (a frame folder with gaps at its end);
        None lets the source count them. Runs in the decode thread, once per source."""
        return None

    def audio_source(self, item: VideoItem) -> Path:
        """The file whose soundtrack goes with `item` (its own source; a frame folder has none)."""
        return Path(item.source)

    def notices(self) -> list[str]:
        """What the last items() left out and why, one line each ("3 videos have no annotations: ...")."""
        lines = list(self.link_loops)
        if self.unannotated:
            lines.append(f"{self.name}: {len(self.unannotated)} videos have no annotations and are not extracted: "
                         + listed(self.unannotated))
        return lines

    def unlabelled(self, n_frames: int) -> Targets:
        """All-masked targets for `n_frames` frames of an item without annotation, one column per task target."""
        k = len(get_task(self.task).targets)
        return Targets(np.zeros((n_frames, k), np.float32), np.zeros((n_frames, k), bool), [])

    def check_root(self) -> None:
        """DatasetError saying where to put the data when the root folder is missing."""
        if self.root.is_dir():
            return
        raise DatasetError(
            f"dataset {self.name!r} not found at {self.root}. Put it in data/{self.name} "
            f"(or $FGVU_DATA/{self.name}, or pass --root). Expected layout:\n{self.layout_help.rstrip()}"
        )


ADAPTERS: dict[str, type[DatasetAdapter]] = {}


def register_adapter(cls: type[DatasetAdapter]) -> type[DatasetAdapter]:
    """Class decorator: make an adapter available to `build_adapter` under `cls.name`."""
    ADAPTERS[cls.name] = cls
    return cls


def build_adapter(name: str, root: str | os.PathLike, **options) -> DatasetAdapter:
    """The adapter `name` over `root`, with adapter-specific options (None values dropped)."""
    if name not in ADAPTERS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(sorted(ADAPTERS))}")
    cls = ADAPTERS[name]
    options = {k: v for k, v in options.items() if v is not None}
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "root"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise DatasetError(f"dataset {name!r} has no option {', '.join(unknown)}; "
                           f"its options: {', '.join(sorted(accepted)) or 'none'}")
    return cls(root, **options)


# ---- helpers shared by the adapters -------------------------------------------------------


def find_videos(root: Path, skip_dirs: tuple[str, ...] = (), notes: list[str] | None = None) -> list[Path]:
    """Video files anywhere under `root`, sorted; folders named in `skip_dirs` are not entered.

    Symbolic links to folders are followed, each real folder once: a link to a folder already
    searched (a loop back up, or a second way into the same folder) is not entered again and is
    noted in `notes`.
    """
    found, seen = [], {}
    for folder, dirs, files in os.walk(root, followlinks=True):
        here = os.path.realpath(folder)
        seen.setdefault(here, folder)
        kept = []
        names = [d for d in dirs if d not in skip_dirs and not d.startswith(".")]
        # real folders before links, so that a link (not the folder) is what is left out
        for d in sorted(names, key=lambda d: (os.path.islink(os.path.join(folder, d)), d)):
            path = os.path.join(folder, d)
            real = os.path.realpath(path)
            if real in seen:
                loop = here == real or here.startswith(real + os.sep)
                note = (f"{path}: a symbolic link loop back to {seen[real]}; not entered again" if loop else
                        f"{path}: links to {seen[real]}, which is searched already; not entered twice")
                if notes is not None and note not in notes:
                    notes.append(note)
                continue
            seen[real] = path
            kept.append(d)
        dirs[:] = kept
        found.extend(Path(folder) / f for f in files if f.lower().endswith(VIDEO_SUFFIXES) and not f.startswith("."))
    return sorted(found)


def listed(names: list[str]) -> str:
    """'a, b, c' or 'a, b, ... and 7 more': names for a one-line notice."""
    shown = ", ".join(names[:MAX_NAMES])
    return shown + (f", ... and {len(names) - MAX_NAMES} more" if len(names) > MAX_NAMES else "")


def reconcile(values: np.ndarray, mask: np.ndarray, n_frames: int, where: Path, warns: list[str]) -> Targets:
    """Truncate or pad (as invalid) per-frame targets to `n_frames` rows, warning with both counts."""
    n = len(values)
    if n < n_frames:
        warns.append(f"{where}: {n} annotated frames for {n_frames} video frames; the last {n_frames - n} are masked")
        pad = n_frames - n
        values = np.concatenate([values, np.zeros((pad, values.shape[1]), np.float32)])
        mask = np.concatenate([mask, np.zeros((pad, mask.shape[1]), bool)])
    elif n > n_frames:
        warns.append(f"{where}: {n} annotated frames for {n_frames} video frames; the last {n - n_frames} are dropped")
        values, mask = values[:n_frames], mask[:n_frames]
    values = np.where(mask, values, 0.0).astype(np.float32)
    return Targets(values=values, mask=mask.astype(bool), warnings=warns)


def mask_frames(targets: Targets, frames) -> Targets:
    """`targets` with every target of `frames` masked (and zeroed): frames the source has no image for."""
    frames = np.asarray(frames, dtype=np.int64)
    if not frames.size:
        return targets
    values, mask = targets.values.copy(), targets.mask.copy()
    values[frames], mask[frames] = 0.0, False
    return Targets(values=values, mask=mask, warnings=list(targets.warnings))


def describe_lines(kind: str, lines: list[int], where: Path) -> str:
    """'FILE: 3 lines with non-numeric values masked (line 4, 7, 9)'."""
    listed = ", ".join(str(x) for x in lines[:MAX_LISTED]) + (", ..." if len(lines) > MAX_LISTED else "")
    return f"{where}: {len(lines)} line{'s' if len(lines) != 1 else ''} with {kind} masked (line {listed})"


def parse_float(text: str) -> float | None:
    """The number in `text` (NaN and inf included), or None when it is not a number."""
    try:
        return float(text.strip())
    except ValueError:
        return None


def read_text_lines(path: Path | None) -> list[str]:
    """The lines of a text file, or DatasetError naming it when it is missing or unreadable."""
    if path is None or not Path(path).is_file():
        raise DatasetError(f"annotation file missing: {path}")
    try:
        return Path(path).read_text(encoding="utf-8-sig", errors="replace").splitlines()
    except OSError as e:
        raise DatasetError(f"annotation file unreadable: {path} ({e})") from None


def split_cells(line: str) -> list[str]:
    """The stripped cells of one CSV line; a quoted cell ("clip, take 2") keeps its commas and quotes' meaning."""
    if '"' not in line:  # the common case, and much faster than a csv reader per line
        return [cell.strip() for cell in line.split(",")]
    # one line at a time, so a stray quote cannot swallow the lines after it
    return [cell.strip() for cell in next(csv.reader([line], skipinitialspace=True), [""])]


def read_rows(path: Path | None) -> tuple[list[str] | None, list[list[str]], int]:
    """(header or None, data rows, file line number of the first data row) of a CSV/TXT file.

    Cells follow CSV quoting (`split_cells`). The first row is a header when any of its cells is
    not a number. Trailing blank lines are dropped; inner ones stay rows (one frame each). A
    missing file raises DatasetError naming it.
    """
    lines = read_text_lines(path)
    while lines and not lines[-1].strip():
        lines.pop()
    rows = [split_cells(line) for line in lines]
    if rows and any(parse_float(cell) is None for cell in rows[0]):
        return [c.lower() for c in rows[0]], rows[1:], 2
    return None, rows, 1


def parse_va_rows(rows: list[list[str]], first_line: int, where: Path, warns: list[str],
                  invalid: float = -5.0) -> tuple[np.ndarray, np.ndarray]:
    """Valence/arousal rows -> values [n,2], mask [n,2].

    `invalid` (-5 in Aff-Wild2) masks a value silently. Non-numeric, blank or wrongly sized lines,
    NaN/inf and values outside [-1, 1] are masked and reported in `warns` by line number.
    """
    n = len(rows)
    values = np.zeros((n, 2), np.float32)
    mask = np.zeros((n, 2), bool)
    bad_text, non_finite, out_of_range = [], [], []
    for i, row in enumerate(rows):
        line = first_line + i
        numbers = [parse_float(c) for c in row] if len(row) == 2 else [None]
        if any(v is None for v in numbers):
            bad_text.append(line)
            continue
        for k, v in enumerate(numbers):
            if v == invalid:
                continue
            if not math.isfinite(v):
                non_finite.append(line)
            elif not -1.0 <= v <= 1.0:
                out_of_range.append(line)
            else:
                values[i, k], mask[i, k] = v, True
    for kind, lines in (("non-numeric, blank or malformed values", bad_text), ("NaN or infinite values", non_finite),
                        ("values outside [-1, 1]", out_of_range)):
        if lines:
            warns.append(describe_lines(kind, sorted(set(lines)), where))
    return values, mask


def parse_label_rows(labels: list[str], frames: list[int] | None, lines: list[int], where: Path,
                     warns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Binary per-frame labels -> values [n,1], mask [n,1].

    `frames` (0-based frame numbers, one per row) places each label; frames that no row
    names are masked. Labels other than 0/1 are masked and reported by their file `lines`.
    """
    n = (max(frames) + 1 if frames else 0) if frames is not None else len(labels)
    values = np.zeros((n, 1), np.float32)
    mask = np.zeros((n, 1), bool)
    bad = []
    for i, text in enumerate(labels):
        v = parse_float(text)
        if v not in (0.0, 1.0):
            bad.append(lines[i])
            continue
        row = frames[i] if frames is not None else i
        values[row, 0], mask[row, 0] = v, True
    if bad:
        warns.append(describe_lines("labels other than 0/1", bad, where))
    if frames is not None:
        unnamed = n - len(set(frames))
        if unnamed:
            warns.append(f"{where}: {unnamed} of {n} frames have no row in the frame column; they are masked")
    return values, mask


LABEL_COLUMNS = ("label", "labels", "violence", "violent", "class", "y")
FRAME_COLUMNS = ("frame", "frames", "frame_id", "frame_idx", "frame_index", "frame_number", "frame_num",
                 "frameno", "frame number", "frame no", "index", "idx")


def read_label_table(path: Path, warns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame 0/1 labels of a CSV -> values [n,1], mask [n,1].

    Takes the label column by name (`Label`, `label`, `violence`, any case) or, without a
    header, the last column. An optional frame-number column (`Frame`, `frame_id`, ... or the
    first of two headerless columns) places each label; numbering is 0-based when frame 0
    appears, else 1-based.
    """
    header, rows, first_line = read_rows(path)
    if header is not None:
        label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
        frame_col = next((header.index(c) for c in FRAME_COLUMNS if c in header), None)
        if label_col is None:
            others = [i for i in range(len(header)) if i != frame_col]
            if len(others) != 1:
                raise DatasetError(f"{path}: no label column (expected one of {', '.join(LABEL_COLUMNS)}; "
                                   f"found {', '.join(header)})")
            label_col = others[0]
    else:
        width = max((len(r) for r in rows), default=1)
        if width > 2:
            raise DatasetError(f"{path}: {width} columns without a header; expected `Label` or `Frame,Label`")
        label_col, frame_col = width - 1, (0 if width == 2 else None)
    labels, frames, lines, dropped = [], [] if frame_col is not None else None, [], []
    for i, row in enumerate(rows):
        cells_needed = max(label_col, frame_col or 0) + 1
        if len(row) < cells_needed:
            dropped.append(first_line + i)
            continue
        if frames is not None:
            f = parse_float(row[frame_col])
            if f is None or not math.isfinite(f) or f < 0 or f != int(f):
                dropped.append(first_line + i)
                continue
            frames.append(int(f))
        labels.append(row[label_col])
        lines.append(first_line + i)
    if dropped:
        warns.append(describe_lines("missing cells or bad frame numbers", dropped, path))
    if frames is not None and frames and 0 not in frames:
        frames = [f - 1 for f in frames]  # 1-based numbering
    return parse_label_rows(labels, frames, lines, path, warns)
