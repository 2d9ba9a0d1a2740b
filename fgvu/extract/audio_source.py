"""The soundtrack of a video: decoded with PyAV, 16 kHz mono, on the video's clock.

`read_audio(path, n_frames, fps)` opens the same container as the video source and decodes
its first audio stream in one pass. Every decoded frame is placed by its timestamp, relative
to the first video frame, so sample j of the track lies at j / 16000 s after video frame 0,
and frame k of the video (at k / fps) and the audio around it line up. The track covers
exactly the video's duration, n_frames / fps seconds.

Each channel is resampled to 16 kHz (libswresample), then the channels are averaged, the
low-frequency channel left out: a signal present identically on every channel of a mono,
stereo or 5.1 track gives the same samples.

Nothing here raises for a bad soundtrack; the video is kept whenever its pictures are good.
Instead, `valid` is False wherever there is no sound to encode, and each problem is one
`AudioIssue` that the extraction counts and reports:

- no audio stream (or a frame folder, which has no soundtrack): everything masked;
- an undecodable stream, corrupt packets: the samples they would have held are masked;
- a track that starts late, ends early, or has gaps between packets: those stretches masked;
- a track that runs past the video: the extra is dropped;
- digital silence (a track of zeros, or muted stretches of at least 20 ms): masked;
- a sample rate below 16 kHz (upsampled: nothing above half its rate) and more than two
  channels (downmixed): kept, and reported.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RATE = 16000  # samples per second of every track (what the speech encoders take)
SILENCE_PEAK = 1.0 / 32768  # a block whose peak is at most one 16-bit step is digital silence
SILENCE_BLOCK = 320  # 20 ms blocks are tested for silence
GAP_TOLERANCE = 0.005  # s: timestamp jitter below this is ignored; above, a gap or overlap
REPORT_TOLERANCE = 0.1  # s: a track starting later or ending earlier than this is reported
LFE = "LFE"  # the low-frequency channel, left out of the downmix


@dataclass(frozen=True)
class AudioIssue:
    """One problem with a soundtrack: a kind (what the summary counts) and the details."""

    kind: str
    detail: str


@dataclass
class AudioTrack:
    """A video's soundtrack on its clock: sample j at j / RATE seconds after video frame 0."""

    samples: np.ndarray  # float32 [n], mono, in [-1, 1]; zeros where not valid
    valid: np.ndarray  # bool [n]: real sound here
    issues: list[AudioIssue] = field(default_factory=list)
    source_rate: int | None = None  # the stream's own sample rate
    channels: int | None = None

    @classmethod
    def empty(cls, n_samples: int, issue: AudioIssue | None = None) -> "AudioTrack":
        """A track with no sound at all (every sample masked)."""
        return cls(np.zeros(n_samples, np.float32), np.zeros(n_samples, bool), [issue] if issue else [])

    @property
    def seconds(self) -> float:
        return len(self.samples) / RATE

    @property
    def has_sound(self) -> bool:
        return bool(self.valid.any())


def track_samples(n_frames: int, fps: float) -> int:
    """Samples in a track covering `n_frames` frames at `fps`."""
    return int(round(n_frames / fps * RATE))


def read_audio(path: str | Path, n_frames: int, fps: float) -> AudioTrack:
    """The soundtrack of the video file `path` (n_frames frames at fps), masked where it has none."""
    import av

    path = Path(path)
    n = track_samples(n_frames, fps)
    if path.is_dir():
        return AudioTrack.empty(n, AudioIssue("no soundtrack", f"{path}: a folder of frames has no soundtrack"))
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        return AudioTrack.empty(n, AudioIssue("undecodable audio", f"{path}: cannot open the container ({e})"))
    with container:
        if not container.streams.audio:
            return AudioTrack.empty(n, AudioIssue("no audio stream", f"{path}: no audio stream; audio masked"))
        stream = container.streams.audio[0]
        origin = start_seconds(container.streams.video[0]) if container.streams.video else 0.0
        track = AudioTrack.empty(n)
        track.source_rate, track.channels = stream.codec_context.sample_rate, stream.codec_context.channels
        _Decoder(path, track, origin).run(container, stream)
    _report_coverage(path, track)
    _mask_silence(path, track)
    _report_format(path, track)
    return track


def start_seconds(stream) -> float:
    """When a stream starts, in seconds of the container's clock (0 when it does not say)."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


class AudioPlacer:
    """Decoded audio frames -> mono pieces at 16 kHz, each with the track sample it starts at.

    Frames with contiguous timestamps form one segment with one resampler; a jump of more than
    GAP_TOLERANCE, or another rate or layout, starts a new segment at its timestamp (relative to
    `origin`, the first video frame's time). Pieces come out as the resampler releases them, so
    the offline reader and a stream (`fgvu.inference.stream_audio`) place the same samples at the
    same positions. Positions may be negative or lie past the video: the caller cuts.
    """

    def __init__(self, origin: float):
        self.origin = origin
        self.segment: _Segment | None = None

    def add(self, frame) -> list[tuple[int, np.ndarray]]:
        """The pieces this frame releases (those of a segment it ends first)."""
        start = self.segment.end if self.segment is not None else 0.0
        if frame.time is not None:
            start = float(frame.time) - self.origin
        seg, out = self.segment, []
        if seg is None or (seg.rate, seg.layout) != (frame.sample_rate, frame.layout.name) \
                or abs(start - seg.end) > GAP_TOLERANCE:
            out = self.close()
            self.segment = seg = _Segment(start, frame.sample_rate, frame.layout.name)
        seg.add(frame)
        return out + seg.drain()

    def close(self) -> list[tuple[int, np.ndarray]]:
        """Flush the current segment's resampler: its last pieces."""
        seg, self.segment = self.segment, None
        if seg is None:
            return []
        seg.finish()
        return seg.drain()


class _Decoder:
    """Decodes packets and places the pieces of the AudioPlacer on the track."""

    def __init__(self, path: Path, track: AudioTrack, origin: float):
        self.path, self.track = path, track
        self.placer = AudioPlacer(origin)
        self.corrupt = 0
        self.outside = 0.0  # seconds of sound before the first video frame or after the last

    def run(self, container, stream) -> None:
        import av

        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    self.corrupt += 1  # its samples stay masked; the next frame's timestamp places the rest
                    continue
                for frame in frames:
                    self._place(self.placer.add(frame))
        except av.error.FFmpegError as e:
            self.track.issues.append(AudioIssue(
                "corrupt audio", f"{self.path}: the audio stream breaks off ({e}); the rest is masked"))
        except Exception as e:  # noqa: BLE001 - a soundtrack never costs the video its pictures
            self.track.issues.append(AudioIssue(
                "undecodable audio", f"{self.path}: cannot decode the audio ({type(e).__name__}: {e}); the rest "
                "is masked"))
        try:
            self._place(self.placer.close())  # what was decoded before any error is kept
        except Exception as e:  # noqa: BLE001
            self.track.issues.append(AudioIssue("undecodable audio", f"{self.path}: cannot resample the audio "
                                                f"({type(e).__name__}: {e}); its last stretch is masked"))
        if self.corrupt:
            self.track.issues.append(AudioIssue(
                "corrupt audio", f"{self.path}: {self.corrupt} corrupt audio packet(s) skipped; their time is masked"))
        if self.outside > REPORT_TOLERANCE:
            self.track.issues.append(AudioIssue(
                "longer than the video", f"{self.path}: {self.outside:.2f} s of audio outside the video dropped"))

    def _place(self, pieces) -> None:
        for first, mono in pieces:
            lo, hi = max(first, 0), min(first + len(mono), len(self.track.samples))
            self.outside += (len(mono) - max(hi - lo, 0)) / RATE
            if hi > lo:
                self.track.samples[lo:hi] = mono[lo - first: hi - first]
                self.track.valid[lo:hi] = True


class _Segment:
    """Frames with contiguous timestamps, resampled to RATE and downmixed to mono, piece by piece."""

    def __init__(self, start: float, rate: int, layout: str):
        import av

        self.start, self.end, self.rate, self.layout = start, start, rate, layout
        self.first = int(round(start * RATE))  # the track sample of the segment's first sample
        self.placed = 0  # samples released so far
        self.resampler: av.AudioResampler | None = None
        self.keep: np.ndarray | None = None  # the channels the downmix averages
        self.pending: list[tuple[int, np.ndarray]] = []  # pieces not drained yet

    def add(self, frame) -> None:
        import av

        if self.resampler is None:
            names = [c.name for c in frame.layout.channels]
            keep = [i for i, name in enumerate(names) if name != LFE]
            self.keep = np.array(keep or list(range(len(names))))
            self.resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=RATE)
        self.end += frame.samples / frame.sample_rate
        frame.pts = None  # the segment is contiguous by construction; the resampler must not re-time it
        self._take(self.resampler.resample(frame))

    def _take(self, frames) -> None:
        for frame in frames:
            mono = np.clip(frame.to_ndarray()[self.keep].mean(axis=0, dtype=np.float32), -1.0, 1.0)
            self.pending.append((self.first + self.placed, mono.astype(np.float32, copy=False)))
            self.placed += len(mono)

    def finish(self) -> None:
        if self.resampler is not None:
            self._take(self.resampler.resample(None))

    def drain(self) -> list[tuple[int, np.ndarray]]:
        """The (first track sample, mono samples) pieces released since the last drain."""
        out, self.pending = self.pending, []
        return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of every run of True in a bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.view(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def _report_coverage(path: Path, track: AudioTrack) -> None:
    """Issues for a track that starts late, ends early or has gaps (before silence is masked)."""
    n = len(track.valid)
    runs = _runs(track.valid)
    if not runs:
        if not any(i.kind in ("no audio stream", "undecodable audio") for i in track.issues):
            track.issues.append(AudioIssue("no decodable audio", f"{path}: no audio could be decoded; audio masked"))
        return
    late, early = runs[0][0] / RATE, (n - runs[-1][1]) / RATE
    if late > REPORT_TOLERANCE:
        track.issues.append(AudioIssue("starts after the video", f"{path}: audio starts {late:.2f} s after the "
                                       "first frame; the start is masked"))
    if early > REPORT_TOLERANCE:
        track.issues.append(AudioIssue("shorter than the video", f"{path}: audio ends {early:.2f} s before the "
                                       "last frame; the end is masked"))
    gaps = [(b - a) / RATE for (_, a), (b, _) in zip(runs[:-1], runs[1:])]
    if gaps and sum(gaps) > GAP_TOLERANCE:
        track.issues.append(AudioIssue("gaps", f"{path}: {len(gaps)} gap(s) in the audio, {sum(gaps):.2f} s "
                                       "in all, masked"))


def _mask_silence(path: Path, track: AudioTrack) -> None:
    """Mask blocks of digital silence: a track of zeros, or muted stretches."""
    n_blocks = len(track.samples) // SILENCE_BLOCK
    if not n_blocks or not track.has_sound:
        return
    blocks = np.abs(track.samples[: n_blocks * SILENCE_BLOCK]).reshape(n_blocks, SILENCE_BLOCK).max(axis=1)
    sounding = track.valid[: n_blocks * SILENCE_BLOCK].reshape(n_blocks, SILENCE_BLOCK).any(axis=1)
    silent = sounding & (blocks <= SILENCE_PEAK)
    if not silent.any():
        return
    track.valid[: n_blocks * SILENCE_BLOCK].reshape(n_blocks, SILENCE_BLOCK)[silent] = False
    seconds = silent.sum() * SILENCE_BLOCK / RATE
    if not track.valid.any():
        track.valid[:] = False
        track.issues.append(AudioIssue("silent", f"{path}: the audio is digital silence throughout; masked"))
    else:
        track.issues.append(AudioIssue("silent stretches", f"{path}: {seconds:.2f} s of digital silence masked"))


def _report_format(path: Path, track: AudioTrack) -> None:
    if track.source_rate and track.source_rate < RATE:
        track.issues.append(AudioIssue(
            "low sample rate", f"{path}: audio at {track.source_rate} Hz, upsampled to {RATE} Hz "
            f"(nothing above {track.source_rate // 2} Hz)"))
    if track.channels and track.channels > 2:
        track.issues.append(AudioIssue(
            "multichannel", f"{path}: {track.channels} audio channels averaged to mono (LFE left out)"))


@dataclass
class AudioReport:
    """Soundtracks seen by one extraction: how many had sound, and every issue counted by kind."""

    tracks: int = 0
    with_sound: int = 0
    issues: Counter = field(default_factory=Counter)

    def add(self, track: AudioTrack) -> None:
        self.tracks += 1
        self.with_sound += int(track.has_sound)
        self.issues.update(i.kind for i in track.issues)

    def merge(self, other: "AudioReport") -> None:
        self.tracks += other.tracks
        self.with_sound += other.with_sound
        self.issues.update(other.issues)

    def lines(self) -> list[str]:
        """The summary line(s); none when no soundtrack was read."""
        if not self.tracks:
            return []
        counted = ", ".join(f"{kind} {count}" for kind, count in sorted(self.issues.items())) or "none"
        return [f"audio: {self.with_sound} of {self.tracks} soundtracks with sound; warnings: {counted}"]
