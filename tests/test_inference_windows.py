"""Stream windows and frame emission (fgvu.inference.stream_windows) against the offline plan and frame_level."""

import numpy as np
import pytest

from fgvu.cache import CacheSpec, PartWriter, VideoRecord, open_cache
from fgvu.fusion.evaluate import frame_level
from fgvu.inference.stream_windows import FrameEmitter, WindowSchedule, window_exists, window_positions
from fgvu.sampling import SamplingPlan

PLANS = [SamplingPlan(), SamplingPlan(stride=32, caption_every=8, video_frames=(8,)),
         SamplingPlan(window=8, stride=4, image_every=2, caption_every=4, video_frames=(4,))]


@pytest.mark.parametrize("plan", PLANS)
def test_window_exists_agrees_with_window_starts(plan):
    for n in range(1, 4 * plan.window):
        starts = set(plan.window_starts(n).tolist())
        assert {s for s in range(0, n + plan.window) if window_exists(plan, s, n)} == starts, n


@pytest.mark.parametrize("plan", PLANS)
def test_schedule_hands_out_exactly_the_offline_windows_and_reads_no_padding(plan):
    offsets = window_positions(plan, ("v", "i", "t"), plan.video_frames[0])
    for n in range(1, 3 * plan.window, 3):
        schedule = WindowSchedule(plan, offsets)
        early = [s for f in range(n) for s in schedule.ready(f)]
        for s in early:  # a window run while frames still arrive reads only frames that exist
            assert all((s + o).max() < n for o in offsets.values())
        tail = schedule.tail(n)
        assert early + tail == plan.window_starts(n).tolist(), n
        lay = plan.layout(n)
        for w, s in enumerate(lay.starts.tolist()):  # the clamped positions are the layout's frames
            pos = schedule.positions(s, n)
            np.testing.assert_array_equal(pos["image"], lay.image_frames[lay.image_index[w]])
            np.testing.assert_array_equal(pos["caption"], lay.caption_frames[lay.caption_index[w]])
            np.testing.assert_array_equal(pos["clip"], lay.clip_frames[plan.video_frames[0]][w])


def test_schedule_runs_a_default_window_when_its_last_grid_frame_arrives():
    plan = SamplingPlan()
    schedule = WindowSchedule(plan, window_positions(plan, ("v", "i", "t"), 16))
    assert schedule.reach == 60
    ready = {f: schedule.ready(f) for f in range(200)}
    assert {f: s for f, s in ready.items() if s} == {60: [0], 76: [16], 92: [32], 108: [48], 124: [64],
                                                     140: [80], 156: [96], 172: [112], 188: [128]}


def tiny_view(path, lengths):
    plan = SamplingPlan(window=8, stride=4, image_every=2, caption_every=4, video_frames=(4,))
    spec = CacheSpec(dataset="tiny", task="va", sampling=plan, dims={"image": 3},
                     encoders={"image": {"name": "none", "checkpoint": "-"}})
    with PartWriter(path, spec, 0) as w:
        for i, n in enumerate(lengths):
            lay = plan.layout(n)
            w.append_video(VideoRecord(
                name=f"v{i}", split="test", n_frames=n, fps=25.0, width=8, height=8, window_start=lay.starts,
                image_index=lay.image_index, caption_index=lay.caption_index, valid=lay.valid,
                targets=np.zeros((n, 2), np.float32), target_mask=np.zeros((n, 2), bool),
                image=np.zeros((len(lay.image_frames), 3)), image_frame=lay.image_frames,
                caption_frame=lay.caption_frames))
    return open_cache(path), plan


def stream_emit(plan, values_of, n, lookahead, every):
    """Drive a schedule and an emitter frame by frame; returns (values [n, V], emitted_at [n])."""
    schedule = WindowSchedule(plan, window_positions(plan, ("i",), 4))
    emitter = FrameEmitter(every, 2, lookahead)
    out, at = np.zeros((n, 2)), np.zeros(n, np.int64)

    def take(frames, vals, arrived):
        out[frames], at[frames] = vals, arrived

    for f in range(n):
        for s in schedule.ready(f):
            emitter.add_window(s, values_of(s), s + every * np.arange(4) <= f)
        take(*emitter.emit(f, schedule.next_start), f)
    for s in schedule.tail(n):
        emitter.add_window(s, values_of(s), s + every * np.arange(4) < n)
    take(*emitter.emit(n - 1, None, n), n - 1)
    assert emitter.next_frame == n
    return out, at


@pytest.mark.parametrize("lookahead", [None, 8, 11])
def test_full_lookahead_emits_frame_levels_values_exactly(tmp_path, lookahead):
    lengths = (3, 7, 8, 9, 14, 23, 41)
    view, plan = tiny_view(tmp_path / "c", lengths)
    rng = np.random.default_rng(0)
    values = rng.normal(size=(view.n_windows, 4, 2))
    expected = frame_level(view, np.arange(view.n_windows), values)
    for v, n in enumerate(lengths):
        rows = np.flatnonzero(view.window_video == v)
        by_start = dict(zip(view.window_start[rows].tolist(), values[rows]))
        got, _ = stream_emit(plan, by_start.__getitem__, n, lookahead, every=2)
        np.testing.assert_array_equal(got, expected[v])  # bit for bit, not approximately


def test_causal_emission_uses_only_arrived_frames_and_is_immediate(tmp_path):
    view, plan = tiny_view(tmp_path / "c", (30,))
    rng = np.random.default_rng(1)
    values = dict(zip(view.window_start.tolist(), rng.normal(size=(view.n_windows, 4, 2))))
    full, at = stream_emit(plan, values.__getitem__, 30, 0, every=2)
    first_ready = 6  # window 0 reads frames 0..6
    assert (at[first_ready:] == np.arange(first_ready, 30)).all()  # emitted on arrival
    assert (at[:first_ready] == first_ready).all()  # the frames before the first window wait for it
    for cut in (9, 17, 24):  # the stream ends at `cut`: what was emitted before is unchanged
        short, _ = stream_emit(plan, values.__getitem__, cut, 0, every=2)
        np.testing.assert_array_equal(short[:cut - 1], full[:cut - 1])


def test_frames_no_window_reached_are_interpolated_between_neighbours():
    emitter = FrameEmitter(2, 1, None)
    emitter.add_window(0, np.array([[0.0], [2.0]]), np.array([True, True]))  # frames 0, 2
    emitter.add_window(8, np.array([[10.0], [12.0]]), np.array([True, True]))  # frames 8, 10 (4, 6 skipped)
    frames, values = emitter.emit(10, None, 11)
    assert frames.tolist() == list(range(11))
    np.testing.assert_allclose(values[:, 0], [0, 1, 2, 2 + 8 / 6, 2 + 16 / 6, 6, 2 + 32 / 6, 2 + 40 / 6, 10, 11, 12])
