"""What `fgvu predict` writes for each video, and the summary line it prints.

    OUT/<video>.csv             one row per frame: frame,time_s,<the task's columns>
    OUT/<video>.timeline.png    the predictions over time, with thumbnails
    OUT/<video>.events.csv      tasks with an event column (violence): the predicted segments
    --overlay                   the video with the predictions drawn on every frame
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvu.inference.events import events, write_events
from fgvu.tasks import get_task


def output_paths(out: Path, name: str) -> dict[str, Path]:
    """The per-video files under `out` (a name with folders, as --videos gives, keeps them)."""
    base = Path(out) / name
    return {"csv": base.with_name(base.name + ".csv"), "timeline": base.with_name(base.name + ".timeline.png"),
            "events": base.with_name(base.name + ".events.csv")}


def summary_line(prediction) -> str:
    """'clip: 250 frames, 8.3 s; valence mean +0.21 (-0.30..+0.62); ...' or, for events, their count and share."""
    task = get_task(prediction.task)
    parts = [f"{prediction.name}: {prediction.n_frames} frames, {prediction.duration_s:.1f} s"]
    for name in prediction.columns:
        values = prediction.column(name)
        if name == task.event_column:
            found = events(prediction) or []
            parts.append(f"{len(found)} segment{'s' if len(found) != 1 else ''} with {name} 1 "
                         f"({float(np.mean(values >= 0.5)):.0%} of frames)")
        else:
            parts.append(f"{name} mean {values.mean():+.2f} ({values.min():+.2f}..{values.max():+.2f})")
    return "; ".join(parts)


def write_outputs(prediction, out: str | Path, thumbnails: int = 6, overlay: str | Path | None = None) -> dict:
    """Write the CSV, the timeline (thumbnails read from `prediction.source`), the events and the overlay."""
    from fgvu.inference.timeline import read_thumbnails, write_timeline

    paths = output_paths(Path(out), prediction.name)
    written = {"csv": prediction.to_csv(paths["csv"])}
    thumbs = []
    if thumbnails and prediction.source is not None and prediction.size is not None:
        thumbs = read_thumbnails(prediction.source, prediction.n_frames, prediction.fps, thumbnails, prediction.size)
    written["timeline"] = write_timeline(prediction, paths["timeline"], thumbs)
    event_file = write_events(prediction, paths["events"])
    if event_file is not None:
        written["events"] = event_file
    if overlay is not None:
        from fgvu.inference.overlay import write_overlay

        written["overlay"] = write_overlay(prediction.source, prediction, overlay)
    return written
