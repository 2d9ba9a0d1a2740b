"""Statistics over seeds: mean +- std, paired t-tests against the reference, Holm correction."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05


@dataclass(frozen=True)
class TTest:
    """A two-sided paired t-test of a - b."""

    n: int  # number of pairs
    mean_diff: float
    t: float
    p: float  # nan when fewer than two pairs


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> TTest:
    """Two-sided paired t-test of H0: mean(a - b) = 0 (same statistic as scipy.stats.ttest_rel).

    Degenerate cases, where scipy returns nan: identical pairs give t = 0, p = 1; a constant
    non-zero difference gives t = +-inf, p = 0. Fewer than two pairs give t = p = nan.
    """
    from scipy.stats import t as student_t

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_t_test needs two 1-d samples of equal length, got {a.shape} and {b.shape}")
    d = a - b
    n = len(d)
    if n < 2:
        return TTest(n, float(d.mean()) if n else math.nan, math.nan, math.nan)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        if mean == 0.0:
            return TTest(n, mean, 0.0, 1.0)
        return TTest(n, mean, math.copysign(math.inf, mean), 0.0)
    t = mean / (sd / math.sqrt(n))
    p = float(2.0 * student_t.sf(abs(t), df=n - 1))
    return TTest(n, mean, t, min(1.0, p))


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm-Bonferroni step-down: adjusted p-values and which hypotheses are rejected at `alpha`.

    NaN p-values (untestable comparisons) stay NaN, are never rejected and do not count
    towards the number of hypotheses.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    order = tested[np.argsort(p[tested], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))  # adjusted p-values never decrease
        adjusted[i] = running
    reject = [bool(not math.isnan(x) and x <= alpha) for x in adjusted]
    return [float(x) for x in adjusted], reject


@dataclass(frozen=True)
class ConfigSummary:
    """One configuration's scores over seeds and its comparison with the reference."""

    config: str
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); nan for one seed
    delta: float  # mean paired difference to the reference (nan if untestable)
    n_pairs: int
    t: float
    p: float
    p_holm: float
    significant: bool


def summarize(scores: Mapping[str, Mapping[int, float]], reference: str, alpha: float = ALPHA) -> list[ConfigSummary]:
    """Per configuration (config -> seed -> score): mean +- std, and a paired t-test by seed
    against `reference`, Holm-corrected over all non-reference configurations."""
    ref = scores.get(reference, {})
    tests: dict[str, TTest] = {}
    for config, by_seed in scores.items():
        if config == reference:
            continue
        seeds = sorted(set(by_seed) & set(ref))
        tests[config] = paired_t_test([by_seed[s] for s in seeds], [ref[s] for s in seeds])
    names = list(tests)
    adjusted, reject = holm([tests[c].p for c in names], alpha)
    corrected = {c: (adj, rej) for c, adj, rej in zip(names, adjusted, reject)}
    out = []
    for config, by_seed in scores.items():
        values = np.array(list(by_seed.values()), dtype=np.float64)
        mean = float(values.mean()) if len(values) else math.nan
        std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
        if config == reference:
            out.append(ConfigSummary(config, len(values), mean, std, math.nan, 0, math.nan, math.nan, math.nan, False))
            continue
        test = tests[config]
        adj, rej = corrected[config]
        out.append(ConfigSummary(config, len(values), mean, std, test.mean_diff, test.n, test.t, test.p, adj, rej))
    return out
