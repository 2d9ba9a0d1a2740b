"""The timeline picture of one video: its predictions over time, with thumbnails along the time axis.

The upper panel draws every prediction column of the task over time (the event column as
shaded spans: violent segments); the lower strip shows a few frames of the video, each centred
on the time it was taken from, so a peak in the curve can be matched with what was on screen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvu.inference.events import events
from fgvu.tasks import get_task

WIDTH_IN, PLOT_IN, STRIP_IN = 10.0, 2.4, 1.0  # figure width, plot and thumbnail-strip heights (inches)
LEFT, RIGHT = 0.07, 0.98  # horizontal extent of both panels, as fractions of the figure width
THUMB_HEIGHT = 96  # pixels of each decoded thumbnail


def thumbnail_frames(n_frames: int, fps: float, count: int, aspect: float) -> np.ndarray:
    """Frame numbers of at most `count` thumbnails of aspect `aspect` (w/h) that fit the strip without
    overlapping, centred in equal slices of the time axis."""
    if count <= 0 or n_frames <= 0:
        return np.zeros(0, np.int64)
    fits = int(((RIGHT - LEFT) * WIDTH_IN) // (1.05 * aspect * 0.9 * STRIP_IN))
    count = max(1, min(count, fits, n_frames))
    centres = (np.arange(count) + 0.5) / count * (n_frames / fps)
    return np.unique(np.clip(np.round(centres * fps).astype(np.int64), 0, n_frames - 1))


def read_thumbnails(source: str | Path, n_frames: int, fps: float, count: int, size: tuple[int, int]):
    """[(frame, HxWx3 uint8)] decoded from `source` (size is the video's (width, height))."""
    from fgvu.extract.video_source import open_video

    width, height = size
    aspect = width / height if height else 1.0
    wanted = thumbnail_frames(n_frames, fps, count, aspect)
    if not len(wanted):
        return []
    thumb = (THUMB_HEIGHT, max(2, round(THUMB_HEIGHT * aspect)))
    return list(open_video(source).frames(wanted, size=thumb))


def write_timeline(prediction, path: str | Path, thumbnails=()) -> Path:
    """Draw `prediction` (a VideoPrediction) over time, with `thumbnails` [(frame, image)] below; PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task = get_task(prediction.task)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    thumbnails = list(thumbnails)
    height = PLOT_IN + (STRIP_IN if thumbnails else 0.0) + 0.7
    fig = plt.figure(figsize=(WIDTH_IN, height))
    strip_frac = STRIP_IN / height if thumbnails else 0.0
    bottom = 0.45 / height + strip_frac
    ax = fig.add_axes((LEFT, bottom, RIGHT - LEFT, PLOT_IN / height))
    t = prediction.time_s
    span = max(prediction.duration_s, 1e-6)
    for name in prediction.columns:
        if name != task.event_column:
            ax.plot(t, prediction.column(name), lw=1.4, label=name)
    for i, e in enumerate(events(prediction) or []):
        ax.axvspan(e.start_s, e.end_s, color="tab:red", alpha=0.2, lw=0,
                   label=f"predicted {task.event_column} = 1" if i == 0 else None)
    low, high = task.output_range
    pad = 0.05 * (high - low)
    ax.set_xlim(0, span)
    ax.set_ylim(low - pad, high + pad)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8, ncol=4)
    ax.set_title(f"{prediction.name}: {prediction.n_frames} frames, {span:.1f} s at {prediction.fps:g} fps", fontsize=10)
    if thumbnails:
        ax.tick_params(labelbottom=False)
        strip = fig.add_axes((LEFT, 0.45 / height, RIGHT - LEFT, strip_frac), sharex=ax)
        strip.set_ylim(0, 1)
        strip.set_yticks([])
        image_h = 0.9 * STRIP_IN
        for frame, image in thumbnails:
            width_s = image_h * image.shape[1] / image.shape[0] / ((RIGHT - LEFT) * WIDTH_IN) * span
            centre = min(max(frame / prediction.fps, width_s / 2), span - width_s / 2)
            strip.imshow(image, extent=(centre - width_s / 2, centre + width_s / 2, 0.05, 0.95), aspect="auto")
            ax.axvline(frame / prediction.fps, color="0.5", lw=0.6, ls=":")
        strip.set_xlim(0, span)
        strip.set_xlabel("time (s)")
    else:
        ax.set_xlabel("time (s)")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
