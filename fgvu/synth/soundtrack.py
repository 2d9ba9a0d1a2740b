"""Soundtracks for synthetic videos: the sound carries a part of the target that the pictures do not.

The picture generator (`fgvu.synth.videos`) hands over its per-frame targets; this module
draws the sound's own share, returns the targets with that share mixed in, and renders the
samples that carry it. So only a model that hears can explain the whole target.

- va: a smooth per-frame cue c in [-1, 1] drives a tone whose pitch glides from 220 to 880 Hz
  and whose loudness rises from -30 to -6 dBFS with c; the annotated arousal is the mean of
  the pictures' arousal (the disc's speed) and c.
- violence: besides the fights the pictures show, a fight is heard off screen in some calm
  stretches: loud impact bursts and a shout, while the discs drift on. Every violent frame
  (seen or heard) sounds like a fight, and is labelled violent.

Every video gets a soundtrack except one in `SILENT_EVERY`, which has no audio stream at all
(its targets are the pictures' alone). A quiet noise floor keeps real sound from ever being
digital silence. Tracks are AAC, `RATE` Hz mono, muxed next to the video stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RATE = 48000
SILENT_EVERY = 5  # video i has no audio stream when i % SILENT_EVERY == SILENT_EVERY - 1
AAC_FRAME = 1024
NOISE_DBFS = -50.0


@dataclass
class Soundtrack:
    """A video's sound: the per-frame share of the target it carries, and its samples."""

    cue: np.ndarray  # per frame: va, the arousal share in [-1, 1]; violence, 1 where a fight is heard
    samples: np.ndarray  # float32 mono at RATE


def has_track(index: int) -> bool:
    """Whether synthetic video `index` gets an audio stream (some get none)."""
    return index % SILENT_EVERY != SILENT_EVERY - 1


def _db(level: np.ndarray | float) -> np.ndarray:
    return np.power(10.0, np.asarray(level) / 20.0)


def _per_sample(per_frame: np.ndarray, fps: float) -> np.ndarray:
    """A per-frame curve held over each frame's samples (frame k covers [k / fps, (k + 1) / fps))."""
    n = int(round(len(per_frame) / fps * RATE))
    frame = np.minimum((np.arange(n) * fps / RATE).astype(np.int64), len(per_frame) - 1)
    return np.asarray(per_frame, np.float64)[frame]


def smooth_cue(rng: np.random.Generator, n: int, amplitude: float = 1.0) -> np.ndarray:
    """A smooth random signal in [-amplitude, amplitude]: three sinusoids of 2-8 s periods (at 30 fps).

    Smooth on purpose: the pictures' share of arousal carries the sharp events; the sound's share
    only has to be a part the pictures do not show."""
    t = np.arange(n)[:, None]
    periods = rng.uniform(60, 240, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    weights = rng.uniform(0.5, 1.0, size=3)
    x = (weights * np.sin(2 * np.pi * t / periods + phases)).sum(1) / weights.sum()
    x = x - x.mean()
    peak = np.abs(x).max()
    return (amplitude * x / peak if peak > 0 else x).astype(np.float32)


def va_soundtrack(rng: np.random.Generator, n_frames: int, fps: float) -> Soundtrack:
    """A gliding tone: pitch and loudness follow a smooth cue of 2-8 s periods."""
    cue = smooth_cue(rng, n_frames)
    c = _per_sample(cue, fps)
    pitch = 220.0 * np.power(4.0, (c + 1.0) / 2.0)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    loud = _db(-30.0 + 24.0 * (c + 1.0) / 2.0)
    noise = rng.normal(scale=_db(NOISE_DBFS), size=len(c))
    return Soundtrack(cue, (loud * np.sin(phase) + noise).astype(np.float32))


def mix_va(arousal: np.ndarray, sound: Soundtrack | None) -> np.ndarray:
    """The annotated arousal: the pictures' and the sound's shares averaged (the pictures' alone without sound)."""
    if sound is None:
        return arousal
    return (0.5 * (np.asarray(arousal) + sound.cue)).astype(np.float32)


def violence_soundtrack(rng: np.random.Generator, seen: np.ndarray, fps: float) -> Soundtrack:
    """A fight heard off screen in a calm stretch, on top of the fights `seen` (0/1 per frame)."""
    heard = np.asarray(seen, bool).copy()
    calm = np.flatnonzero(~heard)
    if len(calm) > 40:
        length = int(rng.integers(20, min(50, len(calm) // 2) + 1))
        start = int(rng.choice(calm[: len(calm) - length]))
        heard[start: start + length] = True  # may touch a seen fight: both are violent
    c = _per_sample(heard.astype(np.float64), fps) > 0
    t = np.arange(len(c)) / RATE
    samples = rng.normal(scale=_db(NOISE_DBFS), size=len(c)) + _db(-36.0) * np.sin(2 * np.pi * 100 * t)
    # impacts: 40 ms noise bursts every 0.15-0.3 s; a shout: a 600 Hz tone with vibrato
    at = 0.0
    while len(t) and at < t[-1]:
        i = int(at * RATE)
        if c[i]:
            burst = min(int(0.04 * RATE), len(c) - i)
            samples[i: i + burst] += _db(-6.0) * rng.normal(size=burst) * np.exp(-np.arange(burst) / (0.01 * RATE))
        at += float(rng.uniform(0.15, 0.3))
    shout = _db(-12.0) * np.sin(2 * np.pi * (600 * t + 8 * np.sin(2 * np.pi * 5 * t)))
    samples += np.where(c, shout, 0.0)
    return Soundtrack(heard.astype(np.float32), np.clip(samples, -1, 1).astype(np.float32))


def mix_violence(labels: np.ndarray, sound: Soundtrack | None) -> np.ndarray:
    """Violent where a fight is seen or heard."""
    if sound is None:
        return labels
    return np.maximum(labels, sound.cue.astype(labels.dtype))


def add_stream(container):
    """An AAC mono audio stream in `container`, added before anything is muxed."""
    return container.add_stream("aac", rate=RATE, layout="mono")


def mux(container, stream, samples: np.ndarray) -> None:
    """Encode `samples` (float mono at RATE) into `stream` and mux them."""
    import av

    padded = np.pad(samples, (0, -len(samples) % AAC_FRAME)).astype(np.float32)
    for pts in range(0, len(padded), AAC_FRAME):
        frame = av.AudioFrame.from_ndarray(padded[None, pts: pts + AAC_FRAME], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = RATE, pts
        container.mux(stream.encode(frame))
    container.mux(stream.encode())
