"""A stream's soundtrack as it arrives, encoded chunk by chunk into the audio rows of its windows.

The reader thread decodes the container's first audio stream with the offline reader's
`AudioPlacer` (same resampling, downmix and placement by timestamp) and hands over placed
pieces. `LiveTrack` keeps them on the video's clock and masks digital silence block by block,
as `read_audio` does for a whole file. `StreamAudio` encodes the offline chunk plan
(`audio_features.plan_chunks`) as the track grows: every chunk but the last is fixed as soon as
the track is known to reach past its right context and its silence blocks are complete, so it is
encoded then, with the same samples, normalization (`chunk_input`) and pooling (`RowPool`) as
offline; the rest is encoded when the stream ends and its length is known. A window's audio rows
are `final` once every frame their spans pool has been encoded: with full lookahead the stream
waits for that, and its rows equal the offline cache's.

A window that may not wait (`--lookahead N`) gets provisional rows instead: one extra chunk over
the audio known so far, from `context_seconds` before the window's first step; steps not fully
heard yet count as silent, so they are masked unless mostly heard.

A source without an audio stream gets masked audio for every window, counted in the report.
Audio arriving later than `STALE_AUDIO_S` behind the video is treated as missing (masked), so a
soundtrack that dies does not hold back the predictions of a live stream for ever.
"""

from __future__ import annotations

import numpy as np

from fgvu.extract.audio_features import Chunk, RowPool, StepSpans, encode_chunks, plan_chunks
from fgvu.extract.audio_source import RATE, SILENCE_BLOCK, SILENCE_PEAK

STALE_AUDIO_S = 10.0  # FFmpeg's default interleaving bound: audio this far behind the video is not coming


class LiveTrack:
    """The soundtrack of a stream so far: track sample `base + i` is `samples[i]` (16 kHz mono)."""

    def __init__(self):
        self.base = 0
        self.samples = np.zeros(0, np.float32)
        self.valid = np.zeros(0, bool)
        self.placed_until = 0  # the end of the furthest piece placed
        self.masked_until = 0  # silence masking is done for the blocks before this sample
        self.outside = 0.0  # seconds of sound before the first video frame or after the last
        self.length: int | None = None  # the track's samples, once the stream has ended

    def place(self, first: int, mono: np.ndarray) -> None:
        """Put a piece from `AudioPlacer` on the track (what lies before the video's start is dropped)."""
        lo = max(first, self.base)
        self.outside += (lo - first) / RATE if lo > first else 0.0
        hi = first + len(mono)
        if hi <= lo:
            return
        self._grow(hi)
        self.samples[lo - self.base: hi - self.base] = mono[lo - first:]
        self.valid[lo - self.base: hi - self.base] = True
        self.placed_until = max(self.placed_until, hi)

    def _grow(self, upto: int) -> None:
        need = upto - self.base
        if need > len(self.samples):
            size = max(need, 2 * len(self.samples), RATE)
            self.samples = np.concatenate([self.samples, np.zeros(size - len(self.samples), np.float32)])
            self.valid = np.concatenate([self.valid, np.zeros(size - len(self.valid), bool)])

    def mask_silence(self, upto: int) -> None:
        """Mask the digital silence of the whole blocks before `upto` not masked yet (as `read_audio`)."""
        end = upto // SILENCE_BLOCK * SILENCE_BLOCK
        if end <= self.masked_until:
            return
        self._grow(end)
        lo, hi = self.masked_until - self.base, end - self.base
        blocks = np.abs(self.samples[lo:hi]).reshape(-1, SILENCE_BLOCK).max(axis=1)
        valid = self.valid[lo:hi].reshape(-1, SILENCE_BLOCK)
        valid[valid.any(axis=1) & (blocks <= SILENCE_PEAK)] = False
        self.masked_until = end

    def end(self, length: int) -> None:
        """The stream ended with a track of `length` samples: cut what lies past it, mask the last blocks."""
        self._grow(length)
        self.outside += max(0, self.placed_until - length) / RATE
        self.samples, self.valid = self.samples[: length - self.base], self.valid[: length - self.base]
        self.mask_silence(length)
        self.length = length

    def forget_before(self, sample: int) -> None:
        """Drop the samples before `sample` (no chunk or row still to come reads them)."""
        cut = min(sample, self.masked_until) - self.base
        if cut > 0:
            self.samples, self.valid = self.samples[cut:], self.valid[cut:]
            self.base += cut


class StreamAudio:
    """Encodes a stream's soundtrack chunk by chunk and pools the audio rows of its windows."""

    def __init__(self, encoder, fps: float, every: int, has_audio: bool):
        self.encoder, self.fps, self.every, self.has_audio = encoder, float(fps), int(every), has_audio
        self.track = LiveTrack()
        hop = encoder.hop
        self.core = max(hop, int(round(encoder.chunk_seconds * RATE / hop)) * hop)
        self.context = max(0, int(round(encoder.context_seconds * RATE / hop)) * hop)
        self.next_chunk = 0  # the first chunk of the plan not encoded yet
        self.encoded: list[tuple[Chunk, np.ndarray, np.ndarray]] = []  # (chunk, features, centres), in order
        self.encoded_until = 0  # every frame centred before this sample has been encoded
        self.first: tuple[float, np.ndarray] | None = None  # the track's first frame
        self.last: tuple[float, np.ndarray] | None = None  # and its last, once the stream has ended
        self.video_frames = 0
        self.chunks_encoded = 0
        self.chunks_before_end: int | None = None  # chunks encoded while the stream played
        self.masked_windows = 0  # windows given masked audio for want of an audio stream

    # ---- the track grows ---------------------------------------------------------------------

    def add_pieces(self, pieces) -> None:
        for first, mono in pieces:
            self.track.place(first, mono)

    def frames_arrived(self, count: int) -> None:
        self.video_frames = max(self.video_frames, count)

    def confirmed(self) -> int:
        """Samples the track is known to reach, and to hold what it will ever hold there."""
        if self.track.length is not None:
            return self.track.length
        video = int(self.video_frames / self.fps * RATE)  # the track reaches at least this far
        heard = max(self.track.placed_until, video - int(STALE_AUDIO_S * RATE))
        return min(video, heard) if self.has_audio else video

    def encode_ready(self) -> int:
        """Encode every chunk that is fixed now (see the module docstring); the number encoded."""
        done = 0
        while self.has_audio:
            lo = self.next_chunk * self.core
            hi = lo + self.core
            stop = hi + self.context + self.encoder.receptive_field
            blocks = -(-stop // SILENCE_BLOCK) * SILENCE_BLOCK  # its silence blocks complete
            if self.track.length is not None or self.confirmed() < blocks:
                return done
            self.track.mask_silence(blocks)
            self._encode([Chunk(max(0, lo - self.context), stop, lo, hi)])
            done += 1
        return done

    def finish(self, n_frames: int) -> None:
        """The stream ended at `n_frames`: the track's length is known, encode the rest of the plan."""
        length = int(round(n_frames / self.fps * RATE))
        self.video_frames = n_frames
        if not self.has_audio:
            return
        self.encode_ready()  # what was fixed before the end, as before it
        self.chunks_before_end = self.chunks_encoded
        self.track.end(length)
        rest = plan_chunks(length, self.encoder)[self.next_chunk:]
        if rest:
            self._encode(rest)
        if self.encoded:
            chunk, features, centres = next((e for e in reversed(self.encoded) if len(e[2])), self.encoded[-1])
            if len(centres):
                self.last = (float(centres[-1]), features[-1])
        self.encoded_until = length + self.encoder.receptive_field

    def _encode(self, chunks: list[Chunk]) -> None:
        t = self.track
        for chunk, (features, centres) in zip(chunks, encode_chunks(self.encoder, t.samples, t.valid, chunks,
                                                                    offset=t.base)):
            self.encoded.append((chunk, features, centres))
            if self.first is None and len(centres):
                self.first = (float(centres[0]), features[0])
            self.encoded_until = chunk.keep_to
            self.next_chunk += 1
            self.chunks_encoded += 1

    # ---- rows --------------------------------------------------------------------------------------

    def spans(self, positions: np.ndarray, n_frames: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(start, stop) in track samples of the rows at image-grid `positions` (cut at the end, once known)."""
        n = n_frames if n_frames is not None else int(np.max(positions)) + self.every
        return StepSpans(np.asarray(positions), self.every, n, self.fps).samples()

    def final(self, positions: np.ndarray, n_frames: int | None) -> bool:
        """Whether the rows at `positions` are as offline: every frame they pool has been encoded."""
        if not self.has_audio or self.track.length is not None:
            return True
        start, stop = self.spans(positions, n_frames)
        pool = RowPool(start, stop, self.encoder)
        return self.encoded_until >= float(pool.hi.max()) and self.confirmed() >= float(stop.max())

    def rows(self, positions: np.ndarray, n_frames: int | None) -> tuple[np.ndarray, np.ndarray]:
        """(float32 rows [R, D], valid [R]) at `positions`: the offline rows when `final`, else provisional."""
        if not self.has_audio:
            self.masked_windows += 1
            return np.zeros((len(positions), self.encoder.dim), np.float32), np.zeros(len(positions), bool)
        start, stop = self.spans(positions, n_frames)
        pool = RowPool(start, stop, self.encoder)
        if self.final(positions, n_frames):
            for _, features, centres in self.encoded:
                pool.add(features, centres)
            ends = [e for e in (self.first, self.last) if e is not None]
            return pool.finish(self.track.valid, ends, offset=self.track.base)
        return self._provisional(pool, float(stop.max()))

    def _provisional(self, pool: RowPool, stop: float) -> tuple[np.ndarray, np.ndarray]:
        """Rows from one chunk over the audio heard so far (see the module docstring)."""
        t, hop = self.track, self.encoder.hop
        heard = min(self.confirmed(), t.placed_until)
        t.mask_silence(heard)
        first = max(t.base, int(pool.lo.min()) - self.context) // hop * hop
        first = max(first, -(-t.base // hop) * hop)
        if heard - first >= self.encoder.receptive_field:
            chunk = Chunk(first, heard, first, heard)
            for features, centres in encode_chunks(self.encoder, t.samples, t.valid, [chunk], offset=t.base):
                pool.add(features, centres)
        reach = int(np.ceil(stop)) - t.base
        valid = np.zeros(max(reach, 0), bool)
        known = min(heard - t.base, len(valid))
        valid[:known] = t.valid[:known]
        return pool.finish(valid, [self.first] if self.first is not None else [], offset=t.base)

    def forget_before(self, frame: int) -> None:
        """Drop the encoded frames and samples that no window from `frame` on reads."""
        sample = int(frame / self.fps * RATE) - self.encoder.hop
        self.encoded = [e for e in self.encoded if e[0].keep_to > sample]
        next_start = max(0, self.next_chunk * self.core - self.context)
        self.track.forget_before(max(0, min(sample - self.context, next_start)))
