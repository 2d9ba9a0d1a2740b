"""Report plots (matplotlib, Agg backend, PNG): bars with error bars, confusion matrix,
valence/arousal density, training curves."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fgvu.fusion.run_folder import FrameTable, read_epochs
from fgvu.tasks import TASKS

METRIC_LABELS = {k: v for task in TASKS.values() for k, v in task.metric_labels.items()}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def bar_chart(rows: Sequence[dict], metric: str, reference: str, path: str | Path) -> Path:
    """Mean +- std per configuration (rows: config, group, mean, std, significant), the reference
    highlighted and its mean drawn across; '*' marks Holm-significant differences."""
    plt = _pyplot()
    rows = [r for r in rows if not math.isnan(r["mean"])]
    groups = list(dict.fromkeys(r["group"] for r in rows))
    colours = {g: plt.get_cmap("tab10")(i % 10) for i, g in enumerate(groups)}
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(rows) + 2), 4.5), layout="constrained")
    x = np.arange(len(rows))
    means = np.array([r["mean"] for r in rows])
    stds = np.array([0.0 if math.isnan(r["std"]) else r["std"] for r in rows])
    bars = ax.bar(x, means, yerr=stds, capsize=3, color=[colours[r["group"]] for r in rows],
                  edgecolor=["black" if r["config"] == reference else "none" for r in rows], linewidth=1.5)
    ref = next((r for r in rows if r["config"] == reference), None)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[g]) for g in groups]
    labels = list(groups)
    if ref is not None:
        handles.append(ax.axhline(ref["mean"], color="black", linestyle="--", linewidth=0.8))
        labels.append(f"{reference} mean")
    for bar, r, s in zip(bars, rows, stds):
        if r.get("significant"):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + s, "*", ha="center", va="bottom")
    ax.set_xticks(x, [r["config"] for r in rows], rotation=60, ha="right")
    ax.set_ylabel(f"validation {METRIC_LABELS.get(metric, metric)} (mean ± std over seeds)")
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Ablations (* significant vs reference, paired t-test, Holm 0.05)", fontsize=10)
    return _save(fig, Path(path))


def confusion_plot(vf: FrameTable, path: str | Path, title: str = "") -> Path:
    """The 2x2 frame-level confusion matrix over valid frames: counts and row percentages."""
    plt = _pyplot()
    valid = vf.mask[:, 0]
    truth = (vf.y_true[valid, 0] >= 0.5).astype(int)
    pred = vf.labels[valid]
    cm = np.zeros((2, 2), dtype=np.int64)
    np.add.at(cm, (truth, pred), 1)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.2, 3.8), layout="constrained")
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{cm[i, j]}\n{100 * rates[i, j]:.1f}%", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black")
    names = ["non-violent", "violent"]
    ax.set_xticks([0, 1], names)
    ax.set_yticks([0, 1], names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "frame-level confusion matrix", fontsize=10)
    return _save(fig, Path(path))


def va_density_plot(vf: FrameTable, path: str | Path, title: str = "") -> Path:
    """Predicted vs true valence and arousal as 2-D histograms over valid frames, with the diagonal."""
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
    edges = np.linspace(-1, 1, 41)
    for k, (ax, dim) in enumerate(zip(axes, ("valence", "arousal"))):
        ok = vf.mask[:, k]
        true, pred = np.clip(vf.y_true[ok, k], -1, 1), np.clip(vf.y_pred[ok, k], -1, 1)
        if len(true):
            *_, image = ax.hist2d(true, pred, bins=[edges, edges], cmap="viridis", norm=LogNorm(), cmin=1)
            fig.colorbar(image, ax=ax, label="frames")
        ax.plot([-1, 1], [-1, 1], color="tab:red", linestyle="--", linewidth=0.8, label="prediction = truth")
        ax.set_xlim(-1, 1)
        ax.set_ylim(-1, 1)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {dim}")
        ax.set_ylabel(f"predicted {dim}")
        ax.set_title(f"{dim} ({len(true)} valid frames)", fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))


def epoch_value(record: dict, key: str) -> float:
    """A value of one metrics.jsonl record: `key`, `select: {key}` (the selection split), or from runs
    before the selection hold-out `val_<key>` or `val: {key}`; nan when absent."""
    for value in (record.get(key), (record.get("select") or {}).get(key), record.get(f"val_{key}"),
                  (record.get("val") or {}).get(key)):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return math.nan


def curves_plot(runs: Sequence[tuple[str, Path]], metric: str, path: str | Path, title: str = "") -> Path:
    """Training loss and the selection split's metric per epoch for each (label, run folder)."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, (loss_ax, metric_ax) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for label, run_dir in runs:
        records = read_epochs(run_dir)
        epochs = [epoch_value(r, "epoch") for r in records]
        loss_ax.plot(epochs, [epoch_value(r, "train_loss") for r in records], label=label, linewidth=1)
        metric_ax.plot(epochs, [epoch_value(r, metric) for r in records], label=label, linewidth=1)
    for ax in (loss_ax, metric_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss")
    metric_ax.set_xlabel("epoch")
    metric_ax.set_ylabel(f"{METRIC_LABELS.get(metric, metric)} on the selection split")
    if len(runs) > 1:
        metric_ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, Path(path))
