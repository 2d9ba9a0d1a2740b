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
encoder together, `batch_size` at a time. With `normalize`, each chunk's input is normalized over
its own valid samples (`chunk_input`). Every chunk but the last is fixed once the track is known
to reach past its right context, so a stream (`fgvu.inference.stream_audio`) encodes the same
chunks as they arrive and gets the same features.

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


def encode_chunks(encoder: AudioEncoder, samples: np.ndarray, valid: np.ndarray | None, chunks: list[Chunk],
                  counts: AudioCounts | None = None, offset: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (features [N, D], frame centres [N] in track samples) of `chunks`, in order.

    `samples[i]` (and `valid[i]`; None: all valid) is track sample `offset + i`. Consecutive chunks
    of one length are batched, `batch_size` at a time; each chunk's input is normalized on its own
    (`chunk_input`), so a chunk's features depend on its own samples only, whoever encodes it.
    """
    i = 0
    while i < len(chunks):
        length = chunks[i].stop - chunks[i].start
        j = i
        while j < len(chunks) and j - i < encoder.batch_size and chunks[j].stop - chunks[j].start == length:
            j += 1
        batch = chunks[i:j]
        waves = np.stack([chunk_input(samples, valid, c, encoder.normalize, offset) for c in batch])
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


def encode_track(encoder: AudioEncoder, samples: np.ndarray, counts: AudioCounts | None = None,
                 valid: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (features [N, D], frame centres [N] in samples) chunk by chunk, in time order.

    Chunks of one length are batched; every chunk's kept frames lie on the track's frame grid.
    """
    yield from encode_chunks(encoder, samples, valid, plan_chunks(len(samples), encoder), counts)


def chunk_input(samples: np.ndarray, valid: np.ndarray | None, chunk: Chunk, normalize: bool,
                offset: int = 0) -> np.ndarray:
    """The waveform a chunk feeds the encoder: its samples, with `normalize` at zero mean and unit
    variance over its valid samples and zeros where not valid.

    Per chunk, as a transformers feature extractor normalizes each input it is given, and not over
    the whole track: a stream knows a chunk's samples when it encodes it, never the whole track's.
    """
    x = samples[chunk.start - offset: chunk.stop - offset].astype(np.float32, copy=False)
    if not normalize:
        return x
    ok = np.ones(len(x), bool) if valid is None else valid[chunk.start - offset: chunk.stop - offset]
    if not ok.any():
        return np.zeros_like(x)
    real = x[ok].astype(np.float64)
    out = ((x - real.mean()) / np.sqrt(real.var() + 1e-7)).astype(np.float32)
    out[~ok] = 0.0
    return out


class RowPool:
    """Encoded frames summed into the rows whose (widened) spans hold their centres, then averaged.

    `add` takes frames chunk by chunk in time order, as `encode_chunks` yields them; `finish` gives
    the rows. The offline path pools a whole track through one; a stream pools one window's rows.
    """

    def __init__(self, start: np.ndarray, stop: np.ndarray, encoder: AudioEncoder):
        self.start, self.stop, self.hop = np.asarray(start, np.float64), np.asarray(stop, np.float64), encoder.hop
        self.mid, half = (self.start + self.stop) / 2, np.maximum(self.stop - self.start, encoder.hop) / 2
        self.lo, self.hi = self.mid - half, self.mid + half  # the span, widened to at least one hop
        self.sums = np.zeros((len(self.start), encoder.dim), np.float64)
        self.hits = np.zeros(len(self.start), np.int64)

    def add(self, features: np.ndarray, centres: np.ndarray) -> None:
        if not len(centres):
            return
        # the rows whose pooling span can hold one of these frames
        for r in np.flatnonzero((self.lo <= centres[-1]) & (self.hi > centres[0])).tolist():
            a, b = np.searchsorted(centres, (self.lo[r], self.hi[r]), side="left")
            if b > a:
                self.sums[r] += features[a:b].sum(axis=0, dtype=np.float64)
                self.hits[r] += b - a

    def finish(self, valid: np.ndarray, ends, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(rows [R, D] float32, valid [R]). `ends`: (centre, features) of the track's first and last
        frames, which rows at the very ends take when within one hop; `valid[i]` is track sample
        `offset + i`."""
        sums, hits = self.sums.copy(), self.hits.copy()
        for centre, features in ends:
            near = (hits == 0) & (np.abs(self.mid - centre) <= self.hop)
            sums[near], hits[near] = features, 1
        share = np.array([_valid_share(valid, a - offset, b - offset) for a, b in zip(self.start, self.stop)])
        ok = (hits > 0) & (share >= MIN_VALID_SHARE)
        rows = np.where(ok[:, None], sums / np.maximum(hits, 1)[:, None], 0.0).astype(np.float32)
        return rows, ok


def audio_rows(encoder: AudioEncoder, track: AudioTrack, spans: StepSpans,
               counts: AudioCounts | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features [R, D] float32 and validity [R] bool of the rows `spans` describes."""
    start, stop = spans.samples()
    pool = RowPool(start, stop, encoder)
    if counts is not None:
        counts.seconds += track.seconds
    ends: list[tuple[float, np.ndarray]] = []  # (centre, features) of the track's first and last frames
    if track.has_sound and len(start):
        for features, centres in encode_track(encoder, track.samples, counts, track.valid):
            if not len(centres):
                continue
            if not ends:
                ends.append((float(centres[0]), features[0]))
            ends[1:] = [(float(centres[-1]), features[-1])]
            pool.add(features, centres)
    return pool.finish(track.valid, ends)


def _valid_share(valid: np.ndarray, start: float, stop: float) -> float:
    lo, hi = int(round(start)), int(round(stop))
    lo, hi = max(lo, 0), min(max(hi, lo + 1), len(valid))
    return float(np.count_nonzero(valid[lo:hi])) / max(hi - lo, 1) if hi > lo else 0.0
