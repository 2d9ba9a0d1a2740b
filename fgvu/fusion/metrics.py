"""Evaluation metrics in plain numpy (no torch, no sklearn): CCC, macro-F1, confusion, ECE.

Metrics are computed over valid frames only: pass `mask=` or drop invalid frames first.
Results are plain Python numbers (and lists) so they go straight into JSON.
"""

from __future__ import annotations

import numpy as np



class MetricError(ValueError):
    """Metric inputs that do not fit together (shapes, no valid entries)."""


def _valid(y_true, y_pred, mask, name: str) -> tuple[np.ndarray, np.ndarray]:
    """1-D arrays of the entries where `mask` holds (all when mask is None)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise MetricError(f"{name} needs two 1-D arrays of equal length; got {y_true.shape} and {y_pred.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != y_true.shape:
            raise MetricError(f"{name}: mask has shape {mask.shape}, values {y_true.shape}")
        y_true, y_pred = y_true[mask], y_pred[mask]
    if y_true.size == 0:
        raise MetricError(f"{name} has no valid entries to score")
    return y_true, y_pred


def ccc(y_true, y_pred, mask=None) -> float:
    """Concordance correlation coefficient (the ABAW formula, population moments).

    2 cov(t, p) / (var_t + var_p + (mean_t - mean_p)^2). A constant prediction scores 0.
    When both series are constant and equal the formula is 0/0; that case scores 0.
    """
    t, p = _valid(y_true, y_pred, mask, "ccc")
    t, p = t.astype(np.float64), p.astype(np.float64)
    mean_t, mean_p = t.mean(), p.mean()
    cov = ((t - mean_t) * (p - mean_p)).mean()
    denom = t.var() + p.var() + (mean_t - mean_p) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def confusion_matrix(y_true, y_pred, n_classes: int = 2, mask=None) -> np.ndarray:
    """[n_classes, n_classes] int counts; rows are true classes, columns predicted ones."""
    t, p = _valid(y_true, y_pred, mask, "confusion_matrix")
    t, p = t.astype(np.int64), p.astype(np.int64)
    if t.min() < 0 or p.min() < 0 or t.max() >= n_classes or p.max() >= n_classes:
        raise MetricError(f"confusion_matrix: labels must lie in [0, {n_classes})")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def f1_macro(y_true, y_pred, labels=None, mask=None) -> float:
    """Unweighted mean over classes of F1 = 2 TP / (2 TP + FP + FN).

    labels: the classes to average over; default: every class seen in y_true or y_pred (as
    sklearn does). A class that is never predicted scores F1 = 0; a class in `labels` that
    appears nowhere (0/0) also scores 0.
    """
    t, p = _valid(y_true, y_pred, mask, "f1_macro")
    classes = np.union1d(t, p) if labels is None else np.asarray(labels)
    scores = []
    for c in classes:
        tp = np.sum((t == c) & (p == c))
        wrong = np.sum((t == c) != (p == c))  # FP + FN
        scores.append(2 * tp / (2 * tp + wrong) if tp + wrong > 0 else 0.0)
    return float(np.mean(scores))


def expected_calibration_error(y_true, prob, bins: int = 10, mask=None) -> float:
    """Binary ECE of the predicted class: sum over equal-width confidence bins of
    (bin share) * |accuracy - mean confidence|, with prob = P(class 1), the predicted class
    prob >= 0.5 and its confidence max(prob, 1 - prob)."""
    t, prob = _valid(y_true, prob, mask, "expected_calibration_error")
    prob = prob.astype(np.float64)
    pred = (prob >= 0.5).astype(np.int64)
    confidence = np.where(pred == 1, prob, 1.0 - prob)
    correct = (pred == t.astype(np.int64)).astype(np.float64)
    which = np.clip((confidence * bins).astype(np.int64), 0, bins - 1)
    gap = np.bincount(which, weights=correct - confidence, minlength=bins)  # per bin: n_b * (acc - conf)
    return float(np.abs(gap).sum() / t.size)


def va_metrics(y_true, y_pred, mask=None) -> dict[str, float]:
    """Valence/arousal CCCs from [N, 2] arrays (mask [N, 2] bool per dim, optional).

    A dimension with no valid entries scores nan (undefined), and so does the mean then.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim != 2 or y_true.shape[1] != 2 or y_true.shape != y_pred.shape:
        raise MetricError(f"va_metrics needs [N, 2] arrays; got {y_true.shape} and {y_pred.shape}")
    masks = np.ones(y_true.shape, bool) if mask is None else np.asarray(mask, dtype=bool)
    if masks.shape != y_true.shape:
        raise MetricError(f"va_metrics: mask has shape {masks.shape}, values {y_true.shape}")
    v, a = (ccc(y_true[:, j], y_pred[:, j], masks[:, j]) if masks[:, j].any() else float("nan") for j in (0, 1))
    return {"ccc_valence": v, "ccc_arousal": a, "ccc_mean": (v + a) / 2}


def violence_metrics(y_true, prob1, mask=None, threshold: float = 0.5) -> dict:
    """Binary metrics from labels [N] and P(class 1) [N]: macro-F1 over both classes,
    accuracy, confusion matrix (nested list) and ECE."""
    t, prob = _valid(y_true, prob1, mask, "violence_metrics")
    t = t.astype(np.int64)
    pred = (prob >= threshold).astype(np.int64)
    return {
        "f1_macro": f1_macro(t, pred, labels=(0, 1)),
        "accuracy": float(np.mean(t == pred)),
        "confusion": confusion_matrix(t, pred, n_classes=2).tolist(),
        "ece": expected_calibration_error(t, prob),
    }


# ---- additive statistics --------------------------------------------------------------------
#
# Every metric above is a function of per-frame sums, so the metric of any multiset of frames
# (a bootstrap draw of videos, say) follows from the sums of its parts: `*_statistics` gives
# one row of sums per frame (rows add up), `*_from_statistics` turns summed rows [..., S] into
# the metrics, vectorised over the leading axes.

VA_MOMENTS = 6  # per dimension: n, sum t, sum p, sum t^2, sum p^2, sum t*p
ECE_BINS = 10


def va_statistics(y_true, y_pred, mask=None) -> np.ndarray:
    """Per-frame sums [N, 12] of valence/arousal from [N, 2] arrays; masked frames add zeros."""
    t, p = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    m = np.ones(t.shape, bool) if mask is None else np.asarray(mask, bool)
    t, p, w = np.where(m, t, 0.0), np.where(m, p, 0.0), m.astype(np.float64)
    per_dim = [np.stack([w[:, k], t[:, k], p[:, k], t[:, k] ** 2, p[:, k] ** 2, t[:, k] * p[:, k]], axis=1)
               for k in range(t.shape[1])]
    return np.concatenate(per_dim, axis=1)


def _ccc_from_sums(s: np.ndarray) -> np.ndarray:
    """CCC from [..., 6] moment sums; nan where n = 0, 0 where the denominator vanishes (as `ccc`)."""
    n = s[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        mt, mp = s[..., 1] / n, s[..., 2] / n
        vt, vp = s[..., 3] / n - mt * mt, s[..., 4] / n - mp * mp
        cov = s[..., 5] / n - mt * mp
        denom = vt + vp + (mt - mp) ** 2
        # sums in float64 leave ~1e-16 where the two-pass formula has an exact 0
        out = np.where(denom > 1e-12, 2 * cov / np.where(denom > 1e-12, denom, 1.0), 0.0)
    return np.where(n > 0, out, np.nan)


def va_from_statistics(stats: np.ndarray) -> dict[str, np.ndarray]:
    """`va_metrics` from summed `va_statistics` [..., 12]."""
    v = _ccc_from_sums(stats[..., :VA_MOMENTS])
    a = _ccc_from_sums(stats[..., VA_MOMENTS : 2 * VA_MOMENTS])
    return {"ccc_valence": v, "ccc_arousal": a, "ccc_mean": (v + a) / 2}


def violence_statistics(y_true, prob1, mask=None, threshold: float = 0.5, bins: int = ECE_BINS) -> np.ndarray:
    """Per-frame sums [N, 4 + 2 * bins]: the confusion cell (n00, n01, n10, n11), then per
    confidence bin its count and (correct - confidence), as `expected_calibration_error` bins them."""
    t = np.asarray(y_true).astype(np.int64)
    prob = np.asarray(prob1, np.float64)
    w = np.ones(t.shape, bool) if mask is None else np.asarray(mask, bool)
    pred = (prob >= threshold).astype(np.int64)
    cells = np.zeros((len(t), 4))
    cells[np.arange(len(t)), np.clip(t, 0, 1) * 2 + pred] = 1.0
    confidence = np.where(pred == 1, prob, 1.0 - prob)
    which = np.clip((confidence * bins).astype(np.int64), 0, bins - 1)
    counts, gaps = np.zeros((len(t), bins)), np.zeros((len(t), bins))
    counts[np.arange(len(t)), which] = 1.0
    gaps[np.arange(len(t)), which] = (pred == t).astype(np.float64) - confidence
    return np.concatenate([cells, counts, gaps], axis=1) * w[:, None]


def violence_from_statistics(stats: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """macro-F1, accuracy and ECE from summed `violence_statistics` [..., 4 + 2 * bins]."""
    n00, n01, n10, n11 = (stats[..., i] for i in range(4))
    n = n00 + n01 + n10 + n11
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = [np.where(d > 0, 2 * tp / np.where(d > 0, d, 1.0), 0.0)
              for tp, d in ((n00, 2 * n00 + n01 + n10), (n11, 2 * n11 + n01 + n10))]
        gaps = stats[..., 4 + bins : 4 + 2 * bins]
        accuracy = (n00 + n11) / n
        ece = np.abs(gaps).sum(axis=-1) / n
    valid = n > 0
    return {"f1_macro": np.where(valid, (f1[0] + f1[1]) / 2, np.nan), "accuracy": np.where(valid, accuracy, np.nan),
            "ece": np.where(valid, ece, np.nan)}
