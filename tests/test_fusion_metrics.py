"""Tests of fgvu.fusion.metrics against independent numpy computations (no sklearn)."""

from __future__ import annotations

import numpy as np
import pytest

from fgvu.fusion.metrics import (
    MetricError,
    ccc,
    confusion_matrix,
    expected_calibration_error,
    f1_macro,
    va_metrics,
    violence_metrics,
)


def reference_ccc(t, p) -> float:
    """Pearson correlation form of CCC: 2 rho s_t s_p / (s_t^2 + s_p^2 + (mu_t - mu_p)^2)."""
    t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)
    rho = np.corrcoef(t, p)[0, 1]
    s_t, s_p = t.std(), p.std()
    return 2 * rho * s_t * s_p / (s_t**2 + s_p**2 + (t.mean() - p.mean()) ** 2)


def reference_f1_macro(t, p, classes) -> float:
    """Per class: precision and recall first, then their harmonic mean (0 where undefined)."""
    scores = []
    for c in classes:
        tp = np.sum((t == c) & (p == c))
        precision = tp / np.sum(p == c) if np.sum(p == c) else 0.0
        recall = tp / np.sum(t == c) if np.sum(t == c) else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return float(np.mean(scores))


def test_ccc_agrees_with_pearson_form():
    rng = np.random.default_rng(0)
    t = rng.uniform(-1, 1, 500)
    p = 0.5 * t + rng.normal(0, 0.3, 500) - 0.2
    assert ccc(t, p) == pytest.approx(reference_ccc(t, p), abs=1e-12)
    assert ccc(t, p) < np.corrcoef(t, p)[0, 1]  # bias and scale are penalised


def test_ccc_edge_cases():
    t = np.linspace(-1, 1, 50)
    assert ccc(t, t) == pytest.approx(1.0)
    assert ccc(t, np.full_like(t, 0.3)) == pytest.approx(0.0, abs=1e-12)  # constant prediction
    assert ccc(t, -t) == pytest.approx(-1.0)
    assert ccc(np.ones(5), np.ones(5)) == 0.0  # 0/0 by convention
    assert ccc(t, t + 1) < 1  # a shift is not concordant


def test_ccc_excludes_masked_frames():
    rng = np.random.default_rng(1)
    t = rng.uniform(-1, 1, 100)
    p = t + rng.normal(0, 0.2, 100)
    mask = rng.random(100) > 0.3
    t_bad = np.where(mask, t, -5.0)
    p_bad = np.where(mask, p, 7.0)
    assert ccc(t_bad, p_bad, mask=mask) == pytest.approx(reference_ccc(t[mask], p[mask]), abs=1e-12)
    assert ccc(t_bad, p_bad) != pytest.approx(ccc(t_bad, p_bad, mask=mask))
    with pytest.raises(MetricError, match="no valid entries"):
        ccc(t, p, mask=np.zeros(100, bool))
    with pytest.raises(MetricError, match="1-D"):
        ccc(t[:, None], p[:, None])


def test_f1_macro_agrees_with_precision_recall_form():
    rng = np.random.default_rng(2)
    t = rng.integers(0, 3, 300)
    p = np.where(rng.random(300) < 0.6, t, rng.integers(0, 3, 300))
    assert f1_macro(t, p) == pytest.approx(reference_f1_macro(t, p, [0, 1, 2]), abs=1e-12)


def test_f1_macro_when_a_class_is_never_predicted():
    t = np.array([0, 0, 0, 1, 1, 0])
    p = np.zeros(6, int)  # class 1 never predicted: its F1 is 0
    f1_class0 = 2 * 4 / (2 * 4 + 2)
    assert f1_macro(t, p) == pytest.approx(f1_class0 / 2)
    assert f1_macro(t, p) == pytest.approx(reference_f1_macro(t, p, [0, 1]))
    # a class absent everywhere only counts when asked for
    all0 = np.zeros(4, int)
    assert f1_macro(all0, all0) == 1.0
    assert f1_macro(all0, all0, labels=(0, 1)) == 0.5
    mask = np.array([True, True, True, False, False, True])
    assert f1_macro(t, p, mask=mask) == 1.0


def test_confusion_matrix_counts():
    t = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0, 1, 1, 0, 1, 0])
    expected = np.array([[2, 1], [1, 2]])
    np.testing.assert_array_equal(confusion_matrix(t, p), expected)
    with pytest.raises(MetricError, match="labels"):
        confusion_matrix(t, p + 1)


def test_expected_calibration_error_by_hand():
    t = np.array([1, 1, 0, 0])
    prob = np.array([0.9, 0.9, 0.9, 0.2])
    # bin [0.9, 1.0): predictions 1,1,1 with confidence 0.9, accuracy 2/3
    # bin [0.8, 0.9): prediction 0 with confidence 0.8, accuracy 1
    expected = 3 / 4 * abs(2 / 3 - 0.9) + 1 / 4 * abs(1 - 0.8)
    assert expected_calibration_error(t, prob) == pytest.approx(expected)
    perfect = np.array([1, 0, 1])
    assert expected_calibration_error(perfect, perfect.astype(float)) == 0.0


def test_va_and_violence_metric_dicts():
    rng = np.random.default_rng(3)
    t = rng.uniform(-1, 1, (80, 2))
    p = t + rng.normal(0, 0.3, (80, 2))
    mask = rng.random((80, 2)) > 0.1
    got = va_metrics(t, p, mask=mask)
    v, a = reference_ccc(t[mask[:, 0], 0], p[mask[:, 0], 0]), reference_ccc(t[mask[:, 1], 1], p[mask[:, 1], 1])
    assert got == pytest.approx({"ccc_valence": v, "ccc_arousal": a, "ccc_mean": (v + a) / 2})
    no_arousal = mask.copy()
    no_arousal[:, 1] = False  # a dimension without valid entries is undefined, not an error
    got = va_metrics(t, p, mask=no_arousal)
    assert got["ccc_valence"] == pytest.approx(v) and np.isnan(got["ccc_arousal"]) and np.isnan(got["ccc_mean"])

    labels = np.array([0, 1, 1, 0, 1])
    prob = np.array([0.1, 0.8, 0.4, 0.3, 0.7])
    out = violence_metrics(labels, prob)
    assert out["confusion"] == [[2, 0], [1, 2]]
    assert out["accuracy"] == pytest.approx(0.8)
    assert out["f1_macro"] == pytest.approx(reference_f1_macro(labels, (prob >= 0.5).astype(int), [0, 1]))
    assert 0 <= out["ece"] <= 1
