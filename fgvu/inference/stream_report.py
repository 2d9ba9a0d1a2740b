"""What a finished stream reports: per-window records, the end-of-stream summary and the files next to its CSV."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.inference.latency import latency_lines
from fgvu.inference.prediction import VideoPrediction
from fgvu.inference.stream_captions import CaptionPolicy
from fgvu.inference.stream_source import StreamInfo

WINDOW_FIELDS = ("window", "start", "ready_frame", "status", "padded", "decode_ms", "video_ms", "image_ms",
                 "captioner_ms", "text_ms", "audio_ms", "fusion_ms", "compute_ms", "end_to_end_ms", "caption_staleness_frames",
                 "audio_rows")


@dataclass
class WindowRecord:
    """What happened to one window: run or skipped (a frame it reads was dropped), and its timings (s)."""

    window: int
    start: int
    ready_frame: int
    status: str
    padded: bool
    times: dict = field(default_factory=dict)
    end_to_end_s: float | None = None
    staleness: float | None = None  # the farthest caption-grid position from its caption, in frames
    audio: str = ""  # its audio rows: "final" (as offline), "provisional", "masked" (no audio stream)

    def row(self) -> list:
        ms = [f"{self.times[k] * 1000:.2f}" if k in self.times else "" for k in
              ("decode", "video", "image", "captioner", "text", "audio", "fusion", "compute")]
        e2e = f"{self.end_to_end_s * 1000:.2f}" if self.end_to_end_s is not None else ""
        stale = "" if self.staleness is None or np.isnan(self.staleness) else f"{self.staleness:g}"
        return [self.window, self.start, self.ready_frame, self.status, int(self.padded), *ms, e2e, stale, self.audio]


@dataclass
class StreamResult:
    """A finished stream: its predictions, when each frame was emitted, per-window records and figures."""

    info: StreamInfo
    prediction: VideoPrediction
    emitted_at: np.ndarray  # [n] the newest frame that had arrived when each frame was emitted
    windows: list[WindowRecord]
    latency: dict
    policy: CaptionPolicy
    dropped: int
    end_reason: str
    wall_s: float
    warmup_s: float
    budget_ms: float | None = None
    files: dict = field(default_factory=dict)
    audio_lines: list = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        """Wall time over the stream's duration: below 1 keeps up with the stream."""
        return self.wall_s / max(self.prediction.duration_s, 1e-9)

    @property
    def skipped(self) -> int:
        return sum(w.status == "skipped" for w in self.windows)

    def lines(self) -> list[str]:
        """The end-of-stream report."""
        info, pred = self.info, self.prediction
        run = len(self.windows) - self.skipped
        stale = [w.staleness for w in self.windows if w.staleness is not None and not np.isnan(w.staleness)]
        out = [f"stream {info.source} ({info.kind}, {info.fps:g} fps, {info.width}x{info.height}): {pred.n_frames} "
               f"frames in {self.wall_s:.1f} s, real-time factor {self.real_time_factor:.2f} "
               "(wall time / stream time; below 1 keeps up)",
               f"ended: {self.end_reason}; windows: {run} run, {self.skipped} skipped; frames dropped: {self.dropped}; "
               f"warm-up {self.warmup_s:.1f} s",
               self.policy.describe()]
        if stale:
            out.append(f"caption staleness (frames from the caption each window read): p50 "
                       f"{np.percentile(stale, 50):g}, max {max(stale):g} ({max(stale) / info.fps:.2f} s)")
        if self.budget_ms is not None:
            over = sum(w.end_to_end_s is not None and w.end_to_end_s * 1000 > self.budget_ms for w in self.windows)
            out.append(f"windows over the {self.budget_ms:g} ms budget (end to end): {over} of {run}")
        out += self.audio_lines
        out.append("latency per window:")
        out += ["  " + line for line in latency_lines(self.latency)]
        return out


def write_stream_outputs(result: StreamResult, out: Path, thumbnails: int = 6) -> dict[str, Path]:
    """windows.csv, latency.json, the timeline (thumbnails for a file) and, for tasks with events, the event
    list, next to the per-frame CSV the stream wrote as it went."""
    import csv

    from fgvu.atomic_io import write_json
    from fgvu.inference.outputs import output_paths
    from fgvu.inference.events import write_events
    from fgvu.inference.timeline import read_thumbnails, write_timeline

    pred = result.prediction
    paths = output_paths(out, pred.name)
    files = {"csv": paths["csv"], "windows": out / "windows.csv", "latency": out / "latency.json"}
    with open(files["windows"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(WINDOW_FIELDS)
        writer.writerows(w.row() for w in result.windows)
    write_json(files["latency"], {
        "source": result.info.source, "frames": pred.n_frames, "fps": result.info.fps, "wall_s": result.wall_s,
        "real_time_factor": result.real_time_factor, "warmup_s": result.warmup_s, "dropped_frames": result.dropped,
        "windows_run": len(result.windows) - result.skipped, "windows_skipped": result.skipped,
        "end_reason": result.end_reason, "captions": result.policy.describe(),
        "latency_budget_ms": result.budget_ms, "latency_ms": result.latency})
    thumbs = []
    if thumbnails and pred.source is not None and pred.n_frames:
        thumbs = read_thumbnails(pred.source, pred.n_frames, pred.fps, thumbnails, pred.size)
    if pred.n_frames:
        files["timeline"] = write_timeline(pred, paths["timeline"], thumbs)
    events = write_events(pred, paths["events"])
    if events is not None:
        files["events"] = events
    return files
