"""Events of a per-frame 0/1 prediction column: the start and end of each run of 1s (violent segments).

A task with an `event_column` (violence: `label`) gets a per-video event list. An event covers
frames `start_frame..end_frame` (inclusive); its times are `start_frame / fps` and
`(end_frame + 1) / fps`, so back-to-back frames tile the time axis without gaps.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.tasks import get_task

EVENT_FIELDS = ("event", "start_frame", "end_frame", "start_s", "end_s", "duration_s", "mean_p", "max_p")


@dataclass(frozen=True)
class Event:
    """One run of predicted 1s, with the mean and max of the task's first column (P(violent)) over it."""

    start_frame: int
    end_frame: int  # inclusive
    start_s: float
    end_s: float
    mean_p: float
    max_p: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def segments(labels: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) frame of every run of nonzero values, in order: [0,1,1,0,1] -> [(1, 2), (4, 4)]."""
    on = np.asarray(labels).astype(bool).astype(np.int8)
    edges = np.diff(np.concatenate([[0], on, [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))


def events(prediction) -> list[Event] | None:
    """The events of a VideoPrediction, or None when its task has no event column."""
    task = get_task(prediction.task)
    if task.event_column is None:
        return None
    labels = prediction.column(task.event_column)
    score = prediction.values[:, 0]
    fps = prediction.fps
    return [Event(a, b, a / fps, (b + 1) / fps, float(score[a:b + 1].mean()), float(score[a:b + 1].max()))
            for a, b in segments(labels)]


def write_events(prediction, path: str | Path) -> Path | None:
    """The event list as CSV (`EVENT_FIELDS`, one row per event); None when the task has no events."""
    found = events(prediction)
    if found is None:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(EVENT_FIELDS)
        for i, e in enumerate(found):
            writer.writerow([i, e.start_frame, e.end_frame, f"{e.start_s:.4f}", f"{e.end_s:.4f}",
                             f"{e.duration_s:.4f}", f"{e.mean_p:.4f}", f"{e.max_p:.4f}"])
    return path
