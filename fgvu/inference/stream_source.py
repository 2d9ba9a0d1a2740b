"""Frames of a stream as they arrive: a file, an RTSP/HTTP URL or a V4L2 device, read with PyAV.

`open_stream` opens the source (a file is probed first, so a bad file fails with extraction's
reasons; anything FFmpeg cannot open as video is a `StreamError`). `FrameReader` decodes in a
background thread into a bounded queue, converting each frame to RGB at the size extraction
converts it to (so the encoders see the same pixels as offline):

- a file is read as fast as the consumer takes frames, or with `realtime` at its native frame
  rate; URLs and devices arrive at their own rate;
- with `realtime` (and always for URLs and devices) a frame that finds the queue full is dropped
  and counted: the consumer is behind, and waiting would only let the delay grow;
- the reader ends with the reason: the end of the stream, `max_frames`, a decode error, or `stop()`;
  a consumer that gets no frame for `stall_timeout` seconds ends the stream itself (`Stalled`).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.errors import FgvuError
from fgvu.extract.video_source import DEFAULT_FPS


class StreamError(FgvuError):
    """A stream source that cannot be opened as video."""


@dataclass
class StreamInfo:
    """What opening a source tells: its kind, name, frame rate and frame size (and, for files, the frame count)."""

    source: str
    kind: str  # "file" | "url" | "device"
    name: str  # for the default output folder and the CSV's name
    fps: float
    width: int
    height: int
    n_frames: int | None = None
    has_audio: bool = False  # the container has an audio stream

    @property
    def live(self) -> bool:
        return self.kind != "file"


@dataclass
class Frame:
    """One decoded frame: its index, RGB pixels, when it arrived, and how long decoding it took."""

    index: int
    image: np.ndarray
    arrived: float  # time.perf_counter() when it was queued
    decode_s: float


@dataclass
class Sound:
    """Audio the reader decoded since the last event: (first track sample, mono 16 kHz samples) pieces."""

    pieces: list
    decode_s: float


@dataclass
class End:
    """The reader stopped after `n_frames` frames, for `reason`."""

    n_frames: int
    reason: str


def source_kind(source: str) -> str:
    """"device" for /dev/videoN, "url" for anything with a scheme (rtsp://, http://, ...), else "file"."""
    if re.fullmatch(r"/dev/video\d+", source):
        return "device"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source):
        return "url"
    return "file"


def source_name(source: str) -> str:
    """A file-name-safe name: the file's stem, or the URL's host and path, or the device's name."""
    kind = source_kind(source)
    raw = Path(source).stem if kind == "file" else re.sub(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", "", source)
    if kind == "device":
        raw = Path(source).name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw).strip("_") or "stream"


def open_stream(source: str, open_timeout: float = 10.0, read_timeout: float = 10.0):
    """(container, video stream, StreamInfo) for `source`; StreamError or VideoDecodeError when it is not video."""
    import av

    from fgvu.extract.video_source import open_video

    kind = source_kind(source)
    n_frames, fps = None, None
    if kind == "file":
        if Path(source).is_dir():
            raise StreamError(f"{source}: a folder, not a video file or stream")
        info = open_video(source).info  # exact frame count and fps, or extraction's reason why not
        n_frames, fps = info.n_frames, info.fps
    options = {"format": "v4l2"} if kind == "device" else {}
    if kind == "url":
        options["timeout"] = (open_timeout, read_timeout)
    try:
        container = av.open(source, **options)
    except av.error.FFmpegError as e:
        raise StreamError(f"{source}: cannot be opened as a video ({getattr(e, 'strerror', None) or e})") from None
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["no streams"]
        container.close()
        raise StreamError(f"{source}: not a video (it has {', '.join(kinds)})")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if fps is None:
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else DEFAULT_FPS
    if not ctx.width or not ctx.height:
        container.close()
        raise StreamError(f"{source}: the video stream has no frame size")
    return container, stream, StreamInfo(source, kind, source_name(source), fps, ctx.width, ctx.height, n_frames,
                                         has_audio=bool(container.streams.audio))


class FrameReader:
    """Decode a stream in a thread into a bounded queue of Frame events, ending with one End."""

    def __init__(self, container, stream, info: StreamInfo, size: tuple[int, int], *, realtime: bool = False,
                 capacity: int = 64, max_frames: int | None = None, audio: bool = False):
        self.container, self.stream, self.info = container, stream, info
        # the soundtrack is read in the same pass when the run reads audio and the source has some
        self.audio = container.streams.audio[0] if audio and container.streams.audio else None
        self.audio_issues: list[str] = []
        self.size = size  # (H, W) to convert to
        self.pace = realtime and not info.live  # a live source paces itself
        self.drop = realtime or info.live
        self.max_frames = max_frames
        self.queue: queue.Queue = queue.Queue(maxsize=max(1, capacity))
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fgvu-stream-reader", daemon=True)

    def start(self) -> "FrameReader":
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the reader to end and wait (up to `timeout`) for it; closes the container once it has."""
        self._stop.set()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.container.close()

    def _put(self, item, block: bool) -> bool:
        """Queue `item`; False when it was dropped (queue full and not blocking) or the reader is stopping."""
        while not self._stop.is_set():
            try:
                self.queue.put(item, block=block, timeout=0.1 if block else None)
                return True
            except queue.Full:
                if not block:
                    return False
        return False

    def _run(self) -> None:
        import av
        from av.video.reformatter import VideoReformatter

        height, width = self.size
        reformatter = VideoReformatter()  # one libswscale context for the whole stream, as extraction
        self.stream.thread_type = "AUTO"
        frames = self.container.decode(self.stream) if self.audio is None else self._frames_and_sound()
        index, reason, start = 0, "end of stream", time.perf_counter()
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                           interpolation="BILINEAR").to_ndarray()
                decode_s = time.perf_counter() - t0
                if self.pace:  # the file plays at its native rate
                    delay = start + index / self.info.fps - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                if not self._put(Frame(index, rgb, time.perf_counter(), decode_s), block=not self.drop):
                    if self._stop.is_set():
                        reason = "stopped"
                        break
                    self.dropped += 1
                index += 1
                if self.max_frames is not None and index >= self.max_frames:
                    reason = f"stopped after --max-frames {self.max_frames}"
                    break
            else:
                reason = "stopped"
        except av.error.FFmpegError as e:
            reason = f"decode error after {index} frames ({getattr(e, 'strerror', None) or e})"
        if self.audio is not None:
            self._put(Sound(self._close_sound(), 0.0), block=True)
        self._put(End(index, reason), block=True)

    def _frames_and_sound(self):
        """The video frames, as `container.decode(stream)` gives them, from one demuxing pass that also
        decodes the audio packets into Sound events (never dropped: they are small, and audio is not
        replayed). A bad audio packet is counted and its time stays masked; the video goes on."""
        import av

        from fgvu.extract.audio_source import AudioPlacer, start_seconds

        self._placer = AudioPlacer(start_seconds(self.stream))
        corrupt, broken = 0, False
        for packet in self.container.demux(self.stream, self.audio):
            if packet.stream.index == self.stream.index:
                yield from packet.decode()
                continue
            if broken:
                continue
            t0 = time.perf_counter()
            try:
                pieces = [p for frame in packet.decode() for p in self._placer.add(frame)]
            except av.error.FFmpegError:
                corrupt += 1
                if corrupt == 1:
                    self.audio_issues.append("corrupt audio packet(s): their time is masked")
                continue
            except Exception as e:  # noqa: BLE001 - as read_audio: the rest of the sound is masked, not the video
                broken = True
                self.audio_issues.append(f"cannot decode the audio ({type(e).__name__}: {e}); the rest is masked")
                continue
            if pieces:
                self._put(Sound(pieces, time.perf_counter() - t0), block=True)

    def _close_sound(self) -> list:
        placer = getattr(self, "_placer", None)
        try:
            return placer.close() if placer is not None else []
        except Exception as e:  # noqa: BLE001 - the soundtrack never costs the stream its pictures
            self.audio_issues.append(f"cannot resample the audio's last stretch ({type(e).__name__}: {e})")
            return []
