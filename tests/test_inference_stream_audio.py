"""A stream's soundtrack (fgvu.inference.stream_audio): fed piece by piece as a reader hands it over, its
chunks are encoded before the stream ends and its windows' audio rows equal the offline rows exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakes import FakeAudio, ramp_amplitude
from fgvu.extract import audio_source
from fgvu.extract.audio_features import AudioCounts, StepSpans, audio_rows, plan_chunks
from fgvu.extract.audio_source import RATE, AudioTrack
from fgvu.inference.stream_audio import StreamAudio
from fgvu.sampling import SamplingPlan

FPS, N_FRAMES = 25.0, 182  # 7.28 s


class ContextAudio(FakeAudio):
    """FakeAudio whose last feature is its whole input's mean and length: a chunk's features depend on
    exactly which samples it was given, as a transformer's do, so only the offline chunk plan matches."""

    normalize = True

    def encode_waves(self, waves):
        out = super().encode_waves(waves)
        out[..., 3] = waves.mean(axis=1)[:, None] + waves.shape[1] / 1e6
        return out


def soundtrack() -> tuple[np.ndarray, np.ndarray]:
    """A rising tone with a gap (no packets) at 2.0-2.5 s and digital silence at 4.0-4.3 s."""
    n = int(round(N_FRAMES / FPS * RATE))
    t = np.arange(n) / RATE
    x = (ramp_amplitude(t) * np.sin(2 * np.pi * 440 * t)).astype(np.float32) + 0.1
    x[int(4.0 * RATE): int(4.3 * RATE)] = 0.0
    heard = np.ones(n, bool)
    heard[int(2.0 * RATE): int(2.5 * RATE)] = False
    return x, heard


def offline_rows(enc, lay):
    x, heard = soundtrack()
    track = AudioTrack(np.where(heard, x, 0).astype(np.float32), heard.copy())
    audio_source._mask_silence(Path("x.mp4"), track)  # as read_audio does
    counts = AudioCounts()
    rows, valid = audio_rows(enc, track, StepSpans(lay.image_frames, 4, N_FRAMES, FPS), counts)
    return rows, valid, counts


@pytest.mark.parametrize("chunk_seconds, context_seconds, batch", [(1.0, 0.2, 1), (1.0, 0.2, 3), (0.64, 0.32, 1),
                                                                   (10.0, 1.0, 3)])
def test_streamed_rows_equal_offline_rows_and_chunks_are_encoded_as_they_arrive(chunk_seconds, context_seconds,
                                                                                 batch):
    plan = SamplingPlan()
    lay = plan.layout(N_FRAMES)
    enc = ContextAudio(chunk_seconds=chunk_seconds, context_seconds=context_seconds, batch_size=batch)
    expected, expected_valid, counts = offline_rows(enc, lay)
    assert expected_valid.any() and not expected_valid.all()  # the gap and the silence are masked
    x, heard = soundtrack()
    audio = StreamAudio(ContextAudio(chunk_seconds, context_seconds, batch_size=3), FPS, 4, has_audio=True)
    starts = plan.window_starts(N_FRAMES)
    got, done_early, frames_in = {}, 0, 0
    for lo in range(0, len(x), 1024):  # the reader's pieces, interleaved with the video's frames
        piece = slice(lo, min(lo + 1024, len(x)))
        keep = np.flatnonzero(heard[piece]) + lo
        if len(keep):  # the gap's edges fall inside pieces: what lies outside it is heard
            audio.add_pieces([(int(keep[0]), x[keep[0]: keep[-1] + 1])])
        frames_in = min(N_FRAMES - 1, int(piece.stop / RATE * FPS))  # a frame arrives after its sound
        audio.frames_arrived(frames_in)
        audio.encode_ready()
        for w, start in enumerate(starts):
            positions = lay.image_frames[lay.image_index[w]]
            if w not in got and start + plan.window <= frames_in and audio.final(positions, None):
                got[w] = audio.rows(positions, None)
                done_early += 1
    early_chunks = audio.chunks_encoded
    audio.finish(N_FRAMES)
    for w in range(len(starts)):
        if w not in got:
            got[w] = audio.rows(lay.image_frames[lay.image_index[w]], N_FRAMES)
    for w, (rows, valid) in got.items():
        np.testing.assert_array_equal(valid, expected_valid[lay.image_index[w]])
        if batch == 1:  # offline encodes chunk by chunk too: bit for bit
            np.testing.assert_array_equal(rows, expected[lay.image_index[w]])
        else:  # offline batches 3 chunks per call, the stream encodes each as it is fixed: float32 sums
            # over a batch may round differently (1 ulp measured); another chunk plan moves the
            # length/mean feature by 1e-4 and more
            np.testing.assert_allclose(rows, expected[lay.image_index[w]], rtol=1e-6, atol=0)
    n_chunks = len(plan_chunks(len(x), enc))
    assert audio.chunks_encoded == n_chunks  # each chunk once, however many windows read it
    if chunk_seconds < 2:  # chunks shorter than the track: most are encoded while it plays
        assert early_chunks >= n_chunks - 2 and done_early >= len(starts) // 2
    else:
        assert early_chunks == 0 and done_early == 0  # one chunk: it is only fixed at the end


def test_provisional_rows_use_only_what_was_heard_and_a_source_without_audio_is_masked():
    plan = SamplingPlan()
    lay = plan.layout(N_FRAMES)
    x, _ = soundtrack()
    audio = StreamAudio(ContextAudio(1.0, 0.2), FPS, 4, has_audio=True)
    audio.add_pieces([(0, x[: int(1.9 * RATE)])])  # 1.9 s heard; the first window's steps reach 2.56 s
    audio.frames_arrived(64)
    positions = lay.image_frames[lay.image_index[0]]
    assert not audio.final(positions, None)
    rows, valid = audio.rows(positions, None)
    step_end = (positions + 4) / FPS
    assert valid[step_end <= 1.85].all() and not valid[positions / FPS >= 1.9].any()
    assert np.isfinite(rows).all() and not rows[~valid].any()
    silent = StreamAudio(ContextAudio(), FPS, 4, has_audio=False)
    silent.frames_arrived(64)
    assert silent.final(positions, None) and silent.encode_ready() == 0
    rows, valid = silent.rows(positions, None)
    assert not valid.any() and not rows.any() and silent.masked_windows == 1
