"""`ExtractSummary`: what one extraction run did, for every engine, and its end-of-run report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from fgvu.extract.audio_source import AudioReport
from fgvu.extract.encoding import EncodeCounts

if TYPE_CHECKING:
    from fgvu.extract.video_source import VideoInfo


@dataclass
class ExtractSummary:
    """What one extraction run did."""

    out: Path
    parts: list[int] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0  # already committed before this run
    failures: list[tuple[str, str]] = field(default_factory=list)  # (video, reason)
    known_failures: set[str] = field(default_factory=set)  # of the failed: those an earlier run recorded too
    notices: list[str] = field(default_factory=list)  # what the dataset left out (adapter notices)
    turned: list[str] = field(default_factory=list)  # "file (rotated -90 degrees)": display matrices applied
    variable_rate: list[str] = field(default_factory=list)  # "file (variable frame rate: ...)"
    windows: int = 0
    frames: int = 0  # frames decoded
    warnings: int = 0  # annotation warnings
    seconds: float = 0.0  # wall time of the run (parts run one after another locally)
    counts: EncodeCounts = field(default_factory=EncodeCounts)
    audio: AudioReport = field(default_factory=AudioReport)  # soundtracks read, and what was wrong with them
    inputs: Counter = field(default_factory=Counter)  # extracted items by VideoItem.input_kind
    missing_frames: int = 0  # frames without an image (no face crop), masked
    missing_videos: int = 0  # items with at least one such frame
    # Ray: videos whose tasks still failed after their retries (nothing committed; a re-run retries
    # them), the cluster's start-up time, and each stage's busy seconds
    lost: list[tuple[str, str]] = field(default_factory=list)
    startup_seconds: float = 0.0
    busy: dict[str, float] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def windows_per_s(self) -> float:
        return self.windows / self.seconds if self.seconds > 0 else 0.0

    @property
    def known_failed(self) -> int:
        """How many of the failures are known-broken videos, recorded as failed by an earlier run."""
        return len(self.known_failures)

    @property
    def all_failed(self) -> bool:
        """True when this run tried videos and none succeeded, and not every failure was known from an
        earlier run (a complete cache whose only leftovers are known-broken files is not a failed run)."""
        return (self.failed > self.known_failed or bool(self.lost)) and self.succeeded == 0

    def merge(self, other: "ExtractSummary") -> None:
        """Add another part's summary into this one."""
        self.parts += other.parts
        for name in ("succeeded", "failed", "skipped", "windows", "frames", "warnings", "seconds", "missing_frames",
                     "missing_videos"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures += other.failures
        self.known_failures |= other.known_failures
        self.notices += [n for n in other.notices if n not in self.notices]  # every part lists the same
        self.turned += other.turned
        self.variable_rate += other.variable_rate
        self.counts.add(other.counts)
        self.audio.merge(other.audio)
        self.inputs.update(other.inputs)
        self.lost += other.lost

    def note_source(self, info: VideoInfo) -> None:
        """Record a display matrix applied or a variable frame rate of a source."""
        if not info.orientation.upright:
            self.turned.append(f"{info.path.name} ({info.orientation.describe()})")
        if info.variable_rate is not None:
            self.variable_rate.append(f"{info.path.name} ({info.variable_rate.describe()})")

    def lines(self) -> list[str]:
        """The end-of-run report, one line each."""
        parts = ", ".join(str(p) for p in self.parts)
        known = f" ({self.known_failed} known from earlier runs)" if self.known_failed else ""
        out = [
            f"cache {self.out} (part {parts}): {self.succeeded} videos extracted, {self.failed} failed{known}, "
            f"{self.skipped} skipped (already committed)",
            f"{self.windows} windows, {self.frames} frames decoded in {self.seconds:.1f} s "
            f"({self.frames_per_s:.1f} frames/s, {self.windows_per_s:.2f} windows/s); "
            f"{self.warnings} annotation warnings",
        ]
        if self.startup_seconds:
            out.append(f"Ray start-up {self.startup_seconds:.1f} s (not in the time above)")
        if self.busy:
            out.append("busy: " + ", ".join(f"{stage} {s:.1f} s" for stage, s in self.busy.items()))
        if self.inputs:
            out.append(self.input_line())
        out += self.audio.lines()
        out += [f"  failed: {video}: {reason}" + (" (failed before too)" if video in self.known_failures else "")
                for video, reason in self.failures]
        if self.lost:
            out.append(f"{len(self.lost)} videos still failed after their retries (not recorded; re-run to retry):")
            out += [f"  lost: {video}: {reason}" for video, reason in self.lost]
        out += self.notices
        for what, files in (("turned upright from their display matrix", self.turned),
                            ("with a variable frame rate", self.variable_rate)):
            if files:
                out.append(f"{len(files)} videos {what}: {'; '.join(files)}")
        return out

    def input_line(self) -> str:
        """What the encoders saw: how many items read face crops, half frames and whole frames."""
        described = {"frame folder": "from frame folders (face crops)",
                     "half frame": "from their half of a shared video (_left/_right without crops)",
                     "whole frame": "from whole frames"}
        kinds = [f"{self.inputs[kind]} {what}" for kind, what in described.items() if self.inputs[kind]]
        line = "inputs: " + ", ".join(kinds)
        if self.missing_frames:
            line += (f"; {self.missing_frames} frames of {self.missing_videos} videos have no image (no face crop): "
                     "masked, never trained on or scored")
        return line
