"""Ablation reports: runs.csv, summary.csv, failures.csv, ablations.md, failure_analysis.md and plots/.

Also `report_run`, the per-run plots and failure analysis behind `fgvu report RUN`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fgvu.ablations.failures import failure_analysis
from fgvu.ablations.plots import METRIC_LABELS, bar_chart, curves_plot
from fgvu.ablations.stats import ALPHA, holm, summarize
from fgvu.fusion.bootstrap import paired_comparison

# A bootstrap of D draws cannot give p below 2/(D+1); Holm multiplies the smallest p by the number of
# comparisons (25 in the default grid), so 1,000 draws would floor every adjusted p at 0.05.
COMPARISON_DRAWS = 10_000
from fgvu.fusion.run_folder import (
    REPORT, RunFolderError, load_val_frames, read_metrics, reported, selection_label,
)
from fgvu.modalities import MODALITIES
from fgvu.tasks import TASKS

if TYPE_CHECKING:
    from fgvu.ablations.runner import GridPlan, RunResult


def _val(metrics: dict | None, key: str) -> float:
    """A reported metric of a run (on the split selection never saw, unless "selected on val")."""
    value = reported(metrics or {}).get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _labels(results: Sequence[RunResult]) -> dict[str, str]:
    """Per configuration, how its runs selected the epoch ("selected on val", ...), joined when mixed."""
    seen: dict[str, set[str]] = {}
    for r in results:
        if r.metrics:
            seen.setdefault(r.run.config, set()).add(selection_label(r.metrics))
    return {c: " / ".join(sorted(labels)) for c, labels in seen.items()}


def _write_csv(path: Path, rows: list[dict], columns: Sequence[str]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({c: _csv_value(row.get(c)) for c in columns})
    return path


def _csv_value(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


def run_rows(plan: GridPlan, results: Sequence[RunResult], out: Path) -> list[dict]:
    """One row per run: config, group, seed, status, the metrics, best epoch, time, folder, error."""
    task = TASKS[plan.task]
    metric = task.primary
    rows = []
    for r in results:
        row = {"config": r.run.config, "group": r.run.group, "seed": r.run.seed, "status": r.status,
               metric: _val(r.metrics, metric)}
        for key in task.secondary:
            row[key] = _val(r.metrics, key)
        row["best_epoch"] = (r.metrics or {}).get("best_epoch")
        row["selected_on"] = selection_label(r.metrics) if r.metrics else ""
        row["reported_on"] = (r.metrics or {}).get("reported_on", "val" if r.metrics else "")
        row["seconds"] = (r.metrics or {}).get("seconds", round(r.seconds, 2))  # fit's own time, when it finished
        row["run_dir"] = str(r.run_dir.relative_to(out)) if r.run_dir.is_relative_to(out) else str(r.run_dir)
        row["error"] = r.error or ""
        rows.append(row)
    return rows


def summary_rows(plan: GridPlan, results: Sequence[RunResult]) -> list[dict]:
    """One row per configuration of the grid: mean +- std over seeds, the paired t-test over seeds
    and the paired bootstrap over videos against the reference, each Holm-corrected."""
    metric = TASKS[plan.task].primary
    scores: dict[str, dict[int, float]] = {}
    failed: dict[str, int] = {}
    for r in results:
        if r.status == "failed":
            failed[r.run.config] = failed.get(r.run.config, 0) + 1
            continue
        value = _val(r.metrics, metric)
        if not math.isnan(value):
            scores.setdefault(r.run.config, {})[r.run.seed] = value
    ran = [a.name for a in plan.grid.ablations if a.name in scores]
    stats = {s.config: s for s in summarize({c: scores[c] for c in ran}, plan.grid.reference)}
    videos = video_comparisons(plan, results, ran)
    skipped = {s.config: s.reason for s in plan.skipped}
    labels = _labels(results)
    rows = []
    for ablation in plan.grid.ablations:
        name = ablation.name
        row = {"config": name, "group": ablation.group, "description": ablation.description,
               "reference": name == plan.grid.reference, "n_failed": failed.get(name, 0),
               "selected_on": labels.get(name, "")}
        nan = math.nan
        if name in stats:
            s = stats[name]
            row.update(status="ok", n=s.n, mean=s.mean, std=s.std, delta=s.delta, n_pairs=s.n_pairs, t=s.t,
                       p=s.p, p_holm=s.p_holm, significant=s.significant, note="")
        else:
            status = "skipped" if name in skipped else "failed"
            note = skipped.get(name, "every run failed; see failures.csv")
            row.update(status=status, n=0, mean=nan, std=nan, delta=nan, n_pairs=0, t=nan, p=nan, p_holm=nan,
                       significant=False, note=note)
        row.update(videos.get(name, {"video_delta": nan, "video_ci_lo": nan, "video_ci_hi": nan, "video_p": nan,
                                     "video_p_holm": nan, "video_significant": False, "n_videos": 0}))
        rows.append(row)
    return rows


def video_comparisons(plan: GridPlan, results: Sequence[RunResult], configs: Sequence[str]) -> dict[str, dict]:
    """Per non-reference configuration: the paired bootstrap over the reported videos against the
    reference (runs paired by seed), with Holm correction over the configurations compared."""
    task = TASKS[plan.task]
    tables: dict[str, dict[int, object]] = {}
    for r in results:
        if r.status != "failed" and r.run.config in configs:
            try:
                tables.setdefault(r.run.config, {})[r.run.seed] = load_val_frames(r.run_dir)
            except RunFolderError:
                continue  # a run folder without its frames is compared by the seed test only
    reference = tables.get(plan.grid.reference, {})
    compared = {}
    for config in configs:
        if config == plan.grid.reference or config not in tables:
            continue
        c = paired_comparison(task, task.primary, tables[config], reference, draws=COMPARISON_DRAWS)
        if c is not None:
            compared[config] = c
    names = list(compared)
    adjusted, reject = holm([compared[c].p for c in names])
    return {c: {"video_delta": compared[c].delta, "video_ci_lo": compared[c].ci[0], "video_ci_hi": compared[c].ci[1],
                "video_p": compared[c].p, "video_p_holm": adj, "video_significant": rej,
                "n_videos": compared[c].n_groups}
            for c, adj, rej in zip(names, adjusted, reject)}


def _num(value: float, digits: int = 3, signed: bool = False) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if math.isnan(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def markdown_summary(rows: Sequence[dict], metric: str, reference: str) -> str:
    """The paper-ready table: configuration, group, n, mean ± std, then against the reference the
    seed test (Δ, p, Holm p, marker) and the paired bootstrap over videos (Δ [95% CI], Holm p, marker)."""
    label = METRIC_LABELS.get(metric, metric)
    lines = [f"| Configuration | Group | n | {label} (mean ± std) | Δ vs {reference} | p (seeds) | p (Holm) | sig. "
             "| Δ over videos [95% CI] | p (videos, Holm) | sig. | selected on |",
             "|---|---|---:|---:|---:|---:|---:|:---:|---:|---:|:---:|---|"]
    for r in rows:
        if r["status"] != "ok":
            continue
        name = f"**{r['config']}**" if r["reference"] else r["config"]
        score = f"{_num(r['mean'])} ± {_num(r['std'])}" if not math.isnan(r["std"]) else _num(r["mean"])
        video = (f"{_num(r['video_delta'], signed=True)} [{_num(r['video_ci_lo'], signed=True)}, "
                 f"{_num(r['video_ci_hi'], signed=True)}]" if not math.isnan(r["video_delta"]) else "—")
        selected = r["selected_on"].replace("selected on ", "")
        lines.append(f"| {name} | {r['group']} | {r['n']} | {score} | {_num(r['delta'], signed=True)} | "
                     f"{_p(r['p'])} | {_p(r['p_holm'])} | {'*' if r['significant'] else ''} | {video} | "
                     f"{_p(r['video_p_holm'])} | {'*' if r['video_significant'] else ''} | {selected} |")
    return "\n".join(lines) + "\n"


def _representative(results: Sequence[RunResult], config: str, metric: str) -> RunResult | None:
    """The finished run of `config` with the median score (the lower median for even counts)."""
    done = sorted((r for r in results if r.run.config == config and r.status != "failed"),
                  key=lambda r: (_val(r.metrics, metric), r.run.seed))
    return done[(len(done) - 1) // 2] if done else None


def report_run(run_dir: str | Path, out: str | Path | None = None, label: str = "") -> dict[str, Path]:
    """Per-run plots and failure analysis into `out` (default RUN/report): curves, confusion
    matrix (violence) or valence/arousal density (va), failure_analysis.md."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    if metrics.get("task") not in TASKS:
        raise RunFolderError(f"{run_dir / 'metrics.json'}: unknown task {metrics.get('task')!r}")
    task = TASKS[metrics["task"]]
    out = Path(out) if out is not None else run_dir / REPORT
    out.mkdir(parents=True, exist_ok=True)
    label = label or run_dir.name
    metric = task.primary
    files = {"curves": curves_plot([(label, run_dir)], metric, out / "curves.png", f"{label}: training curves")}
    vf = load_val_frames(run_dir)
    score = f"{METRIC_LABELS[metric]} {_val(metrics, metric):.3f} on {metrics.get('reported_on', 'val')}, " \
            f"{selection_label(metrics)}"
    name, path = task.prediction_plot
    files[name] = task.plot_predictions(vf, out / path, f"{label}: {task.prediction_plot_title} ({score})")
    analysis = out / "failure_analysis.md"
    analysis.write_text(f"# Failure analysis: {label}\n\n{task.failure_analysis(vf)}")
    files["failure_analysis"] = analysis
    return files


def write_report(plan: GridPlan, results: Sequence[RunResult], out: str | Path) -> dict[str, Path]:
    """Write every report file of an ablation grid into `out`; return them by name."""
    out = Path(out)
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    metric, reference = TASKS[plan.task].primary, plan.grid.reference
    runs = run_rows(plan, results, out)
    files = {"runs": _write_csv(out / "runs.csv", runs, list(runs[0]) if runs else ["config", "seed", "status"])}
    summary = summary_rows(plan, results)
    files["summary"] = _write_csv(out / "summary.csv", summary, list(summary[0]))
    failures = [r for r in runs if r["status"] == "failed"]
    files["failures"] = _write_csv(out / "failures.csv", failures, ["config", "seed", "run_dir", "error"])

    ok = [r for r in summary if r["status"] == "ok"]
    if ok:
        files["bars"] = bar_chart(ok, metric, reference, plots / "bars.png")
    full = _representative(results, reference, metric)
    analysis = ""
    if full is not None:
        seeds = sorted((r for r in results if r.run.config == reference and r.status != "failed"),
                       key=lambda r: r.run.seed)
        files["curves"] = curves_plot([(f"seed {r.run.seed}", r.run_dir) for r in seeds], metric,
                                      plots / "full_curves.png", f"{reference}: training curves per seed")
        per_run = report_run(full.run_dir, plots / "full", label=f"{reference} seed {full.run.seed}")
        files.update({f"full_{k}": v for k, v in per_run.items() if k != "curves"})
        analysis = (f"Run `{full.run_dir.relative_to(out) if full.run_dir.is_relative_to(out) else full.run_dir}` "
                    f"(seed {full.run.seed}, the median of the {reference} model's seeds).\n\n"
                    + failure_analysis(full.run_dir, plan.task))
        files["failure_analysis"] = out / "failure_analysis.md"
        files["failure_analysis"].write_text(f"# Failure analysis of the {reference} model\n\n{analysis}")

    files["markdown"] = out / "ablations.md"
    files["markdown"].write_text(_markdown(plan, runs, summary, analysis, files, out))
    return files


def _adds_one_stream(cfg, reference) -> str | None:
    """The letter a configuration adds to the reference, when that is all it changes."""
    import dataclasses

    extra = set(cfg.model.modalities) - set(reference.model.modalities)
    if len(extra) != 1 or not set(reference.model.modalities) <= set(cfg.model.modalities):
        return None
    same_model = dataclasses.replace(cfg.model, modalities=reference.model.modalities) == reference.model
    same_fit = dataclasses.replace(cfg, model=reference.model, seed=reference.seed) == reference
    return extra.pop() if same_model and same_fit else None


def added_stream_verdicts(plan: GridPlan, summary: Sequence[dict]) -> list[str]:
    """A section per stream that some configuration adds to the reference: does it help?"""
    metric, reference = TASKS[plan.task].primary, plan.grid.reference
    label = METRIC_LABELS.get(metric, metric)
    sections = []
    for row in summary:
        letter = _adds_one_stream(plan.configs[row["config"]], plan.configs[reference])
        if letter is None:
            continue
        name = MODALITIES[letter].name
        if row["status"] != "ok":
            verdict = f"not measured: {row['note']}."
        elif math.isnan(row["p_holm"]):
            verdict = f"{_num(row['delta'], signed=True)} {label}; too few paired seeds to test."
        else:
            change = "helps" if row["delta"] > 0 else "hurts"
            sig = f"{name} {change}" if row["significant"] else "no significant difference"
            verdict = (f"{_num(row['delta'], signed=True)} {label} (paired t-test, Holm p {_p(row['p_holm'])}): "
                       f"{sig}.")
        sections.append(f"## Does {name} help?\n\n`{row['config']}` against **{reference}**, the same "
                        f"configuration without {name}: {verdict}\n")
    return sections


def _markdown(plan: GridPlan, runs: list[dict], summary: list[dict], analysis: str, files: dict, out: Path) -> str:
    metric, reference = TASKS[plan.task].primary, plan.grid.reference
    cfg = plan.configs[reference]
    labels = sorted({r["selected_on"] for r in runs if r["selected_on"]})
    selected_on_val = any(r["selected_on"] == "selected on val" and r["reported_on"] == "val" for r in runs)
    reported_on = sorted({r["reported_on"] for r in runs if r["reported_on"]}) or ["val"]
    protocol = (f"Each run's epoch was {' / '.join(labels) or 'selected by early stopping'}; its score is its "
                f"best epoch's on the reported split ({', '.join(reported_on)}), "
                + ("which for runs selected on val is the split that chose the epoch, so those absolute values "
                   "are optimistic (the common ABAW practice). "
                   if selected_on_val else "which model selection never saw. "))
    tested = sum(1 for r in summary if r["status"] == "ok" and not r["reference"] and not math.isnan(r["p"]))
    parts = [
        f"# Ablations: {plan.task} on `{plan.cache}`\n",
        f"Frame-level {METRIC_LABELS[metric]} over seeds {', '.join(map(str, plan.seeds))} "
        f"({len(plan.runs)} runs of {len(plan.grid.ablations)} configurations, {plan.grid.source}; "
        f"up to {cfg.epochs} epochs each). {protocol}"
        f"Each configuration is compared with **{reference}** twice: a two-sided paired t-test over seeds "
        f"(initialisation noise on fixed videos) and a paired bootstrap over the reported base videos "
        f"({COMPARISON_DRAWS:,} draws, the same videos for both, runs paired by seed: how much the difference depends on "
        f"which videos were scored). `*` marks differences significant at {ALPHA} after Holm correction "
        f"over {tested} comparisons, per test.\n",
        markdown_summary(summary, metric, reference),
    ]
    parts += added_stream_verdicts(plan, summary)
    skipped = [r for r in summary if r["status"] == "skipped"]
    if skipped:
        parts.append("Skipped (the cache does not hold their streams or sampling):\n\n"
                     + "\n".join(f"- {r['config']}: {r['note']}" for r in skipped) + "\n")
    failed = [r for r in runs if r["status"] == "failed"]
    if failed:
        parts.append(f"Failed runs ({len(failed)}; details in failures.csv and each run's error.txt; "
                     "re-running the command retries them):\n\n"
                     + "\n".join(f"- {r['config']} seed {r['seed']}: {r['error']}" for r in failed) + "\n")
    task = TASKS[plan.task]
    pictures = [("bars", "Mean ± std per configuration"), ("curves", f"Training curves of {reference}"),
                (f"full_{task.prediction_plot[0]}", f"{task.prediction_plot_title.capitalize()} of {reference}")]
    shown = [f"![{title}]({files[key].relative_to(out)})" for key, title in pictures if key in files]
    if shown:
        parts.append("## Plots\n\n" + "\n\n".join(shown) + "\n")
    if analysis:
        parts.append(f"## Failure analysis of {reference}\n\n{analysis}")
    return "\n".join(parts)
