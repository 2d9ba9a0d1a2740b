"""Synthetic feature caches with planted, learnable signal: stage 2 without videos or encoders.

Every video has six smooth latent processes over its frames, two per modality. The targets
are sums over modalities, so each stream carries only a third of the signal:

    valence = tanh(0.9 * (img_v + vid_v + txt_v) / sqrt(3))
    arousal = tanh(0.9 * (img_a + vid_a + txt_a) / sqrt(3))
    violent = (img_v + vid_v + txt_v) / sqrt(3) > 0.5

The image table sees (img_v, img_a) at its grid frames, the VideoPrism clips see
(vid_v, vid_a) at their clip frames (with fresh noise per window, as a temporal encoder
would), and the text table sees (txt_v, txt_a) coarsely quantised, as a caption would
describe them. Each stream adds distractor processes of larger amplitude, per-video offsets,
per-dimension scales and white noise, so normalisation and temporal context both matter.
A model that fuses the three streams can explain the targets; any single stream cannot.

With `audio=True` a fourth stream joins: the targets take a fourth pair of latents
(aud_v, aud_a) into the sums, weighted sqrt(2) so that the sound carries 40% of the targets'
variance (the sums are divided by sqrt(5)), and the audio table sees them on the image grid,
as the audio modality stores them. Every fifth video has no soundtrack (all its audio
rows masked) and one has a masked gap, so only a model that uses the mask gets the most out
of it. `shuffle_audio` permutes the audio rows over the whole cache: the control in which the
sound no longer belongs to its pictures.

A few videos have invalid frames (-5, masked); one validation video is shorter than a window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvu.cache import CacheError, CacheSpec, PartWriter, VideoRecord
from fgvu.sampling import SamplingPlan
from fgvu.tasks import TASKS

DEFAULT_DIMS = {"video": 48, "image": 48, "text": 32}
AUDIO_DIM = 32
INVALID = -5.0
N_DISTRACTORS = 4
# Correlation lengths (frames) of the latent processes: captions describe slow content.
LENGTH_SCALE = {"image": 24.0, "video": 16.0, "text": 64.0, "audio": 16.0}
# the sound's share of the target's variance is AUDIO_WEIGHT^2 / (3 + AUDIO_WEIGHT^2) = 40%
AUDIO_WEIGHT = float(np.sqrt(2.0))
SILENT_EVERY = 5  # with audio, video i has no soundtrack when i % SILENT_EVERY == SILENT_EVERY - 1
SHORT_VIDEO_FRAMES = 40  # shorter than the 64-frame window: one padded window


def _smooth_process(rng: np.random.Generator, n: int, scale: float, k: int = 1) -> np.ndarray:
    """(n, k) Gaussian processes with unit variance per video and correlation length `scale`."""
    pad = int(4 * scale)
    noise = rng.normal(size=(n + 2 * pad, k))
    t = np.arange(-pad, pad + 1)
    kernel = np.exp(-0.5 * (t / scale) ** 2)
    smooth = np.stack([np.convolve(noise[:, j], kernel, mode="valid") for j in range(k)], axis=1)[:n]
    smooth -= smooth.mean(axis=0)
    return smooth / np.maximum(smooth.std(axis=0), 1e-6)


class _Stream:
    """How one modality turns its latents into features: fixed directions, scales and offsets."""

    def __init__(self, rng: np.random.Generator, dim: int):
        if dim < 4:
            raise CacheError(f"synthetic feature dims must be at least 4, got {dim}")
        # the two planted directions: orthonormal columns (a reduced QR of the two columns used,
        # equal to the full QR's first two and 10^4 times faster at 768 dims)
        basis, _ = np.linalg.qr(rng.normal(size=(dim, dim))[:, :2])
        self.signal = basis.T * 2.0  # (2, dim): the two planted latents
        self.distract = rng.normal(size=(N_DISTRACTORS, dim)) * 1.5 / np.sqrt(N_DISTRACTORS)
        self.scale = np.exp(rng.normal(scale=0.5, size=dim))  # unequal per-dimension scales
        self.bias = rng.normal(scale=2.0, size=dim)
        self.dim = dim

    def features(self, latents: np.ndarray, distractors: np.ndarray, video_offset: np.ndarray,
                 rng: np.random.Generator, noise: float = 0.6) -> np.ndarray:
        clean = latents @ self.signal + distractors @ self.distract + video_offset
        return ((clean + rng.normal(scale=noise, size=clean.shape)) * self.scale + self.bias).astype(np.float32)


def parse_dims(text: str) -> int | dict[str, int]:
    """`--dims` text: "768" (every modality) or "video=768,image=768,text=512" (a subset drops the others)."""
    text = text.strip()
    try:
        if "=" not in text:
            return int(text)
        dims = {}
        for item in text.split(","):
            name, _, value = item.partition("=")
            dims[name.strip()] = int(value)
        return dims
    except ValueError:
        raise CacheError(f"--dims {text!r}: expected a number such as 768 or modality=number pairs such as "
                         f"video=768,image=768,text=512 (modalities: {', '.join(DEFAULT_DIMS)})") from None


def _resolve_dims(dims: int | dict[str, int] | None, audio: bool) -> dict[str, int]:
    known = {**DEFAULT_DIMS, "audio": AUDIO_DIM} if audio else DEFAULT_DIMS
    if dims is None:
        return dict(known)
    if isinstance(dims, int):
        return {m: dims for m in known}
    unknown = set(dims) - set(known)
    if unknown:
        hint = " (pass audio=True for an audio stream)" if unknown == {"audio"} else ""
        raise CacheError(f"unknown modalities in dims: {sorted(unknown)}; known: {sorted(known)}{hint}")
    out = {m: int(d) for m, d in dims.items()}
    return {**out, "audio": out.get("audio", AUDIO_DIM)} if audio else out


def _assign_splits(rng: np.random.Generator, n: int) -> list[str]:
    """60/20/20 train/val/test by video (at least one video in each when n >= 3)."""
    n_val = max(1, round(0.2 * n)) if n >= 3 else 0
    n_test = max(1, round(0.2 * n)) if n >= 3 else 0
    splits = ["val"] * n_val + ["test"] * n_test + ["train"] * (n - n_val - n_test)
    return [splits[i] for i in rng.permutation(n)]


def _caption(quantised: np.ndarray) -> str:
    mood = {-2: "grim", -1: "tense", 0: "plain", 1: "pleasant", 2: "joyful"}[int(np.clip(quantised[0], -2, 2))]
    pace = {-2: "still", -1: "slow", 0: "steady", 1: "lively", 2: "frantic"}[int(np.clip(quantised[1], -2, 2))]
    return f"a {pace} scene, {mood} in tone"


def write_feature_cache(
    out: str | Path,
    task: str = "va",
    videos: int = 24,
    frames: int = 600,
    seed: int = 0,
    dims: int | dict[str, int] | None = None,
    *,
    plan: SamplingPlan | None = None,
    shuffle_train_labels: bool = False,
    track_pairs: int = 0,
    audio: bool = False,
    shuffle_audio: bool = False,
) -> Path:
    """Write a valid synthetic feature cache at `out` and return its path.

    `dims` sets the feature width of every modality (an int) or of each ("video", "image",
    "text", with `audio` also "audio"; a subset drops the others). Video lengths vary around
    `frames`; one validation video is shorter than a window. `plan` overrides the sampling plan
    (e.g. extra clip lengths). `shuffle_train_labels` permutes the targets over all frames of
    all training videos: the negative control, where no feature can predict the training
    labels. `audio` adds the audio stream and its share of the targets (module docstring);
    `shuffle_audio` permutes the audio rows over the cache (its control). `track_pairs` names the
    first 2k videos as k `_left`/`_right` pairs of one recording, in one split.
    """
    if task not in TASKS:
        raise CacheError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    if videos < 1 or frames < 1:
        raise CacheError(f"need at least one video and one frame, got videos={videos}, frames={frames}")
    out = Path(out)
    if (out / "cache.json").exists():
        raise CacheError(f"cache {out} already exists; choose a new directory")
    if shuffle_audio and not audio:
        raise CacheError("shuffle_audio needs audio=True")
    dims = _resolve_dims(dims, audio)
    plan = plan or SamplingPlan()
    rng = np.random.default_rng(seed)
    streams = {m: _Stream(rng, d) for m, d in dims.items()}
    encoders = {m: {"name": f"synthetic-{m}", "variant": "synthetic", "dim": d, "preprocessing": {},
                    "checkpoint": f"synthetic:seed={seed}"} for m, d in dims.items()}
    spec = CacheSpec(dataset=f"synthetic-{task}", task=task, sampling=plan, encoders=encoders, dims=dims)

    splits = _assign_splits(rng, videos)
    names = [f"synth-{i:03d}" for i in range(videos)]
    for j in range(min(track_pairs, videos // 2)):
        names[2 * j], names[2 * j + 1] = f"synth-{2 * j:03d}_left", f"synth-{2 * j:03d}_right"
        splits[2 * j + 1] = splits[2 * j]
    lengths = np.maximum(1, np.round(frames * rng.uniform(0.7, 1.3, size=videos))).astype(int)
    val_rows = [i for i, s in enumerate(splits) if s == "val"]
    if val_rows:
        lengths[val_rows[0]] = min(SHORT_VIDEO_FRAMES, lengths[val_rows[0]])
    # invalid stretches in the first training video and the last validation video
    train_rows = [i for i, s in enumerate(splits) if s == "train"]
    with_invalid = set(train_rows[:1] + val_rows[-1:])
    roles = ("image", "video", "text", "audio") if audio else ("image", "video", "text")
    # one generator per video: its targets do not depend on the dims or the clip lengths
    records = (_video_record(names[i], splits[i], int(lengths[i]), task, plan, streams,
                             np.random.default_rng([seed, 2, i]), invalid=i in with_invalid, roles=roles,
                             sound=_soundtrack_kind(i, with_invalid))
               for i in range(videos))
    if shuffle_train_labels or shuffle_audio:  # these need every video at once
        records = list(records)
    if shuffle_train_labels:
        _shuffle_targets([records[i] for i in train_rows], np.random.default_rng([seed, 1]))
    if shuffle_audio:
        _shuffle_audio(records, np.random.default_rng([seed, 3]))
    with PartWriter(out, spec, 0) as writer:
        for rec in records:  # otherwise one video in memory at a time
            writer.append_video(rec)
    return out


def _shuffle_targets(records: list[VideoRecord], rng: np.random.Generator) -> None:
    """Permute the targets (with their masks) over all frames of `records`, in place.

    Its own generator, so a shuffled cache equals the plain one except for these targets.
    """
    targets = np.concatenate([r.targets for r in records])
    mask = np.concatenate([r.target_mask for r in records])
    order = rng.permutation(len(targets))
    bounds = np.cumsum([0] + [r.n_frames for r in records])
    for r, lo, hi in zip(records, bounds[:-1], bounds[1:]):
        r.targets, r.target_mask = targets[order[lo:hi]], mask[order[lo:hi]]


def _soundtrack_kind(i: int, with_invalid: set[int]) -> str:
    """'none' (no soundtrack), 'gap' (a masked stretch) or 'full', for synthetic video i."""
    if i % SILENT_EVERY == SILENT_EVERY - 1:
        return "none"
    return "gap" if i in with_invalid else "full"


def _shuffle_audio(records: list[VideoRecord], rng: np.random.Generator) -> None:
    """Permute the audio rows (with their masks) over all videos, in place."""
    features = np.concatenate([r.audio for r in records])
    mask = np.concatenate([r.audio_mask for r in records])
    order = rng.permutation(len(features))
    bounds = np.cumsum([0] + [len(r.audio) for r in records])
    for r, lo, hi in zip(records, bounds[:-1], bounds[1:]):
        r.audio, r.audio_mask = features[order[lo:hi]], mask[order[lo:hi]]


def _video_record(name: str, split: str, n: int, task: str, plan: SamplingPlan, streams: dict[str, _Stream],
                  rng: np.random.Generator, invalid: bool, roles: tuple[str, ...] = ("image", "video", "text"),
                  sound: str = "full") -> VideoRecord:
    """One synthetic video: latents, targets and the features each stream sees."""
    lay = plan.layout(n)
    latents = {m: _smooth_process(rng, n, LENGTH_SCALE[m], 2) + rng.normal(scale=0.3, size=2) for m in roles}
    weights = {m: AUDIO_WEIGHT if m == "audio" else 1.0 for m in roles}
    drive = sum(weights[m] * latents[m] for m in roles) / np.sqrt(sum(w * w for w in weights.values()))  # (n, 2)
    targets = TASKS[task].synthetic_targets(drive)
    mask = np.ones_like(targets, dtype=bool)
    if invalid:
        start = int(rng.integers(0, max(1, n - n // 8)))
        mask[start : start + max(1, n // 8)] = False
        targets[~mask] = INVALID

    def stream_features(role: str, frames_: np.ndarray) -> np.ndarray:
        s = streams[role]
        lat = latents[role][frames_]
        if role == "text":  # a caption names a coarse state, not the exact value
            lat = np.round(lat * 2) / 2
        distract = _smooth_process(rng, n, LENGTH_SCALE[role], N_DISTRACTORS)[frames_]
        return s.features(lat, distract, rng.normal(scale=0.7, size=s.dim), rng)

    rec = VideoRecord(
        name=name, split=split, n_frames=n, fps=30.0, width=128, height=96,
        window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index, valid=lay.valid,
        targets=targets, target_mask=mask, image_frame=lay.image_frames, caption_frame=lay.caption_frames,
    )
    if "image" in streams:
        rec.image = stream_features("image", lay.image_frames)
    if "text" in streams:
        rec.text = stream_features("text", lay.caption_frames)
        rec.captions = [_caption(np.round(latents["text"][f] * 2)) for f in lay.caption_frames]
    if "video" in streams:
        for t, clip_frames in lay.clip_frames.items():
            flat = stream_features("video", clip_frames.ravel())
            rec.video[t] = flat.reshape(*clip_frames.shape, -1)
    if "audio" in streams:
        mask = np.full(len(lay.image_frames), sound != "none")
        if sound == "gap":
            start = int(rng.integers(0, max(1, len(mask) - len(mask) // 6)))
            mask[start: start + max(1, len(mask) // 6)] = False
        rec.audio = np.where(mask[:, None], stream_features("audio", lay.image_frames), 0).astype(np.float32)
        rec.audio_mask = mask
    return rec
