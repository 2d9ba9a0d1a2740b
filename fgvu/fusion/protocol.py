"""What a run reports, and on which videos: the record of selection apart from reporting.

`fit` selects the best epoch on one split (`SplitPlan.select`) and reports the score of that
epoch on another (`SplitPlan.report`), with a 95% bootstrap interval over base videos next to
every metric (`fgvu.fusion.bootstrap`). This module turns both into metrics.json's content:

    "selected_on": "holdout" | "val"     which split chose the epoch
    "reported_on": "val" | "test"        which split the reported metrics come from
    "label": "selected on a training hold-out" | "selected on val"
    "select": {metrics}                  the best epoch on the selection split (never reported)
    "<reported_on>": {metrics, <metric>_ci: [lo, hi]}
    "bootstrap": {unit, n_groups, draws, seed, level}, "warnings": [...]
"""

from __future__ import annotations

import numpy as np

from fgvu.fusion import bootstrap
from fgvu.fusion.run_folder import FrameTable
from fgvu.fusion.splits import SplitPlan
from fgvu.tasks import Task


def reported_metrics(task: Task, table: FrameTable, metrics: dict, draws: int, what: str) -> tuple[dict, dict, list]:
    """(metrics with intervals, the bootstrap's description, warnings) of a reported split."""
    warnings = bootstrap.degenerate_warnings(task, table, what)
    return (bootstrap.with_intervals(task, table, metrics, draws), bootstrap.bootstrap_note(table, task, draws),
            warnings)


def run_result(task: Task, plan: SplitPlan, best_epoch: int, epochs_run: int, select: dict, report: dict,
               report_table: FrameTable, draws: int, select_table: FrameTable) -> dict:
    """metrics.json of a finished run (without its timing)."""
    reported, note, warnings = reported_metrics(task, report_table, report, draws,
                                                f"the reported split ({plan.reported_on})")
    if plan.selected_on != "val" or plan.reported_on != "val":
        warnings += bootstrap.degenerate_warnings(task, select_table, "the selection split")
    return {
        "task": task.name, "primary": task.primary, "best_epoch": best_epoch, "epochs_run": epochs_run,
        "selected_on": plan.selected_on, "reported_on": plan.reported_on, "label": plan.label,
        "report_source": plan.report_source, "select": select, plan.reported_on: reported,
        "bootstrap": note, "warnings": warnings,
        "n_train_videos": int(len(plan.train)), "n_select_videos": int(len(plan.select)),
        f"n_{plan.reported_on}_videos": int(len(plan.report)),
    }


def same_videos(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two row sets are the same videos (selection on the report split)."""
    return len(a) == len(b) and bool(np.all(np.sort(a) == np.sort(b)))
