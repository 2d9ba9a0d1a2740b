"""Fake encoders and frame sources that make extraction checkable and fast.

Fake frames carry their own frame number in their pixels (channel 0: f % 256, channel 1:
f // 256), and the fake encoders read it back. So a test can tell exactly which frames each
encoder saw, how often, and whether every window's indices point at the planned frames.
Soundtracks written by `write_video(..., audio=Sound())` carry the time in their loudness (a
1 kHz tone whose amplitude rises linearly), and `FakeAudio` reads it back per frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fgvu.extract.datasets import DatasetAdapter, DatasetError, Targets, VideoItem
from fgvu.extract.encoders.base import AudioEncoder, Captioner, ImageTextEncoder, VideoEncoder, make_fingerprint
from fgvu.extract.encoding import EncoderSet
from fgvu.extract.video_source import FrameSource, VideoDecodeError, VideoInfo

DIM = 8


def frame_image(f: int, height: int = 8, width: int = 8) -> np.ndarray:
    """A frame whose pixels spell its number."""
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = f % 256, f // 256, 7
    return img


def frame_number(images: np.ndarray) -> np.ndarray:
    """The frame numbers spelled by a batch of fake frames (..., H, W, 3)."""
    means = images.reshape(*images.shape[:-3], -1, 3).mean(axis=-2)
    return np.rint(means[..., 0] + 256 * means[..., 1]).astype(np.int64)


def number_features(numbers: np.ndarray) -> np.ndarray:
    """Features that store a frame number exactly in float16: [f % 256, f // 256, 1, 0, ...]."""
    out = np.zeros((*numbers.shape, DIM), np.float32)
    out[..., 0], out[..., 1], out[..., 2] = numbers % 256, numbers // 256, 1
    return out


def decode_features(features: np.ndarray) -> np.ndarray:
    """Inverse of number_features."""
    f = np.asarray(features, np.float32)
    return np.rint(f[..., 0] + 256 * f[..., 1]).astype(np.int64)


@dataclass
class CallLog:
    """What an encoder was asked: one list of frame numbers per call."""

    calls: list[list[int]] = field(default_factory=list)

    @property
    def frames(self) -> list[int]:
        return [f for call in self.calls for f in call]


class FakeImageText(ImageTextEncoder):
    dim = DIM

    def __init__(self, delay: float = 0.0):
        self.fingerprint = make_fingerprint("fake-clip", "fake", DIM, {"size": [8, 8]}, "random-init:0")
        self.images, self.texts, self.delay = CallLog(), CallLog(), delay

    def encode_images(self, images):
        numbers = frame_number(images)
        self.images.calls.append(numbers.tolist())
        time.sleep(self.delay)
        return number_features(numbers)

    def encode_texts(self, texts):
        numbers = np.array([int(t.split()[-1]) for t in texts], np.int64)
        self.texts.calls.append(numbers.tolist())
        return number_features(numbers) + np.float32(0.5) * (np.arange(DIM) == 3)


class FakeVideo(VideoEncoder):
    dim = DIM

    def __init__(self, delay: float = 0.0):
        self.fingerprint = make_fingerprint("fake-videoprism", "fake", DIM, {"resize": [8, 8]}, "random-init:0")
        self.clips, self.delay = CallLog(), delay

    def encode_clips(self, clips):
        numbers = frame_number(clips)  # (B, T)
        self.clips.calls.append([tuple(c) for c in numbers.tolist()])
        time.sleep(self.delay)
        return number_features(numbers)

    def encode_tokens(self, clips):
        raise NotImplementedError("not used by extraction")


class FakeCaptioner(Captioner):
    def __init__(self):
        self.fingerprint = make_fingerprint("fake-captioner", "fake", 0, {"size": [8, 8]}, "random-init:0")
        self.log, self.prompts = CallLog(), []

    def caption(self, images, prompt):
        numbers = frame_number(images)
        self.log.calls.append(numbers.tolist())
        self.prompts.append(prompt)
        return [f"a frame numbered {n}" for n in numbers.tolist()]


class FakeAudio(AudioEncoder):
    """Per 20 ms frame: [RMS of the 25 ms it sees, its peak, 1, 0]; logs the (B, L) of every call."""

    dim = 4

    def __init__(self, chunk_seconds: float = 2.0, context_seconds: float = 0.4, batch_size: int = 3):
        self.fingerprint = make_fingerprint("fake-audio", "fake", 4, {"rate": 16000}, "random-init:0")
        self.chunk_seconds, self.context_seconds, self.batch_size = chunk_seconds, context_seconds, batch_size
        self.calls: list[tuple[int, int]] = []

    def encode_waves(self, waves):
        self.calls.append(waves.shape)
        n = self.frames_for(waves.shape[1])
        idx = np.arange(n)[:, None] * self.hop + np.arange(self.receptive_field)[None, :]
        seen = waves[:, idx]  # (B, n, 400)
        out = np.zeros((len(waves), n, 4), np.float32)
        out[..., 0] = np.sqrt((seen ** 2).mean(-1))
        out[..., 1] = np.abs(seen).max(-1)
        out[..., 2] = 1
        return out


def fake_encoders(delay: float = 0.0, audio: AudioEncoder | None = None) -> EncoderSet:
    return EncoderSet(video=FakeVideo(delay), image_text=FakeImageText(delay), captioner=FakeCaptioner(), audio=audio)


class FakeSource(FrameSource):
    """`n_frames` frames spelling their numbers; `fail_at` raises VideoDecodeError there (a truncated file)."""

    def __init__(self, path: Path, n_frames: int, fail_at: int | None = None, size=(8, 8)):
        if n_frames <= 0:
            raise VideoDecodeError(f"{path}: the video stream has no frames")
        self.info = VideoInfo(Path(path), n_frames, 25.0, size[1], size[0])
        self.fail_at, self.decoded = fail_at, 0

    def frames(self, wanted, size=None):
        h, w = size or (self.info.height, self.info.width)
        for f in np.asarray(wanted).tolist():
            if self.fail_at is not None and f >= self.fail_at:
                raise VideoDecodeError(f"{self.info.path}: truncated: decoding ended after {self.fail_at} frames")
            self.decoded += 1
            yield f, frame_image(f, h, w)


class FakeAdapter(DatasetAdapter):
    """Items over fake sources. `videos`: name -> (source name, n_frames); `missing`: names whose
    annotation is missing. Targets: valence = (f % 200) / 200 - 0.5 and arousal = its negative,
    where f is the frame number, so a test can check alignment."""

    name = "aff-wild2"
    task = "va"

    def __init__(self, videos: dict[str, tuple[str, int]], missing: tuple[str, ...] = ()):
        super().__init__(Path("/fake"))
        self.videos, self.missing = videos, set(missing)
        self.sources = {}

    def items(self):
        return sorted((VideoItem(name, Path("/fake") / src, "train" if i % 3 else "val", Path(f"/fake/{name}.txt"))
                       for i, (name, (src, _)) in enumerate(sorted(self.videos.items()))), key=lambda it: it.name)

    def load_targets(self, item, n_frames):
        if item.name in self.missing:
            raise DatasetError(f"annotation file missing: {item.annotation}")
        f = np.arange(n_frames)
        valence = (f % 200) / 200 - 0.5
        values = np.stack([valence, -valence], axis=1).astype(np.float32)
        return Targets(values=values, mask=np.ones_like(values, bool), warnings=[f"{item.name}: fake warning"])

    def open_video(self, path):
        """Stands in for fgvu.extract.video_source.open_video over this adapter's sources."""
        path = Path(path)
        n = next(n for src, n in self.videos.values() if Path("/fake") / src == path)
        source = FakeSource(path, n)
        self.sources.setdefault(path.name, []).append(source)
        return source


# ---- real files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sound:
    """A soundtrack for `write_video`: a 1 kHz tone whose amplitude is `ramp_amplitude(t)` at t seconds
    (so its loudness tells the time), or zeros; on `layout`'s channels, at `rate`, from `start` s for
    `seconds` (default: the video's length), with `gap` = (from, to) s left out."""

    rate: int = 48000
    layout: str = "stereo"
    codec: str = "aac"
    start: float = 0.0
    seconds: float | None = None
    gap: tuple[float, float] | None = None
    zeros: bool = False
    only: str | None = None  # put the tone on this channel only (e.g. "FC"), silence on the others
    mute: tuple[float, float] | None = None  # (from, to) s of digital silence inside the track


RAMP_SECONDS = 20.0


def ramp_amplitude(t):
    """The tone's amplitude at t seconds: 0.02 rising by 0.02 per second."""
    return 0.02 + 0.02 * np.asarray(t)


def _mux_sound(container, stream, sound: Sound, duration: float) -> None:
    import av

    frame_size = 960 if sound.codec == "libopus" else 1024
    seconds = duration - sound.start if sound.seconds is None else sound.seconds
    n = int(round(seconds * sound.rate))
    t = sound.start + np.arange(n + frame_size) / sound.rate
    tone = np.zeros_like(t) if sound.zeros else ramp_amplitude(t) * np.sin(2 * np.pi * 1000 * t)
    if sound.mute:
        tone[(t >= sound.mute[0]) & (t < sound.mute[1])] = 0.0
    names = [c.name for c in av.AudioLayout(sound.layout).channels]
    channels = np.stack([tone if sound.only in (None, name) else 0 * tone for name in names]).astype(np.float32)
    offset = int(round(sound.start * sound.rate))
    for i in range(0, n, frame_size):
        if sound.gap and sound.gap[0] <= sound.start + i / sound.rate < sound.gap[1]:
            continue
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(channels[:, i:i + frame_size]), format="fltp",
                                           layout=sound.layout)
        frame.sample_rate, frame.pts = sound.rate, offset + i
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def write_video(path: Path, n_frames: int, size: tuple[int, int] = (48, 64), fps: int = 25, seed: int = 0,
                audio: Sound | None = None, container_format: str | None = None) -> Path:
    """A small real H.264 file (mpeg4 where libx264 is missing) with moving, coloured content,
    and `audio` as its soundtrack."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(*size, 3), dtype=np.uint8)
    with av.open(str(path), "w", format=container_format) as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width, stream.pix_fmt = size[0], size[1], "yuv420p"
        sound = container.add_stream(audio.codec, rate=audio.rate, layout=audio.layout) if audio else None
        for f in range(n_frames):
            img = np.roll(base, shift=3 * f, axis=1)
            img[: size[0] // 4, : size[1] // 4] = (f * 5) % 256
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
        if audio:
            _mux_sound(container, sound, audio, n_frames / fps)
    return path


def write_audio_only(path: Path, seconds: float = 0.5, rate: int = 16000) -> Path:
    """An .mp4 holding only an AAC audio stream."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate)
        samples = (np.sin(np.arange(int(seconds * rate)) / 10) * 0.3).astype(np.float32)
        for i in range(0, len(samples), 1024):
            chunk = samples[i:i + 1024]
            if len(chunk) < 1024:
                break
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="fltp", layout="mono")
            frame.sample_rate = rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_affwild2(root: Path, videos: dict[str, int], left_right: tuple[str, ...] = (),
                   audio: dict[str, Sound] | None = None) -> Path:
    """A tiny Aff-Wild2 tree: batch1/<name>.mp4 and VA_Estimation_Challenge/Train_Set/<name>.txt.

    Names in `left_right` get `<name>_left.txt` and `<name>_right.txt` instead of `<name>.txt`;
    names in `audio` get that soundtrack.
    Line k of each annotation is (k % 200) / 200 - 0.5 and its negative (right: swapped signs).
    """
    root = Path(root)
    ann = root / "VA_Estimation_Challenge" / "Train_Set"
    ann.mkdir(parents=True, exist_ok=True)
    for i, (name, n) in enumerate(sorted(videos.items())):
        write_video(root / "batch1" / f"{name}.mp4", n, seed=i, audio=(audio or {}).get(name))
        valence = (np.arange(n) % 200) / 200 - 0.5
        people = {"_left": 1, "_right": -1} if name in left_right else {"": 1}
        for suffix, sign in people.items():
            lines = ["valence,arousal"] + [f"{sign * v:.4f},{-sign * v:.4f}" for v in valence]
            (ann / f"{name}{suffix}.txt").write_text("\n".join(lines) + "\n")
    return root


class FlakyImageText(FakeImageText):
    """Raises RuntimeError on image batches of exactly `fail_batch` frames (always), and on the first
    image batch of the whole run when `fail_once` (a marker file path) does not exist yet."""

    def __init__(self, delay: float = 0.0, fail_batch: int | None = None, fail_once: str | None = None):
        super().__init__(delay)
        self.fail_batch, self.fail_once = fail_batch, fail_once

    def encode_images(self, images):
        if self.fail_batch is not None and len(images) == self.fail_batch:
            raise RuntimeError(f"planted fault on a batch of {len(images)} images")
        if self.fail_once is not None and not Path(self.fail_once).exists():
            Path(self.fail_once).write_text("failed once")
            raise RuntimeError("planted transient fault")
        return super().encode_images(images)


def build_fake_encoder(role: str, cfg=None, delay: float = 0.0, pid_dir: str | None = None,
                       fail_batch: int | None = None, fail_once: str | None = None):
    """The fake encoder of one role (video, image, captioner), for engines that build encoders where
    they run (Ray actors). With `pid_dir`, the process writes its pid there, so a test can kill it;
    `fail_batch` and `fail_once` plant faults in the image encoder (`FlakyImageText`)."""
    import os

    if pid_dir is not None:
        Path(pid_dir).mkdir(parents=True, exist_ok=True)
        (Path(pid_dir) / f"{role}-{time.time_ns()}-{os.getpid()}").write_text(str(os.getpid()))
    if role == "video":
        return FakeVideo(delay)
    if role == "image":
        return FlakyImageText(delay, fail_batch, fail_once) if fail_batch or fail_once else FakeImageText(delay)
    return FakeCaptioner()
