"""Frame-level evaluation: overlapping windows averaged onto frames, interpolated, metrics on valid frames."""

import numpy as np
import pytest

from fgvu.cache import CacheSpec, PartWriter, VideoRecord, open_cache
from fgvu.fusion.evaluate import frame_level, frame_table, step_values, table_metrics
from fgvu.sampling import SamplingPlan

# 8-frame windows, stride 4: a window has 4 image steps, one every 2 frames
PLAN = SamplingPlan(window=8, stride=4, image_every=2, caption_every=4, video_frames=(4,))


def tiny_cache(path, task="va", lengths=(14, 5), masks=None):
    spec = CacheSpec(dataset="tiny", task=task, sampling=PLAN, dims={"image": 3},
                     encoders={"image": {"name": "none", "checkpoint": "-"}})
    k = 2 if task == "va" else 1
    with PartWriter(path, spec, 0) as w:
        for i, n in enumerate(lengths):
            lay = PLAN.layout(n)
            targets = np.linspace(-1, 1, n * k).reshape(n, k) if task == "va" else (np.arange(n)[:, None] % 3 == 0)
            mask = np.ones((n, k), bool) if masks is None else masks[i]
            w.append_video(VideoRecord(
                name=f"vid{i}", split="val", n_frames=n, fps=25.0, width=8, height=8,
                window_start=lay.starts, image_index=lay.image_index, caption_index=lay.caption_index,
                valid=lay.valid, targets=targets.astype(np.float32), target_mask=mask,
                image=np.zeros((len(lay.image_frames), 3)), image_frame=lay.image_frames,
                caption_frame=lay.caption_frames,
            ))
    return open_cache(path)


def test_windows_average_and_interpolate_onto_every_frame(tmp_path):
    view = tiny_cache(tmp_path)
    # video 0 (14 frames): windows start at 0, 4 and 8 (the last padded past frame 13);
    # video 1 (5 frames): one padded window
    assert view.window_start.tolist() == [0, 4, 8, 0]
    windows = np.arange(4)
    values = np.zeros((4, 4, 2))
    for w in range(3):
        values[w, :, 0] = 10 * w + np.arange(4)  # step k of window w predicts 10w + k
    values[3, :, 0] = 100 + np.arange(4)
    values[..., 1] = -values[..., 0]
    per_video = frame_level(view, windows, values)
    # by hand: grid frames 0,2 (window 0 only); 4,6 (windows 0 and 1); 8,10 (windows 1 and 2);
    # 12 (window 2); window 2's step on frame 14 is padding. Odd frames interpolate, 13 holds.
    grid = {0: 0, 2: 1, 4: (2 + 10) / 2, 6: (3 + 11) / 2, 8: (12 + 20) / 2, 10: (13 + 21) / 2, 12: 22}
    expected0 = [0, 0.5, 1, 3.5, 6, 6.5, 7, 11.5, 16, 16.5, 17, 19.5, 22, 22]
    assert [expected0[f] for f in grid] == list(grid.values())
    np.testing.assert_allclose(per_video[0][:, 0], expected0)
    np.testing.assert_allclose(per_video[0][:, 1], -np.array(expected0))
    # 5 frames: steps on frames 0, 2, 4 (frame 6 is padding)
    np.testing.assert_allclose(per_video[1][:, 0], [100, 100.5, 101, 101.5, 102])


def test_subset_of_windows_and_coarser_steps(tmp_path):
    view = tiny_cache(tmp_path)
    # 2 steps per window (every 4 frames), only windows 0 and 2 of video 0
    values = np.array([[[1.0], [2.0]], [[5.0], [7.0]]])
    per_video = frame_level(view, np.array([0, 2]), values)
    assert list(per_video) == [0]
    # frames 0 -> 1, 4 -> 2, 8 -> 5, 12 -> 7; linear between, held after 12
    expected = [1, 1.25, 1.5, 1.75, 2, 2.75, 3.5, 4.25, 5, 5.5, 6, 6.5, 7, 7]
    np.testing.assert_allclose(per_video[0][:, 0], expected)


def _ccc(x, y):
    mx, my = x.mean(), y.mean()
    return 2 * ((x - mx) * (y - my)).mean() / (x.var() + y.var() + (mx - my) ** 2)


def test_metrics_use_only_valid_frames(tmp_path):
    masks = [np.ones((14, 2), bool), np.ones((5, 2), bool)]
    masks[0][3:7, 0] = False  # valence invalid on frames 3..6 of video 0
    masks[1][:, 1] = False  # no arousal at all in video 1
    view = tiny_cache(tmp_path, masks=masks)
    rng = np.random.default_rng(0)
    values = rng.uniform(-1, 1, size=(4, 4, 2))
    table = frame_table(view, "va", frame_level(view, np.arange(4), values))
    assert table.y_true.shape == (19, 2) and table.video.tolist() == [0] * 14 + [1] * 5
    assert table.frame.tolist() == list(range(14)) + list(range(5))
    got = table_metrics("va", table)
    v = np.r_[np.arange(14)[~np.isin(np.arange(14), range(3, 7))], 14 + np.arange(5)]
    a = np.arange(14)
    assert got["ccc_valence"] == pytest.approx(_ccc(table.y_true[v, 0], table.y_pred[v, 0]))
    assert got["ccc_arousal"] == pytest.approx(_ccc(table.y_true[a, 1], table.y_pred[a, 1]))
    assert got["ccc_mean"] == pytest.approx((got["ccc_valence"] + got["ccc_arousal"]) / 2)
    # masked frames really are excluded: garbage there changes nothing
    table.y_pred[3:7, 0] = 50.0
    assert table_metrics("va", table)["ccc_valence"] == pytest.approx(got["ccc_valence"])


def test_violence_averages_probabilities_then_thresholds(tmp_path):
    view = tiny_cache(tmp_path, task="violence")
    logits = np.zeros((4, 4, 2))
    logits[0, :, 1] = 3.0  # window 0 confident violent, window 1 confident calm
    logits[1, :, 0] = 3.0
    prob = step_values("violence", logits)
    assert prob.shape == (4, 4, 1)
    p_violent = 1 / (1 + np.exp(-3.0))
    np.testing.assert_allclose(prob[0, :, 0], p_violent)
    table = frame_table(view, "violence", frame_level(view, np.arange(4), prob))
    # frame 4: mean of window 0 (violent) and window 1 (calm) = 0.5 -> label 1; frame 8: windows 1 and 2
    assert table.prob[4] == pytest.approx(0.5)
    assert table.prob[8] == pytest.approx((1 - p_violent + 0.5) / 2)
    np.testing.assert_array_equal(table.y_pred[:, 0], (table.prob >= 0.5).astype(np.float32))
    m = table_metrics("violence", table)
    y = table.y_true[:, 0].astype(int)
    pred = table.y_pred[:, 0].astype(int)
    assert m["accuracy"] == pytest.approx(np.mean(y == pred))
    assert m["confusion"] == [[int(((y == t) & (pred == p)).sum()) for p in (0, 1)] for t in (0, 1)]


def test_format_table_counts_all_and_valid_frames():
    from fgvu.fusion.evaluate import format_table

    result = {"task": "va", "split": "val", "n_videos": 2, "cache": "c", "n_frames": 19, "n_valid": 12,
              "metrics": {"ccc_mean": 0.5},
              "per_video": {"vid0": {"n_frames": 14, "n_valid": 10, "ccc_mean": 0.25},
                            "vid1": {"n_frames": 5, "n_valid": 2}}}
    lines = format_table(result).splitlines()
    assert lines[1].split() == ["video", "frames", "valid", "ccc_mean"]
    assert lines[3].split() == ["vid0", "14", "10", "0.2500"] and lines[4].split() == ["vid1", "5", "2", "-"]
    assert lines[-1].split() == ["all", "videos", "19", "12", "0.5000"]
