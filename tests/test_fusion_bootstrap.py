"""Uncertainty over videos: additive statistics that agree with the metrics, interval coverage, paired comparisons."""

import logging

import numpy as np
import pytest

from fgvu.fusion import bootstrap
from fgvu.fusion.metrics import va_metrics, violence_metrics
from fgvu.fusion.run_folder import FrameTable
from fgvu.tasks import get_task

VA, VIOLENCE = get_task("va"), get_task("violence")


def table(names, per_video, y_true, y_pred, mask=None, prob=None) -> FrameTable:
    video = np.repeat(np.arange(len(names)), per_video)
    frame = np.concatenate([np.arange(n) for n in np.broadcast_to(per_video, len(names))])
    mask = np.ones(y_true.shape, bool) if mask is None else mask
    return FrameTable(np.array(names), video, frame, y_true, y_pred, mask, prob)


def test_summed_statistics_give_the_metrics_exactly():
    rng = np.random.default_rng(0)
    t, p = rng.uniform(-1, 1, (500, 2)), rng.uniform(-1, 1, (500, 2))
    p[:, 0] = 0.7 * t[:, 0] + 0.2  # one correlated, biased dimension
    mask = rng.uniform(size=(500, 2)) > 0.2
    got = VA.from_statistics(VA.statistics(t, p, mask, None).sum(axis=0))
    assert got == pytest.approx(va_metrics(t, p, mask), abs=1e-10)
    mask[:, 1] = False  # a dimension without valid frames is undefined in both
    got = VA.from_statistics(VA.statistics(t, p, mask, None).sum(axis=0))
    assert np.isnan(got["ccc_arousal"]) and np.isnan(va_metrics(t, p, mask)["ccc_arousal"])
    # a constant prediction that equals a constant truth scores 0 in both (0/0)
    const = np.zeros((20, 2))
    assert VA.from_statistics(VA.statistics(const, const, None, None).sum(axis=0))["ccc_mean"] == 0.0
    for prob in (rng.uniform(size=500), np.full(500, 0.2)):  # the second never predicts violence
        y = (rng.uniform(size=(500, 1)) > 0.6).astype(np.float32)
        m = rng.uniform(size=(500, 1)) > 0.1
        got = VIOLENCE.from_statistics(VIOLENCE.statistics(y, (prob >= 0.5)[:, None], m, prob).sum(axis=0))
        want = violence_metrics(y[m[:, 0], 0], prob[m[:, 0]])
        assert {k: float(v) for k, v in got.items()} == pytest.approx(
            {k: want[k] for k in ("f1_macro", "accuracy", "ece")}, abs=1e-12)


def test_groups_are_base_videos():
    t = np.zeros((6, 2))
    stats = bootstrap.group_statistics(VA, table(["a_left", "a_right", "b"], 2, t, t))
    assert stats.groups == ["a", "b"] and stats.videos == [["a_left", "a_right"], ["b"]]
    assert stats.sums[:, 0].tolist() == [4, 2]  # valid valence frames per group
    assert bootstrap.group_statistics(VIOLENCE, table(["a_left", "a_right"], 2, t[:, :1], t[:, :1])).groups == [
        "a_left", "a_right"]  # DVD has no person tracks


def simulated(rng, replicates, videos, frames):
    """Clustered valence/arousal: per-video offsets in truth and prediction; returns truth, prediction
    [R, V, F, 2] and the population CCC of pooled frames."""
    su, se, sw, sf, b = 0.5, 0.5, 0.3, 0.5, 0.8
    t = rng.normal(0, su, (replicates, videos, 1, 2)) + rng.normal(0, se, (replicates, videos, frames, 2))
    p = b * t + rng.normal(0, sw, (replicates, videos, 1, 2)) + rng.normal(0, sf, (replicates, videos, frames, 2))
    var_t, var_p = su**2 + se**2, b * b * (su**2 + se**2) + sw**2 + sf**2
    return t, p, 2 * b * var_t / (var_t + var_p)


def test_interval_over_videos_covers_the_true_value_at_about_the_nominal_rate():
    replicates, videos, frames = 400, 100, 30
    t, p, true = simulated(np.random.default_rng(0), replicates, videos, frames)
    flat = (t.reshape(-1, 2), p.reshape(-1, 2))
    sums = VA.statistics(*flat, None, None).reshape(replicates, videos, frames, -1).sum(axis=2)  # [R, V, S]
    counts = bootstrap.draw_counts(videos, bootstrap.DRAWS, seed=1)
    resampled = VA.from_statistics(np.einsum("bv,rvs->rbs", counts, sums))["ccc_mean"]  # all replicates at once
    lo, hi = np.quantile(resampled, [0.025, 0.975], axis=1)
    coverage = np.mean((lo <= true) & (true <= hi))
    assert 0.90 <= coverage <= 0.98, coverage
    # the vectorised intervals are the module's own, replicate by replicate
    for r in (0, 7):
        names = [f"v{i:03d}" for i in range(videos)]
        one = table(names, frames, t[r].reshape(-1, 2), p[r].reshape(-1, 2))
        ci = bootstrap.intervals(VA, bootstrap.group_statistics(VA, one), seed=1)["ccc_mean_ci"]
        assert ci == pytest.approx([lo[r], hi[r]], abs=1e-12)


def test_resampling_frames_instead_of_videos_undercovers():
    """The control: ignoring that frames of a video are correlated gives intervals far too narrow."""
    replicates, videos, frames = 40, 60, 30
    t, p, true = simulated(np.random.default_rng(1), replicates, videos, frames)
    stats = VA.statistics(t.reshape(-1, 2), p.reshape(-1, 2), None, None).reshape(replicates, videos * frames, -1)
    covered = 0
    for r in range(replicates):
        x = VA.from_statistics(bootstrap.draw_counts(videos * frames, 200, r) @ stats[r])["ccc_mean"]
        lo, hi = bootstrap.percentile_interval(x)
        covered += lo <= true <= hi
    assert covered / replicates < 0.8


def test_paired_comparison_over_videos():
    rng = np.random.default_rng(2)
    names = [f"v{i}" for i in range(30)]
    truth = rng.uniform(-1, 1, (30 * 50, 2))

    def runs(noise: float, seeds=(0, 1, 2)) -> dict[int, FrameTable]:
        return {s: table(names, 50, truth, truth + rng.normal(0, noise, truth.shape)) for s in seeds}

    reference = runs(0.6)
    better = bootstrap.paired_comparison(VA, "ccc_mean", runs(0.3), reference)
    assert better.delta > 0.1 and better.ci[0] > 0 and better.p < 0.01 and better.n_pairs == 3
    assert better.n_groups == 30
    same = bootstrap.paired_comparison(VA, "ccc_mean", reference, reference)
    assert same.delta == 0 and same.ci == [0, 0] and same.p == 1.0
    null = bootstrap.paired_comparison(VA, "ccc_mean", runs(0.6), reference)
    assert null.ci[0] < 0 < null.ci[1] and null.p > 0.05
    # only seeds present on both sides pair up; none is no comparison
    assert bootstrap.paired_comparison(VA, "ccc_mean", runs(0.3, seeds=(0, 9)), reference).n_pairs == 1
    assert bootstrap.paired_comparison(VA, "ccc_mean", runs(0.3, seeds=(9,)), reference) is None


def test_degenerate_splits_warn(caplog):
    t = np.linspace(-1, 1, 20).reshape(10, 2)
    with caplog.at_level(logging.WARNING, logger="fgvu"):
        warnings = bootstrap.degenerate_warnings(VA, table(["x_left", "x_right"], 5, t, t), "val")
    assert len(warnings) == 1 and "single base video (x)" in warnings[0] and "single base video" in caplog.text
    y = np.ones((10, 1))
    warnings = bootstrap.degenerate_warnings(VIOLENCE, table(["a", "b"], 5, y, y), "val")
    assert warnings == ["val: only class 1 among the valid frames; f1_macro is not informative there"]
    y[0] = 0
    assert bootstrap.degenerate_warnings(VIOLENCE, table(["a", "b"], 5, y, y), "val") == []
