"""One video's predictions: the per-frame table, the per-step outputs behind it, and its CSV.

The per-frame table has one row per frame of the video: `frame` (0-based), `time_s`
(frame / fps) and the task's `prediction_columns` (valence, arousal; or p_violent, label).
`fgvu predict` and `fgvu stream` write it as the same CSV.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.errors import FgvuError
from fgvu.tasks import get_task


class PredictionError(FgvuError):
    """A prediction table that cannot be read back (missing file, wrong header, bad rows)."""


@dataclass
class StepOutputs:
    """The model's per-step values of one video's windows, before frame-level averaging.

    `values[w, k]` is the task's step value (valence/arousal, or P(violent)) of step k of window w,
    which sits on frame `frames[w, k]`; `valid[w, k]` is False where that frame is padding.
    """

    window_start: np.ndarray  # [W]
    frames: np.ndarray  # [W, S]
    values: np.ndarray  # [W, S, V]
    valid: np.ndarray  # [W, S]


@dataclass
class VideoPrediction:
    """Frame-level predictions of one video, with the per-step outputs they come from."""

    name: str
    task: str
    fps: float
    values: np.ndarray  # [n_frames, C], the task's prediction columns
    steps: StepOutputs | None = None
    source: Path | None = None
    size: tuple[int, int] | None = None  # (width, height) of the video
    extra: dict = field(default_factory=dict)  # anything the producer wants to report (stream statistics)

    @property
    def columns(self) -> tuple[str, ...]:
        return get_task(self.task).prediction_columns

    @property
    def n_frames(self) -> int:
        return len(self.values)

    @property
    def frame(self) -> np.ndarray:
        return np.arange(self.n_frames, dtype=np.int64)

    @property
    def time_s(self) -> np.ndarray:
        return self.frame / self.fps

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    def column(self, name: str) -> np.ndarray:
        """The per-frame values of one prediction column ("valence", "p_violent", ...)."""
        if name not in self.columns:
            raise KeyError(f"{name!r} is not a prediction column of the {self.task} task; it has {self.columns}")
        return self.values[:, self.columns.index(name)]

    def table(self) -> dict[str, np.ndarray]:
        """The per-frame table as columns: frame, time_s and the task's prediction columns."""
        return {"frame": self.frame, "time_s": self.time_s, **{c: self.column(c) for c in self.columns}}

    def to_csv(self, path: str | Path) -> Path:
        """Write the per-frame table: `frame,time_s,<columns>`, one row per frame."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with CsvRows(path, self.task) as rows:
            rows.write(self.frame, self.values, self.fps)
        return path


class CsvRows:
    """The per-frame CSV written row by row (a stream appends as it predicts); flushed after each write."""

    def __init__(self, path: Path, task: str):
        task_entry = get_task(task)
        self.path, self.columns = Path(path), task_entry.prediction_columns
        self._integer = [c == task_entry.event_column for c in self.columns]
        self._file = None

    def __enter__(self) -> "CsvRows":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(["frame", "time_s", *self.columns])
        return self

    def write(self, frames: np.ndarray, values: np.ndarray, fps: float) -> None:
        for f, row in zip(np.asarray(frames).tolist(), np.asarray(values, np.float64).tolist()):
            cells = [str(int(v)) if integer else f"{v:.6f}" for v, integer in zip(row, self._integer)]
            self._writer.writerow([f, f"{f / fps:.4f}", *cells])
        self._file.flush()

    def __exit__(self, *exc) -> None:
        self._file.close()


def read_csv(path: str | Path, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(frames [N], values [N, C]) of a per-frame CSV written by `to_csv` or a stream."""
    path = Path(path)
    columns = get_task(task).prediction_columns
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise PredictionError(f"{path}: cannot read it ({e.strerror})") from None
    expected = ["frame", "time_s", *columns]
    if not rows or rows[0] != expected:
        raise PredictionError(f"{path}: expected the header {','.join(expected)}")
    try:
        frames = np.array([int(r[0]) for r in rows[1:]], np.int64)
        values = np.array([[float(x) for x in r[2:]] for r in rows[1:]], np.float64).reshape(-1, len(columns))
    except (ValueError, IndexError) as e:
        raise PredictionError(f"{path}: a row is not `frame,time_s,{','.join(columns)}` ({e})") from None
    return frames, values
