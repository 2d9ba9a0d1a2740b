"""Audio rows: each track encoded once in overlapping chunks, pooled onto the image grid, step times aligned."""

from __future__ import annotations

import numpy as np
import pytest

from fakes import FakeAudio, ramp_amplitude
from fgvu.extract.audio_features import AudioCounts, StepSpans, audio_rows, encode_track, plan_chunks
from fgvu.extract.audio_source import RATE, AudioTrack
from fgvu.sampling import SamplingPlan


def _ramp_track(seconds: float) -> AudioTrack:
    """The test tone: its amplitude tells the time (fakes.ramp_amplitude)."""
    t = np.arange(int(seconds * RATE)) / RATE
    x = (ramp_amplitude(t) * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    return AudioTrack(x, np.ones(len(x), bool))


def _time_of(rows: np.ndarray) -> np.ndarray:
    """The time FakeAudio's RMS feature says (inverting the ramp)."""
    return (rows[:, 0] * np.sqrt(2) - 0.02) / 0.02


@pytest.mark.parametrize("n", [399, 400, 5000, 32000, 32000 + 6400, 123457])
def test_chunks_give_every_frame_of_the_track_once(n):
    enc = FakeAudio(chunk_seconds=1.0, context_seconds=0.2)
    counts = AudioCounts()
    centres = np.concatenate([c for _, c in encode_track(enc, np.zeros(n, np.float32), counts)] or [np.zeros(0)])
    whole = enc.frames_for(n)
    # the frames of the whole track, each once, in order: frame m centred at m * hop + receptive_field / 2
    np.testing.assert_array_equal(centres, np.arange(whole) * enc.hop + enc.receptive_field // 2)
    core, context = RATE, int(0.2 * RATE)
    n_chunks = len(plan_chunks(n, enc))
    assert counts.samples >= n if n >= 400 else counts.samples == 0
    assert counts.samples <= n + n_chunks * (2 * context + enc.receptive_field)  # only the context is extra
    assert n_chunks <= max(1, int(np.ceil(n / core)))


def test_chunks_of_one_length_are_batched():
    enc = FakeAudio(chunk_seconds=1.0, context_seconds=0.2, batch_size=3)
    list(encode_track(enc, np.zeros(10 * RATE + 123, np.float32)))
    lengths = [length for _, length in enc.calls]
    assert [b for b, _ in enc.calls] == [1, 3, 3, 2, 1]  # first (no left context), 8 full, last
    assert len(set(lengths[1:-1])) == 1 and lengths[1] == RATE + 2 * int(0.2 * RATE) + enc.receptive_field


def test_rows_cover_their_image_steps_within_one_hop():
    """Step k of a window: its audio row says the time of the middle of image step k, within one hop."""
    fps, n_frames = 25.0, 300
    plan = SamplingPlan(stride=8)
    lay = plan.layout(n_frames)
    enc = FakeAudio(chunk_seconds=1.0, context_seconds=0.2)
    rows, valid = audio_rows(enc, _ramp_track(n_frames / fps), StepSpans(lay.image_frames, 4, n_frames, fps))
    assert rows.shape == (len(lay.image_frames), 4) and valid.all()
    audio_time = _time_of(rows)[lay.image_index]  # [W, 16]: the time each window's audio step covers
    image_frame = lay.image_frames[lay.image_index]
    step_middle = (image_frame + np.minimum(4, n_frames - image_frame) / 2) / fps
    assert np.abs(audio_time - step_middle).max() <= enc.hop / RATE


def test_masks_short_spans_and_empty_tracks():
    fps, n_frames = 25.0, 100
    track = _ramp_track(n_frames / fps)
    track.valid[int(1.0 * RATE): int(2.0 * RATE)] = False  # a second of no sound
    track.samples[~track.valid] = 0
    spans = StepSpans(np.arange(0, n_frames, 4), 4, n_frames, fps)
    rows, valid = audio_rows(FakeAudio(), track, spans)
    start = spans.frames / fps
    assert not valid[(start >= 1.0) & (start < 1.9)].any() and valid[start < 0.9].all() and valid[start >= 2.0].all()
    assert not rows[~valid].any()
    # at 250 fps a 1-frame step (4 ms) is shorter than a hop: it still gets its nearest frame, up to
    # the last encoder frame (centred at 1.9725 s: the last 15 ms of the track are in no frame)
    enc = FakeAudio()
    fast = StepSpans(np.arange(0, 500), 1, 500, 250.0)
    rows, valid = audio_rows(enc, _ramp_track(2.0), fast)
    middle = (np.arange(500) + 0.5) / 250.0
    last_centre = ((enc.frames_for(2 * RATE) - 1) * enc.hop + enc.receptive_field // 2) / RATE
    np.testing.assert_array_equal(valid, middle <= last_centre + enc.hop / RATE)
    assert np.abs(_time_of(rows[valid]) - middle[valid]).max() <= enc.hop / RATE
    silent = AudioTrack.empty(int(2.0 * RATE))
    rows, valid = audio_rows(FakeAudio(), silent, fast)
    assert not valid.any() and not rows.any()
