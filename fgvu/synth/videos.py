"""Synthetic video datasets whose labels can be learnt from the pixels, and that can fail.

`write_video_dataset` writes small real H.264 files (PyAV; MPEG-4 Part 2 if the PyAV build
lacks libx264) in the exact folder layout of a benchmark, so the real adapters read them:

- `aff-wild2`: a disc moves over a still background. Its hue encodes valence (red = +1,
  blue = -1), its brightness encodes arousal (dim = -1, bright = +1: every frame and every
  clip shows it, in every video alike), and it moves faster the higher the arousal. Both
  targets are sharp events (`event_curve`): levels held for 0.2-0.8 s that jump across zero,
  so labels misaligned by a single frame lose about 0.1 CCC. Video 1 (and video 5, with six
  or more videos) holds two people, one disc per half with its own targets, annotated as
  `<video>_left` and `<video>_right`. Video 0 has a stretch where the disc is gone, annotated
  -5 (invalid), like frames without a detectable face.
  Every track except those of videos 1 and 2 also gets face crops,
  `cropped_aligned/<track>/00001.jpg ...` (112 x 112 around its disc), as the organisers
  provide them: no crop where the disc is gone, a few random frames where the "detector"
  missed it, and none for the last 5 frames of video 0, whose length must therefore come from
  its annotation. Videos 1 and 2 are read from the video file: video 1's people each take
  their half of the frame, video 2 the whole frame.
  Layout: `batch1/<name>.mp4`, `cropped_aligned/<track>/` and
  `VA_Estimation_Challenge/{Train_Set,Validation_Set}/<track>.txt`.
- `dvd`: two discs drift slowly apart (label 0); in violent segments (label 1) they rush
  at each other and collide several times a second. Layout:
  `{Training,Validation,Testing}/{videos/<id>.mp4, annotations/<id>.csv}` with `Frame,Label`.

Lengths vary around `frames`; with three or more videos one is shorter than a 64-frame
window. With `audio=True` most videos get a soundtrack that carries a part of the target the
pictures do not (`fgvu.synth.soundtrack`); the pictures stay the same.
"""

from __future__ import annotations

import colorsys
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np

from fgvu.errors import FgvuError
from fgvu.synth import soundtrack

FPS = 30
MARKER = ".fgvu-synth"  # marks a folder this module wrote, so a re-run may replace it
SHORT_VIDEO_FRAMES = 48  # shorter than one 64-frame window
LAYOUT_DIRS = {"aff-wild2": ("batch1", "VA_Estimation_Challenge", "cropped_aligned"),
               "dvd": ("Training", "Validation", "Testing")}
# aff-wild2: which videos hold two people, which are read from the video instead of face crops
PAIR_VIDEOS = (1, 5)
VIDEOS_WITHOUT_CROPS = (1, 2)
CROP_SIZE = 112  # Aff-Wild2's cropped_aligned images are 112 x 112
CROP_MISS_RATE = 0.04  # frames of every crop folder where the "face detector" missed the disc
TRAILING_MISSING_CROPS = 5  # video 0 has no crops for its last frames


class SynthError(FgvuError):
    """Bad arguments for a synthetic dataset, or an output folder that is not ours to fill."""


def write_video_dataset(out, layout: str = "aff-wild2", videos: int = 8, frames: int = 200, seed: int = 0,
                        size: tuple[int, int] = (96, 128), audio: bool = False) -> Path:
    """Write `videos` synthetic videos of about `frames` frames at `size=(H, W)`; return the root.

    `audio`: give most videos a soundtrack carrying a share of the target (some get none).

    The same arguments give the same labels and pixels. An existing root written by an
    earlier call is replaced; any other non-empty folder is refused.
    """
    if layout not in LAYOUT_DIRS:
        raise SynthError(f"synthetic layout must be one of {sorted(LAYOUT_DIRS)}, got {layout!r}")
    height, width = size
    if videos < 1 or frames < 8:
        raise SynthError(f"need at least 1 video of 8 frames, got videos={videos}, frames={frames}")
    if height < 32 or width < 32 or height % 2 or width % 2:
        raise SynthError(f"size must be even and at least 32x32 (H, W), got {size}")
    root = _prepare_root(Path(out), layout)
    rng = np.random.default_rng(seed)
    lengths = _lengths(rng, videos, frames)
    writer = _write_affwild2 if layout == "aff-wild2" else _write_dvd
    sound_rng = np.random.default_rng([seed, 7]) if audio else None  # its own: the pictures stay the same
    writer(root, rng, lengths, (height, width), sound_rng)
    return root


def _prepare_root(root: Path, layout: str) -> Path:
    """An empty root, or one we wrote before (its dataset folders are removed)."""
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise SynthError(f"{root} is not empty and was not written by `fgvu synth videos`; choose another folder")
        for name in {d for dirs in LAYOUT_DIRS.values() for d in dirs}:
            shutil.rmtree(root / name, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text(f"synthetic {layout} dataset written by fgvu.synth.videos\n")
    return root


def _lengths(rng: np.random.Generator, videos: int, frames: int) -> list[int]:
    lengths = rng.integers(int(frames * 0.75), int(frames * 1.25) + 1, size=videos).tolist()
    if videos >= 3:
        lengths[2] = min(SHORT_VIDEO_FRAMES, frames)
    return lengths


# ---- drawing ------------------------------------------------------------------------------


def event_curve(rng: np.random.Generator, n: int, amplitude: float = 0.9, shortest: int = 6, longest: int = 24,
                drift: float = 0.25) -> np.ndarray:
    """A signal of sharp events in [-amplitude, amplitude]: levels held for `shortest`..`longest` frames,
    each jumping across zero from the one before, plus a slow sinusoidal drift of weight `drift`.

    At 30 fps the levels last 0.2-0.8 s, so labels shifted by one frame lose about 0.1 CCC.
    """
    levels = np.empty(n)
    sign, t = rng.choice((-1.0, 1.0)), 0
    while t < n:
        length = int(rng.integers(shortest, longest + 1))
        levels[t:t + length] = sign * rng.uniform(0.3, 1.0)
        sign, t = -sign, t + length
    slow = np.sin(2 * np.pi * np.arange(n) / rng.uniform(90, 240) + rng.uniform(0, 2 * np.pi))
    return (amplitude * ((1 - drift) * levels + drift * slow)).astype(np.float32)


def disc_colour(valence: float, arousal: float) -> np.ndarray:
    """RGB uint8: the hue says valence (+1 red, 0 green, -1 blue), the brightness arousal (-1 dim, +1 full)."""
    hue = (1.0 - valence) / 2.0 * (2.0 / 3.0)
    brightness = 0.4 + 0.6 * (arousal + 1.0) / 2.0
    return (np.array(colorsys.hsv_to_rgb(hue, 1.0, brightness)) * 255).astype(np.uint8)


def valence_colour(valence: float) -> np.ndarray:
    """RGB uint8 of a saturated, fully bright hue: +1 red, 0 green, -1 blue."""
    return disc_colour(valence, 1.0)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A dim, still, slightly textured background (so the codec has something to code)."""
    base = rng.uniform(30, 70)
    ramp = np.linspace(0, rng.uniform(10, 30), width)[None, :, None]
    texture = rng.normal(0, 4, size=(height, width, 1))
    return np.clip(base + ramp + texture, 0, 255).repeat(3, axis=2).astype(np.uint8)


class DiscCanvas:
    """Draws filled discs onto copies of a background."""

    def __init__(self, height: int, width: int):
        self.yy, self.xx = np.mgrid[0:height, 0:width]

    def draw(self, frame: np.ndarray, cx: float, cy: float, radius: float, colour: np.ndarray) -> None:
        inside = (self.yy - cy) ** 2 + (self.xx - cx) ** 2 <= radius**2
        frame[inside] = colour

    def draw_moving(self, frame: np.ndarray, start: np.ndarray, end: np.ndarray, radius: float,
                    colour: np.ndarray, samples: int = 6) -> None:
        """A disc moving from `start` to `end` during the exposure: motion blur, as a camera sees it.

        The smear grows with speed, so a single frame shows how fast the disc moves.
        """
        alpha = np.zeros(self.yy.shape, np.float32)
        for f in np.linspace(0.0, 1.0, samples):
            cx, cy = start + f * (end - start)
            alpha += (self.yy - cy) ** 2 + (self.xx - cx) ** 2 <= radius**2
        alpha = (alpha / samples)[..., None]
        frame[:] = np.rint(frame * (1.0 - alpha) + colour.astype(np.float32) * alpha).astype(np.uint8)


def bounce_path(rng: np.random.Generator, speeds: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """(n, 2) positions of a point moving at `speeds[t]` px/frame, bouncing inside box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    pos = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
    angle = rng.uniform(0, 2 * np.pi)
    turn = rng.uniform(-0.05, 0.05)
    out = np.empty((len(speeds), 2))
    for t, speed in enumerate(speeds):
        out[t] = pos
        angle += turn
        step = speed * np.array([np.cos(angle), np.sin(angle)])
        pos = pos + step
        for k, (lo, hi) in enumerate(((x0, x1), (y0, y1))):
            if not lo <= pos[k] <= hi:
                pos[k] = np.clip(pos[k], lo, hi)
                angle = np.pi - angle if k == 0 else -angle
    return out


# ---- numbered frames (alignment checks) -------------------------------------------------------

NUMBER_BASE = 16


def numbered_frame(k: int, size: tuple[int, int] = (64, 96)) -> np.ndarray:
    """A grey frame whose halves spell `k` (< 256) in base 16; survives lossy coding and resizing."""
    if not 0 <= k < NUMBER_BASE**2:
        raise SynthError(f"numbered frames go up to {NUMBER_BASE**2 - 1}, got {k}")
    height, width = size
    frame = np.empty((height, width, 3), np.uint8)
    frame[:, : width // 2] = 16 + 14 * (k % NUMBER_BASE)
    frame[:, width // 2:] = 16 + 14 * (k // NUMBER_BASE)
    return frame


def read_frame_number(frame: np.ndarray) -> int:
    """The number `numbered_frame` drew, read from the middle of each half."""
    h, w = frame.shape[:2]
    left = frame[h // 4: 3 * h // 4, w // 8: 3 * w // 8].mean()
    right = frame[h // 4: 3 * h // 4, 5 * w // 8: 7 * w // 8].mean()
    return int(round((left - 16) / 14)) + NUMBER_BASE * int(round((right - 16) / 14))


# ---- encoding -----------------------------------------------------------------------------


def video_codec() -> str:
    """'libx264' when the PyAV build has it (the PyPI wheels do), else 'mpeg4' (always built in)."""
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # PyAV raises UnknownCodecError or ValueError depending on the version
        return "mpeg4"


def write_video(path: Path, frames: np.ndarray, fps: int = FPS, audio: soundtrack.Soundtrack | None = None) -> None:
    """Encode (n, H, W, 3) uint8 RGB frames into `path`, near-lossless (colours must survive), with `audio`."""
    import av

    codec = video_codec()
    options = {"preset": "veryfast", "crf": "18"} if codec == "libx264" else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps, 1), options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 8_000_000  # far above what these small frames need
        sound = soundtrack.add_stream(container) if audio is not None else None
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
        if audio is not None:
            soundtrack.mux(container, sound, audio.samples)


# ---- aff-wild2 ------------------------------------------------------------------------------


def _person_track(rng, n: int, box, radius: float, scale: float):
    """(valence [n], arousal [n], positions [n,2]) of one disc: speed 0.5-6 px/frame by arousal."""
    valence = event_curve(rng, n)
    arousal = event_curve(rng, n)
    speeds = scale * (0.5 + (arousal + 1.0) / 2.0 * 5.5)
    inner = (box[0] + radius, box[1] + radius, box[2] - radius, box[3] - radius)
    return valence, arousal, bounce_path(rng, speeds, inner)


def face_crop(frame: np.ndarray, centre: np.ndarray, radius: float, size: int = CROP_SIZE) -> np.ndarray:
    """The square around a disc, as a face detector would crop it: side 2.6 radii, resized to `size`."""
    from PIL import Image

    half = max(2, int(round(1.3 * radius)))
    padded = np.pad(frame, ((half, half), (half, half), (0, 0)), mode="edge")  # discs near the border
    x, y = (int(round(c)) for c in centre)
    square = padded[y: y + 2 * half, x: x + 2 * half]
    return np.asarray(Image.fromarray(square).resize((size, size), Image.BILINEAR))


def write_crops(folder: Path, crops: dict[int, np.ndarray]) -> None:
    """`cropped_aligned/<track>/`: one JPEG per frame that has a crop, named by its 1-based frame number."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for frame, crop in crops.items():
        Image.fromarray(crop).save(folder / f"{frame + 1:05d}.jpg", quality=95)


def _crop_misses(rng, n: int, video: int, absent: np.ndarray) -> np.ndarray:
    """Frames of one track without a crop: where the disc is gone, random misses, video 0's last frames."""
    missed = absent | (rng.random(n) < CROP_MISS_RATE)
    if video == 0:
        missed[-TRAILING_MISSING_CROPS:] = True
    return missed


def _write_affwild2(root: Path, rng, lengths: list[int], size: tuple[int, int], sound_rng=None) -> None:
    height, width = size
    canvas = DiscCanvas(height, width)
    scale = width / 128
    radius = 0.2 * height
    n_videos = len(lengths)
    for i, n in enumerate(lengths):
        name = f"synth-{i:03d}"
        split = "Validation_Set" if n_videos >= 2 and i % 4 == 3 else "Train_Set"
        pair = i in PAIR_VIDEOS  # two people: left and right halves
        boxes = {"_left": (0, 0, width / 2, height), "_right": (width / 2, 0, width, height)} if pair else \
            {"": (0, 0, width, height)}
        r = radius * (0.8 if pair else 1.0)
        tracks = {suffix: _person_track(rng, n, box, r, scale) for suffix, box in boxes.items()}
        absent = np.zeros(n, bool)
        if i == 0 and n >= 60:  # a stretch with nobody visible: invalid frames
            start = int(rng.integers(10, n - 40))
            absent[start:start + 20] = True
        bg = background(rng, height, width)
        video = np.empty((n, height, width, 3), np.uint8)
        for t in range(n):
            video[t] = bg
            if absent[t]:
                continue
            for valence, arousal, pos in tracks.values():
                end = pos[min(t + 1, n - 1)]
                canvas.draw_moving(video[t], pos[t], end, r, disc_colour(float(valence[t]), float(arousal[t])))
        with_sound = sound_rng is not None and soundtrack.has_track(i)
        sound = soundtrack.va_soundtrack(sound_rng, n, FPS) if with_sound else None
        write_video(root / "batch1" / f"{name}.mp4", video, audio=sound)
        for suffix, (valence, arousal, pos) in tracks.items():
            arousal = soundtrack.mix_va(arousal, sound)
            lines = ["valence,arousal"] + [
                "-5,-5" if absent[t] else f"{valence[t]:.4f},{arousal[t]:.4f}" for t in range(n)]
            ann = root / "VA_Estimation_Challenge" / split / f"{name}{suffix}.txt"
            ann.parent.mkdir(parents=True, exist_ok=True)
            ann.write_text("\n".join(lines) + "\n")
            if i not in VIDEOS_WITHOUT_CROPS:
                missed = _crop_misses(rng, n, i, absent)
                write_crops(root / "cropped_aligned" / f"{name}{suffix}",
                            {t: face_crop(video[t], pos[t], r) for t in range(n) if not missed[t]})


# ---- dvd ------------------------------------------------------------------------------------


def _violent_segments(rng, n: int) -> np.ndarray:
    """Per-frame 0/1 labels: 0-2 violent segments of 20-60 frames (about a third of the video)."""
    labels = np.zeros(n, np.int64)
    if n < 40:
        labels[n // 3: 2 * n // 3] = 1
        return labels
    for _ in range(int(rng.integers(1, 3))):
        length = int(rng.integers(20, min(60, n // 2) + 1))
        start = int(rng.integers(0, n - length + 1))
        labels[start:start + length] = 1
    return labels


def _dvd_split(i: int, n_videos: int) -> str:
    """Roughly 60/20/20, with at least one video in each split when there are three or more."""
    if n_videos >= 3 and i % 5 in (1, 3):
        return "Validation" if i % 5 == 1 else "Testing"
    if n_videos == 2 and i == 1:
        return "Validation"
    return "Training"


def _write_dvd(root: Path, rng, lengths: list[int], size: tuple[int, int], sound_rng=None) -> None:
    height, width = size
    canvas = DiscCanvas(height, width)
    radius = 0.15 * height
    scale = width / 128
    cy = height / 2
    for i, n in enumerate(lengths):
        name = f"synth-{i:03d}"
        labels = _violent_segments(rng, n)
        colours = (valence_colour(float(rng.uniform(0.3, 1.0))), valence_colour(float(rng.uniform(-1.0, -0.3))))
        calm = [bounce_path(rng, np.full(n, 0.6 * scale), box) for box in (
            (radius, radius, width / 2 - radius, height - radius),
            (width / 2 + radius, radius, width - radius, height - radius))]
        period = rng.uniform(6, 10)  # frames between collisions
        bg = background(rng, height, width)
        video = np.empty((n, height, width, 3), np.uint8)
        for t in range(n):
            video[t] = bg
            if labels[t]:
                # Both discs rush to the centre and touch at every half period.
                gap = radius + 0.3 * width * abs(np.sin(np.pi * t / period))
                jitter = rng.uniform(-3, 3, size=2) * scale
                centres = ((width / 2 - gap, cy + jitter[0]), (width / 2 + gap, cy + jitter[1]))
            else:
                centres = (tuple(calm[0][t]), tuple(calm[1][t]))
            for (x, y), colour in zip(centres, colours):
                canvas.draw(video[t], x, y, radius, colour)
        split = _dvd_split(i, len(lengths))
        with_sound = sound_rng is not None and soundtrack.has_track(i)
        sound = soundtrack.violence_soundtrack(sound_rng, labels, FPS) if with_sound else None
        labels = soundtrack.mix_violence(labels, sound)
        write_video(root / split / "videos" / f"{name}.mp4", video, audio=sound)
        ann = root / split / "annotations" / f"{name}.csv"
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text("Frame,Label\n" + "".join(f"{t},{labels[t]}\n" for t in range(n)))
