"""Uncertainty over videos: bootstrap intervals and paired comparisons that resample base videos.

Frames of one video are strongly correlated, so a frame-level interval would be far too narrow;
the unit of resampling is the base video (`Task.base_video`: the two tracks `_left`/`_right`
of one recording are one unit). A draw picks base videos with replacement and pools their
frames, as the benchmarks pool frames. Every metric is a function of additive per-frame sums
(`Task.statistics`), so a draw's metrics are `counts @ per-video sums`: 1,000 draws cost a
matrix product, not 1,000 metric evaluations.

Intervals are percentile intervals, seeded (`SEED`), `DRAWS` draws by default.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fgvu.fusion.run_folder import FrameTable
from fgvu.tasks import Task

DRAWS = 1000
LEVEL = 0.95
SEED = 0
log = logging.getLogger("fgvu")


@dataclass(frozen=True)
class GroupStatistics:
    """Per base video: its name, its videos, and the sums of its valid frames' statistics."""

    groups: list[str]
    videos: list[list[str]]
    sums: np.ndarray  # [G, S]


def group_statistics(task: Task, table: FrameTable, rows: np.ndarray | None = None) -> GroupStatistics:
    """Sum the frame statistics of `table` (or of its `rows`) per base video, in sorted group order."""
    sel = np.arange(len(table.video)) if rows is None else np.asarray(rows)
    prob = table.prob[sel] if table.prob is not None else None
    stats = task.statistics(table.y_true[sel], table.y_pred[sel], table.mask[sel], prob)
    names = table.video_names.astype(str)
    bases = np.array([task.base_video(n) for n in names])
    groups, group_of_video = np.unique(bases, return_inverse=True)
    sums = np.zeros((len(groups), stats.shape[1]))
    np.add.at(sums, group_of_video[table.video[sel]], stats)
    present = np.unique(group_of_video[table.video[sel]])
    videos = [sorted(names[group_of_video == g].tolist()) for g in present]
    return GroupStatistics([str(groups[g]) for g in present], videos, sums[present])


def draw_counts(n_groups: int, draws: int = DRAWS, seed: int = SEED) -> np.ndarray:
    """[draws, n_groups]: how often each group is drawn in each resample of n_groups with replacement."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=draws).astype(np.float64)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> list[float]:
    """[lo, hi] of the finite samples; [nan, nan] when none is finite."""
    finite = samples[np.isfinite(samples)]
    if not len(finite):
        return [float("nan"), float("nan")]
    lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def intervals(task: Task, stats: GroupStatistics, draws: int = DRAWS, seed: int = SEED,
              level: float = LEVEL) -> dict[str, list[float]]:
    """{metric}_ci -> [lo, hi] for every scalar metric of the task."""
    resampled = task.from_statistics(draw_counts(len(stats.groups), draws, seed) @ stats.sums)
    return {f"{name}_ci": percentile_interval(values, level) for name, values in resampled.items()}


def with_intervals(task: Task, table: FrameTable, metrics: dict, draws: int = DRAWS, seed: int = SEED) -> dict:
    """`metrics` with each scalar metric followed by its `<metric>_ci` over base videos."""
    cis = intervals(task, group_statistics(task, table), draws, seed)
    out = {}
    for key, value in metrics.items():
        out[key] = value
        if f"{key}_ci" in cis:
            out[f"{key}_ci"] = cis[f"{key}_ci"]
    return out


def bootstrap_note(table: FrameTable, task: Task, draws: int = DRAWS, seed: int = SEED) -> dict:
    """What the intervals are, for metrics.json and eval.json."""
    groups = {task.base_video(str(n)) for n in table.video_names}
    return {"unit": "base video", "n_groups": len(groups), "draws": draws, "seed": seed, "level": LEVEL,
            "method": "percentile"}


def degenerate_warnings(task: Task, table: FrameTable, what: str) -> list[str]:
    """Warnings for a split that cannot support an interval or a metric: one base video, one class.

    Each warning is also logged, so commands show it."""
    warnings = []
    groups = sorted({task.base_video(str(n)) for n in table.video_names[np.unique(table.video)]})
    if len(groups) == 1:
        warnings.append(f"{what} holds a single base video ({groups[0]}): its bootstrap interval cannot "
                        "reflect variation between videos")
    reason = task.degenerate(table.y_true, table.mask)
    if reason:
        warnings.append(f"{what}: {reason}; {task.primary} is not informative there")
    for w in warnings:
        log.warning(w)
    return warnings


@dataclass(frozen=True)
class PairedComparison:
    """A configuration minus the reference, over the same resampled videos."""

    delta: float  # on all videos: mean over the paired seeds of (config - reference)
    ci: list[float]  # percentile interval of the resampled delta
    p: float  # two-sided bootstrap p-value of delta = 0
    n_groups: int
    n_pairs: int


def paired_comparison(task: Task, metric: str, config: dict[int, FrameTable], reference: dict[int, FrameTable],
                      draws: int = DRAWS, seed: int = SEED) -> PairedComparison | None:
    """Paired bootstrap over base videos of `metric`(config) - `metric`(reference).

    Runs are paired by seed; every draw resamples the same base videos for all of them, and the
    delta of a draw is the mean over seeds. A seed whose runs scored other videos than each other
    is left out. None when no seed pairs up.
    """
    pairs = []
    for s in sorted(set(config) & set(reference)):
        a, b = group_statistics(task, config[s]), group_statistics(task, reference[s])
        if a.groups == b.groups:
            pairs.append((a, b))
    if not pairs:
        return None
    groups = sorted({g for a, _ in pairs for g in a.groups})
    index = {g: i for i, g in enumerate(groups)}
    counts = draw_counts(len(groups), draws, seed)
    full = np.ones((1, len(groups)))
    deltas, point = [], []
    for a, b in pairs:
        cols = [index[g] for g in a.groups]  # a seed's own videos, weighted as the draw weights them
        for weights, out in ((counts, deltas), (full, point)):
            w = weights[:, cols]
            out.append(task.from_statistics(w @ a.sums)[metric] - task.from_statistics(w @ b.sums)[metric])
    with np.errstate(invalid="ignore"):
        delta = np.nanmean(np.stack(deltas), axis=0)
    finite = delta[np.isfinite(delta)]
    p = (min(1.0, 2 * min((finite <= 0).sum() + 1, (finite >= 0).sum() + 1) / (len(finite) + 1))
         if len(finite) else float("nan"))
    return PairedComparison(float(np.mean(point)), percentile_interval(delta), float(p), len(groups), len(pairs))
