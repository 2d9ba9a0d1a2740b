"""Audio rows on the image grid: each track encoded once, in overlapping chunks, then pooled per step.

Audio shares the image grid (`fgvu.modalities`): one row per image-grid frame f, covering that
frame's step of time, [f, f + image_every) frames, i.e. [f / fps, (f + image_every) / fps)
seconds (cut at the video's end). Audio step k of a window therefore covers the same seconds
as image step k, and overlapping windows share rows, as they share image rows.

Encoding: the track is cut into chunks of `chunk_seconds`, each fed with `context_seconds` of
audio on either side. A chunk keeps only the encoder frames whose centre lies in its own
stretch, so the frames of all chunks form the one frame grid of the whole track (frame m
centred at m * hop + receptive_field / 2), and every second of audio is encoded once plus the
context around chunk edges, however many windows overlap it. Chunks of equal length go to the
encoder together, `batch_size` at a time.

Pooling: a row is the mean of the frames centred in its span (widened to one hop when the span
is shorter, so a row always gets its nearest frame; at the track's very ends, the end frame
within one hop). A row is valid when at least half of its
span is real sound (`AudioTrack.valid`) and some frame fell in it; invalid rows are zeros.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from fgvu.extract.audio_source import RATE, AudioTrack
from fgvu.extract.encoders.base import AudioEncoder, EncoderError

MIN_VALID_SHARE = 0.5  # of a row's span that must be real sound


@dataclass(frozen=True)
class Chunk:
    """One encoder input: samples [start, stop); frames centred in [keep_from, keep_to) are kept."""

    start: int
    stop: int
    keep_from: int
    keep_to: int


@dataclass
class AudioCounts:
    """Encoder work for audio: track seconds, samples fed to the encoder, encoder calls."""

    seconds: float = 0.0
    samples: int = 0
    calls: int = 0


@dataclass(frozen=True)
class StepSpans:
    """The image-grid rows of one video as time spans: row r covers frames [frames[r], frames[r] + every)."""

    frames: np.ndarray  # the image-grid frame of each row (sorted)
    every: int  # image-grid spacing in frames
    n_frames: int
    fps: float

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """(start, stop) of every row's span in track samples (float), cut at the video's end."""
        frames = np.asarray(self.frames, np.float64)
        start = frames / self.fps * RATE
        stop = np.minimum(frames + self.every, self.n_frames) / self.fps * RATE
        return start, stop


def plan_chunks(n_samples: int, encoder: AudioEncoder) -> list[Chunk]:
    """The chunks that encode a track of `n_samples` once (see the module docstring)."""
    hop, field = encoder.hop, encoder.receptive_field
    core = max(hop, int(round(encoder.chunk_seconds * RATE / hop)) * hop)
    context = max(0, int(round(encoder.context_seconds * RATE / hop)) * hop)
    if n_samples < field:
        return []
    chunks = []
    for lo in range(0, n_samples, core):
        hi = lo + core
        last = hi + context >= n_samples  # the rest fits in this chunk's right context: take it all
        chunks.append(Chunk(max(0, lo - context), min(n_samples, hi + context + field), lo,
                            n_samples + field if last else hi))
        if last:
            break
    return chunks


def encode_track(encoder: AudioEncoder, samples: np.ndarray, counts: AudioCounts | None = None
                 ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (features [N, D], frame centres [N] in samples) chunk by chunk, in time order.

    Chunks of one length are batched; every chunk's kept frames lie on the track's frame grid.
    """
    chunks = plan_chunks(len(samples), encoder)
    i = 0
    while i < len(chunks):
        length = chunks[i].stop - chunks[i].start
        j = i
        while j < len(chunks) and j - i < encoder.batch_size and chunks[j].stop - chunks[j].start == length:
            j += 1
        batch = chunks[i:j]
        waves = np.stack([samples[c.start: c.stop] for c in batch]).astype(np.float32, copy=False)
        out = np.asarray(encoder.encode_waves(waves), np.float32)
        n_frames = encoder.frames_for(length)
        if out.shape[:2] != (len(batch), n_frames):
            raise EncoderError(f"audio encoder returned {out.shape[:2]} frames for {len(batch)} inputs of "
                               f"{length} samples; expected {(len(batch), n_frames)}")
        if counts is not None:
            counts.samples += waves.size
            counts.calls += 1
        for chunk, features in zip(batch, out):
            centres = chunk.start + np.arange(n_frames) * encoder.hop + encoder.receptive_field // 2
            keep = (centres >= chunk.keep_from) & (centres < chunk.keep_to)
            yield features[keep], centres[keep]
        i = j


def _normalized(track: AudioTrack) -> np.ndarray:
    """The waveform at zero mean and unit variance over its valid samples (zeros elsewhere)."""
    x = track.samples
    if not track.has_sound:
        return np.zeros_like(x)
    real = x[track.valid].astype(np.float64)
    out = ((x - real.mean()) / np.sqrt(real.var() + 1e-7)).astype(np.float32)
    out[~track.valid] = 0.0
    return out


def audio_rows(encoder: AudioEncoder, track: AudioTrack, spans: StepSpans,
               counts: AudioCounts | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features [R, D] float32 and validity [R] bool of the rows `spans` describes."""
    start, stop = spans.samples()
    n_rows = len(start)
    mid, half = (start + stop) / 2, np.maximum(stop - start, encoder.hop) / 2
    pool_lo, pool_hi = mid - half, mid + half  # the span, widened to at least one hop
    sums = np.zeros((n_rows, encoder.dim), np.float64)
    hits = np.zeros(n_rows, np.int64)
    if counts is not None:
        counts.seconds += track.seconds
    ends: list[tuple[float, np.ndarray]] = []  # (centre, features) of the track's first and last frames
    if track.has_sound and n_rows:
        samples = _normalized(track) if encoder.normalize else track.samples
        for features, centres in encode_track(encoder, samples, counts):
            if not len(centres):
                continue
            if not ends:
                ends.append((float(centres[0]), features[0]))
            ends[1:] = [(float(centres[-1]), features[-1])]
            # the rows whose pooling span can hold one of these frames
            for r in np.flatnonzero((pool_lo <= centres[-1]) & (pool_hi > centres[0])).tolist():
                a, b = np.searchsorted(centres, (pool_lo[r], pool_hi[r]), side="left")
                if b > a:
                    sums[r] += features[a:b].sum(axis=0, dtype=np.float64)
                    hits[r] += b - a
    # rows at the very ends of the track (before the first frame's centre, after the last's)
    # take the end frame when it lies within one hop
    for centre, features in ends:
        near = (hits == 0) & (np.abs(mid - centre) <= encoder.hop)
        sums[near], hits[near] = features, 1
    share = np.array([_valid_share(track.valid, a, b) for a, b in zip(start, stop)])
    valid = (hits > 0) & (share >= MIN_VALID_SHARE)
    rows = np.where(valid[:, None], sums / np.maximum(hits, 1)[:, None], 0.0).astype(np.float32)
    return rows, valid


def _valid_share(valid: np.ndarray, start: float, stop: float) -> float:
    lo, hi = int(round(start)), int(round(stop))
    lo, hi = max(lo, 0), min(max(hi, lo + 1), len(valid))
    return float(np.count_nonzero(valid[lo:hi])) / max(hi - lo, 1) if hi > lo else 0.0
