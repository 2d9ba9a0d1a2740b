"""Frame sources: read the frames a sampling plan needs from a video file or a frame folder.

Two sources share one interface (`FrameSource`):

- `PyAVSource` reads a video file. Opening it counts the frames exactly by demuxing the
  packets (no decoding). `frames()` then makes one sequential, threaded decoding pass: every
  frame up to the last wanted one is decoded once, and only the wanted frames are converted
  to RGB, with libswscale resizing them during the conversion. Frame numbers are decode-order
  indices (0-based), so a variable-frame-rate video is read frame by frame, and `fps` is the
  stream's average rate; `VideoInfo.variable_rate` says when its frame gaps vary, with the
  measured rate. A display matrix (a phone's portrait video stored sideways) is applied, so
  frames come out upright and `VideoInfo` gives the upright size and the `orientation`.
- `FrameFolderSource` reads a folder of numbered images such as Aff-Wild2's
  `cropped_aligned/<name>/00001.jpg ...`. Names are 1-based (00001 is frame 0) unless a
  00000 file exists. The number of frames is given by the caller (Aff-Wild2: the
  annotation's line count) or, without one, the highest number. A frame without an image
  (Aff-Wild2 has no crop where no face was found, trailing ones included) is yielded as a
  uniform grey frame, never as a neighbouring face, and listed in `missing`, so that the
  extraction masks its target.

`crop_half` cuts the left or right half out of a frame, for two people sharing one video.

Bad files raise `VideoDecodeError` naming the file and the reason (a symbolic link loop or a
broken link says so).
"""

from __future__ import annotations

import errno
import os
import stat
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from fgvu.errors import FgvuError
from fgvu.extract.orientation import Orientation, orientation_of

# Frame rate assumed when a file or folder does not say (Aff-Wild2 videos are mostly 30 fps).
DEFAULT_FPS = 30.0
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Frame gaps further than this from the median gap (and more than a timestamp tick) make a video
# variable-frame-rate.
RATE_TOLERANCE = 0.1
# Packets the probe decodes at most while waiting for the first frame (decoders hold a few back).
FIRST_FRAME_PACKETS = 32


class VideoDecodeError(FgvuError):
    """A video that cannot be read: empty, not a video, no video stream, corrupt or truncated."""


@dataclass(frozen=True)
class VariableRate:
    """The measured timing of a video whose frame gaps vary."""

    fps: float  # frames per second over the whole video
    min_gap: float  # the shortest and longest gap between frames, in seconds
    max_gap: float

    def describe(self) -> str:
        return (f"variable frame rate: measured {self.fps:.2f} fps, frame gaps {1000 * self.min_gap:.0f}-"
                f"{1000 * self.max_gap:.0f} ms; read frame by frame")


@dataclass
class VideoInfo:
    """What a source knows after opening: `n_frames` is exact; width and height are the upright frame's."""

    path: Path
    n_frames: int
    fps: float
    width: int
    height: int
    orientation: Orientation = Orientation()
    variable_rate: VariableRate | None = None


class FrameSource(ABC):
    """A video's frames, read in one forward pass."""

    info: VideoInfo
    # Frames the source has no image for (yielded as MISSING_FRAME_VALUE grey); their targets are masked.
    missing: tuple[int, ...] | list[int] = ()
    notes: tuple[str, ...] | list[str] = ()  # what the source left out, for the extraction's warnings

    @abstractmethod
    def frames(self, wanted: np.ndarray, size: tuple[int, int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield `(frame_number, HxWx3 uint8 RGB)` for each of `wanted`, in order.

        `wanted` holds sorted, unique frame numbers in [0, n_frames). `size=(H, W)` resizes
        (bilinear, aspect ratio not kept). Raises VideoDecodeError when the video ends or breaks
        before the last wanted frame.
        """


def open_video(path: str | os.PathLike, fps: float | None = None, n_frames: int | None = None) -> FrameSource:
    """A source for `path`: a video file (PyAV) or a folder of numbered images.

    `fps` and `n_frames` are only used for frame folders, which carry no frame rate (default 30)
    and cannot tell how many frames have no image at their end.
    """
    path = Path(path)
    if path.is_dir():
        return FrameFolderSource(path, fps=fps or DEFAULT_FPS, n_frames=n_frames)
    return PyAVSource(path)


HALVES = ("left", "right")


def crop_half(frame: np.ndarray, half: str | None) -> np.ndarray:
    """The `half` ("left" or "right") of an (H, W, 3) frame; None keeps the whole frame."""
    if half is None:
        return frame
    if half not in HALVES:
        raise ValueError(f"half must be one of {HALVES} or None, got {half!r}")
    middle = frame.shape[1] // 2
    return frame[:, :middle] if half == "left" else frame[:, middle:]


def check_wanted(wanted, n_frames: int, where: Path) -> np.ndarray:
    """`wanted` as a sorted, unique int64 array inside [0, n_frames); ValueError otherwise."""
    wanted = np.asarray(wanted, dtype=np.int64).reshape(-1)
    if wanted.size and (np.any(np.diff(wanted) <= 0) or wanted[0] < 0 or wanted[-1] >= n_frames):
        raise ValueError(
            f"{where}: wanted frames must be sorted, unique and in [0, {n_frames}), "
            f"got {wanted[:5].tolist()}... ending at {int(wanted[-1])}"
        )
    return wanted


# ---- video files (PyAV) ---------------------------------------------------------------


class PyAVSource(FrameSource):
    """A video file decoded with PyAV (FFmpeg)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.info = self._probe()

    def _open(self):
        """The open container and its first video stream, or VideoDecodeError."""
        import av

        try:
            container = av.open(str(self.path))
        except av.error.FFmpegError as e:
            raise VideoDecodeError(f"{self.path}: {_unopenable_reason(self.path)} ({_ffmpeg_reason(e)})") from None
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            container.close()
            if not kinds:
                raise VideoDecodeError(f"{self.path}: no streams found (corrupt header or not a video)")
            raise VideoDecodeError(f"{self.path}: no video stream (only {', '.join(kinds)}; audio-only file?)")
        return container, container.streams.video[0]

    def _probe(self) -> VideoInfo:
        import av

        _check_file(self.path)
        container, stream = self._open()
        try:
            n_frames = n_packets = 0
            times: list[int] = []
            first_frame = None
            # one frame is decoded here; frame threads would decode several before giving the first
            stream.codec_context.thread_count = 1
            try:
                for packet in container.demux(stream):
                    if not packet.size and packet.dts is None and packet.pts is None:
                        continue  # the empty flush packet at the end (Matroska leaves dts unset on real ones)
                    n_packets += 1
                    # Empty packets (AVI "drop" frames) and discarded ones (edit lists) give no frame.
                    if packet.size and not packet.is_discard:
                        n_frames += 1
                        times.append(packet.pts if packet.pts is not None else packet.dts)
                        if first_frame is None and n_frames <= FIRST_FRAME_PACKETS:  # its side data
                            first_frame = _first_frame(stream, packet)  # carries the display matrix
            except av.error.FFmpegError as e:
                raise VideoDecodeError(
                    f"{self.path}: corrupt data while demuxing after {n_frames} frames ({_ffmpeg_reason(e)})"
                ) from None
            indexed = stream.frames  # the container index's count (0 when the format has none)
            if indexed and n_packets < indexed:
                raise VideoDecodeError(
                    f"{self.path}: truncated: the index lists {indexed} frames but only {n_packets} can be read"
                )
            if n_frames == 0:
                raise VideoDecodeError(f"{self.path}: the video stream has no frames")
            ctx = stream.codec_context
            if not ctx.width or not ctx.height:
                raise VideoDecodeError(f"{self.path}: the video stream has no frame size (corrupt header)")
            if first_frame is None:
                first_frame = _first_frame(stream, None)  # flush: a short video's frames may all be held back
            try:
                orientation = _orientation(first_frame)
            except ValueError as e:
                raise VideoDecodeError(f"{self.path}: {e}") from None
            height, width = orientation.display_size(ctx.height, ctx.width)
            return VideoInfo(self.path, n_frames, _average_fps(stream, n_frames), width, height, orientation,
                             _variable_rate(times, stream.time_base))
        finally:
            container.close()

    def frames(self, wanted, size=None):
        import av
        from av.video.reformatter import VideoReformatter

        wanted = check_wanted(wanted, self.info.n_frames, self.path)
        if not wanted.size:
            return
        height, width = size if size is not None else (self.info.height, self.info.width)
        orientation = self.info.orientation
        height, width = orientation.display_size(height, width)  # the stored frame's size before turning
        # One reformatter for the pass: it keeps its libswscale context, which costs more to
        # build than a conversion (frame.to_ndarray would build a new one per frame).
        reformatter = VideoReformatter()
        container, stream = self._open()
        stream.thread_type = "AUTO"  # frame + slice threads; FFmpeg decodes outside the GIL
        index, k = 0, 0
        try:
            try:
                for frame in container.decode(stream):
                    if index == wanted[k]:
                        rgb = reformatter.reformat(frame, width=width, height=height, format="rgb24",
                                                   interpolation="BILINEAR")
                        yield index, orientation.apply(rgb.to_ndarray())
                        k += 1
                        if k == len(wanted):
                            return
                    index += 1
            except av.error.FFmpegError as e:
                raise VideoDecodeError(f"{self.path}: corrupt data at frame {index} ({_ffmpeg_reason(e)})") from None
            raise VideoDecodeError(
                f"{self.path}: truncated: decoding ended after {index} of {self.info.n_frames} frames, "
                f"frame {int(wanted[k])} was wanted"
            )
        finally:
            container.close()


def _check_file(path: Path) -> None:
    """VideoDecodeError unless `path` is a non-empty regular file; links that lead nowhere say so."""
    try:
        info = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise VideoDecodeError(f"{path}: a symbolic link loop ({_link_chain(path)})") from None
        if os.path.islink(path):
            raise VideoDecodeError(f"{path}: a broken symbolic link (to {os.readlink(path)}, which does not "
                                   "exist)") from None
        if e.errno == errno.ENOENT:
            raise VideoDecodeError(f"{path}: no such file") from None
        raise VideoDecodeError(f"{path}: cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise VideoDecodeError(f"{path}: not a file")
    if info.st_size == 0:
        raise VideoDecodeError(f"{path}: empty file (0 bytes)")


def _link_chain(path: Path, limit: int = 8) -> str:
    """'a.mp4 -> b.mp4 -> a.mp4': the links followed from `path` until one repeats (or `limit`)."""
    chain, seen = [str(path)], set()
    current = Path(path)
    while current.is_symlink() and len(chain) <= limit:
        seen.add(os.path.abspath(current))
        target = Path(os.readlink(current))
        current = target if target.is_absolute() else current.parent / target
        chain.append(str(target))
        if os.path.abspath(current) in seen:
            break
    return " -> ".join(chain)


def _first_frame(stream, packet):
    """The first frame the decoder gives for `packet` (None: flush), or None while it gives none."""
    import av

    try:
        frames = stream.codec_context.decode(packet)
    except av.error.FFmpegError:
        return None  # the decoding pass reports corrupt data with its frame number
    return frames[0] if frames else None


def _orientation(frame) -> Orientation:
    """The Orientation of the first decoded frame's display matrix (upright without one)."""
    if frame is None:
        return Orientation()
    matrix = next((bytes(d) for d in frame.side_data if d.type.name == "DISPLAYMATRIX"), None)
    if matrix is None:
        return Orientation()
    return orientation_of(np.frombuffer(matrix, np.int32), frame.rotation)


def _variable_rate(times: list[int | None], time_base) -> VariableRate | None:
    """The measured rate when the gaps between frame timestamps vary, else None (or no timestamps)."""
    if len(times) < 3 or any(t is None for t in times) or not time_base:
        return None
    gaps = np.diff(np.unique(np.asarray(times, np.int64)))
    if len(gaps) < 2:
        return None
    typical = float(np.median(gaps))
    if np.abs(gaps - typical).max() <= max(1.5, RATE_TOLERANCE * typical):  # ticks: rounding is not variation
        return None
    seconds = float(time_base)
    span = float(gaps.sum()) * seconds
    return VariableRate(len(gaps) / span, float(gaps.min()) * seconds, float(gaps.max()) * seconds)


def _unopenable_reason(path: Path) -> str:
    """A guess at why FFmpeg cannot open `path`, from its first bytes."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as e:
        return f"unreadable file ({e.strerror})"
    if head[4:8] == b"ftyp":
        return "truncated or corrupt MP4/MOV: its index (moov atom) is missing or unreadable"
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    if printable == len(head):
        return "not a video: a text file"
    return "not a video, or a corrupt container"


def _ffmpeg_reason(error) -> str:
    """FFmpeg's message without the file name PyAV appends."""
    return getattr(error, "strerror", None) or str(error)


def _average_fps(stream, n_frames: int) -> float:
    """The stream's average frame rate; else frames over duration; else the codec's guess."""
    if stream.average_rate:
        return float(stream.average_rate)
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
        if seconds > 0:
            return n_frames / seconds
    if stream.guessed_rate:
        return float(stream.guessed_rate)
    return DEFAULT_FPS


# ---- frame folders ----------------------------------------------------------------------

# The value of every pixel of a frame without an image: a neutral grey, not a face.
MISSING_FRAME_VALUE = 128


class FrameFolderSource(FrameSource):
    """A folder of numbered images (`00001.jpg`, ...), decoded with PIL in parallel threads.

    `n_frames` is the video's length when the caller knows it; frames past the highest image
    are then missing too, and images past `n_frames` are not read (`unused` counts them).
    """

    def __init__(self, path: Path, fps: float = DEFAULT_FPS, workers: int | None = None, n_frames: int | None = None):
        self.path = Path(path)
        self.workers = workers or min(8, os.cpu_count() or 1)
        numbered = {}
        for entry in os.scandir(self.path):
            stem, suffix = os.path.splitext(entry.name)
            if suffix.lower() in IMAGE_SUFFIXES and stem.isdigit():
                numbered[int(stem)] = Path(entry.path)
        if not numbered:
            raise VideoDecodeError(f"{self.path}: no numbered images (00001.jpg, ...) in this folder")
        if n_frames is not None and n_frames < 1:
            raise ValueError(f"{self.path}: n_frames must be at least 1, got {n_frames}")
        first = 0 if 0 in numbered else 1
        if n_frames is None:
            n_frames = max(numbered) - first + 1
        self.files: list[Path | None] = [numbered.get(first + f) for f in range(n_frames)]
        self.missing = [f for f, p in enumerate(self.files) if p is None]
        self.unused = sum(1 for number in numbered if number - first >= n_frames)
        if self.unused:
            self.notes = [f"{self.path}: {self.unused} images past the video's {n_frames} frames are not read"]
        present = next((p for p in self.files if p is not None), None)
        if present is None:
            raise VideoDecodeError(f"{self.path}: none of its images is among the video's {n_frames} frames")
        width, height = self._image_size(present)
        self.info = VideoInfo(self.path, n_frames, float(fps), width, height)

    @staticmethod
    def _image_size(file: Path) -> tuple[int, int]:
        from PIL import Image

        try:
            with Image.open(file) as img:
                return img.size
        except Exception as e:  # PIL raises many types for unreadable images
            raise VideoDecodeError(f"{file}: unreadable image ({e})") from None

    def _load(self, frame: int, size) -> np.ndarray:
        from PIL import Image

        file = self.files[frame]
        if file is None:
            height, width = size if size is not None else (self.info.height, self.info.width)
            return np.full((height, width, 3), MISSING_FRAME_VALUE, np.uint8)
        try:
            with Image.open(file) as img:
                img = img.convert("RGB")
                if size is not None and img.size != (size[1], size[0]):
                    img = img.resize((size[1], size[0]), Image.BILINEAR)
                return np.asarray(img, dtype=np.uint8)
        except Exception as e:
            raise VideoDecodeError(f"{file}: unreadable image for frame {frame} ({e})") from None

    def frames(self, wanted, size=None):
        wanted = check_wanted(wanted, self.info.n_frames, self.path)
        if not wanted.size:
            return
        lookahead = 2 * self.workers  # bounded, so memory stays flat on long videos
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque = deque()
            todo = iter(wanted.tolist())
            for frame in todo:
                pending.append((frame, pool.submit(self._load, frame, size)))
                if len(pending) >= lookahead:
                    break
            while pending:
                frame, future = pending.popleft()
                nxt = next(todo, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(self._load, nxt, size)))
                try:
                    image = future.result()
                except VideoDecodeError:
                    for _, f in pending:
                        f.cancel()
                    raise
                yield frame, image
