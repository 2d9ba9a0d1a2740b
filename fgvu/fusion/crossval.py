"""Group k-fold cross-validation by base video: `fgvu cv CACHE --folds K`.

Fold k is an ordinary `fit` run with `folds=K, fold=k` in OUT/fold-<k>/ (the folds pool the
training and validation videos, `fgvu.fusion.splits.group_folds`); finished folds are not run
again. The summary is the mean ± sample std over folds of each reported metric, in
OUT/cv.json and OUT/cv.md.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np

from fgvu.atomic_io import write_json, write_text
from fgvu.cache import cache_fingerprint
from fgvu.fusion.config import FitConfig
from fgvu.fusion.run_folder import is_finished, reported, selection_label
from fgvu.tasks import get_task


def fold_dir(out: Path, fold: int) -> Path:
    return Path(out) / f"fold-{fold}"


def run_cv(cache: str | Path, cfg: FitConfig, out: str | Path, folds: int, progress: bool = True,
           log=print) -> dict:
    """Run (or resume) every fold of a group k-fold and summarise it; returns cv.json's content."""
    from fgvu.fusion.train import fit

    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    out = Path(out)
    fingerprint = cache_fingerprint(cache)
    results = []
    for k in range(folds):
        fold_cfg = dataclasses.replace(cfg, folds=folds, fold=k)
        run = fold_dir(out, k)
        done = is_finished(run, fold_cfg, cache, fingerprint)
        if done is not None:
            log(f"fold {k}: finished before, kept")
            results.append(done)
            continue
        log(f"fold {k} of {folds} -> {run}")
        results.append(fit(cache, fold_cfg, run, progress=progress, overwrite=True))
    summary = summarize(results, out)
    write_json(out / "cv.json", summary)
    write_text(out / "cv.md", markdown(summary))
    return summary


def summarize(results: list[dict], out: Path) -> dict:
    """Mean ± std over folds of every scalar reported metric, with each fold's own numbers."""
    task = get_task(results[0]["task"])
    per_fold = [{k: v for k, v in reported(r).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                for r in results]
    keys = [k for k in per_fold[0] if all(k in f for f in per_fold)]
    stats = {}
    for key in keys:
        values = np.array([f[key] for f in per_fold], np.float64)
        stats[key] = {"mean": float(np.nanmean(values)),
                      "std": float(np.nanstd(values, ddof=1)) if len(values) > 1 else math.nan}
    return {"task": task.name, "primary": task.primary, "folds": len(results), "out": str(out),
            "label": selection_label(results[0]), "metrics": stats,
            "per_fold": [{"fold": i, "best_epoch": r["best_epoch"], "n_videos": r.get("n_val_videos"), **f}
                         for i, (r, f) in enumerate(zip(results, per_fold))]}


def markdown(summary: dict) -> str:
    """cv.md: the mean ± std line and a row per fold."""
    keys = list(summary["metrics"])
    lines = [f"# {summary['folds']}-fold cross-validation by base video ({summary['label']})", "",
             "| fold | videos | best epoch | " + " | ".join(keys) + " |",
             "|---:|---:|---:|" + "---:|" * len(keys)]
    for f in summary["per_fold"]:
        lines.append(f"| {f['fold']} | {f['n_videos']} | {f['best_epoch']} | "
                     + " | ".join(f"{f[k]:.4f}" for k in keys) + " |")
    lines.append("| **mean ± std** | | | " + " | ".join(
        f"{s['mean']:.4f} ± {s['std']:.4f}" for s in summary["metrics"].values()) + " |")
    return "\n".join(lines) + "\n"
