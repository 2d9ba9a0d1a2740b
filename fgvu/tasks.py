"""The task registry: everything that differs between valence-arousal and violence detection.

Each task is one entry of `TASKS`. An entry says what the targets are, how many outputs the
model has and how they are activated, which losses fit, how per-step outputs become frame-level
predictions, which metrics are reported (and which one selects the best epoch) and the additive
statistics they come from (for bootstrap intervals), which videos are tracks of one recording
(`base_video`: splits and bootstraps group by it), how the benchmark's submission files are
written and read (`fgvu.submissions`), and how a run's predictions are drawn. Every task-specific
decision elsewhere reads from the entry, so adding a task means one entry here plus its dataset
adapter (`fgvu/extract/datasets/`).

Heavy modules (torch, matplotlib) are imported inside the methods that need them, so stage 1
can read target names and ranges without importing training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fgvu.errors import FgvuError

if TYPE_CHECKING:
    from torch import Tensor


class TaskError(FgvuError):
    """A task name or a task option that does not exist."""


# Aff-Wild2 annotates two people of one recording as `<video>_left` and `<video>_right`.
PERSON_SUFFIXES = ("_left", "_right")


class Task:
    """The interface of a task entry; see `ValenceArousal` and `Violence`."""

    name: str
    description: str
    targets: tuple[str, ...]  # per-frame target columns of the cache
    n_outputs: int  # model outputs per step
    losses: tuple[str, ...]  # allowed --loss values; the first is the default
    primary: str  # the metric that selects the best epoch (higher is better)
    secondary: tuple[str, ...]  # further metrics shown in tables
    metric_labels: dict[str, str]
    prediction_columns: tuple[str, ...]  # per-frame columns of prediction tables
    submission_suffix: str
    prediction_plot: tuple[str, str]  # (report key, file name) of the per-run picture
    prediction_plot_title: str
    output_range: tuple[float, float]  # where the per-frame prediction values lie (timelines, overlays)
    event_column: str | None = None  # a 0/1 prediction column whose runs of 1 are events (violent segments)
    # name suffixes of tracks that share one recording (`<base><suffix>`): splits and
    # bootstraps group them by `base_video`, so two tracks of one video never fall apart
    group_suffixes: tuple[str, ...] = ()

    def base_video(self, name: str) -> str:
        """The recording a video (track) belongs to: the unit that splits keep together and that
        bootstrap intervals resample."""
        for suffix in self.group_suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                return name[: -len(suffix)]
        return name

    # ---- model side ----------------------------------------------------------------------

    def activate(self, steps: "Tensor") -> "Tensor":
        """The model head's raw outputs [B, S, n_outputs] -> the task's outputs."""
        return steps

    def loss_kind(self, loss: str | None) -> str:
        """The loss to train with: `loss`, or the task's default when None; a misfit is an error."""
        kind = loss or self.losses[0]
        if kind not in self.losses:
            raise TaskError(f"loss {kind!r} does not fit the {self.name} task; use one of {list(self.losses)}")
        return kind

    def class_weights(self, targets: "Tensor", mask: "Tensor") -> "Tensor | None":
        """Per-class loss weights from the valid training steps; None when the task has no classes."""
        return None

    def loss(self, steps: "Tensor", targets: "Tensor", mask: "Tensor", kind: str, cfg,
             class_weights: "Tensor | None" = None) -> "Tensor":
        """The training loss of per-step outputs [B, S, n_outputs] against targets/mask [B, S, K]."""
        raise NotImplementedError

    # ---- frame-level evaluation -----------------------------------------------------------

    def step_values(self, outputs: np.ndarray) -> np.ndarray:
        """What frame-level evaluation averages over overlapping windows: [.., S, n_outputs] -> [.., S, V]."""
        return outputs

    def frame_predictions(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Averaged frame values [N, V] -> (predictions [N, K] comparable with the targets, probability or None)."""
        return values, None

    def metrics(self, y_true: np.ndarray, y_pred: np.ndarray, mask: np.ndarray, prob: np.ndarray | None) -> dict:
        """The benchmark metrics over the valid frames."""
        raise NotImplementedError

    def statistics(self, y_true: np.ndarray, y_pred: np.ndarray, mask: np.ndarray,
                   prob: np.ndarray | None) -> np.ndarray:
        """Per-frame additive sums [N, S] from which `from_statistics` gives the metrics of any
        set of frames (bootstrap draws sum them per video)."""
        raise NotImplementedError

    def from_statistics(self, stats: np.ndarray) -> dict[str, np.ndarray]:
        """The scalar metrics of summed `statistics` [..., S], vectorised over leading axes."""
        raise NotImplementedError

    def degenerate(self, y_true: np.ndarray, mask: np.ndarray) -> str | None:
        """Why the valid targets cannot support the metrics (a single class), or None."""
        return None

    def prediction_rows(self, values: np.ndarray) -> np.ndarray:
        """Averaged frame values [N, V] -> the `prediction_columns` [N, C] of a per-frame table."""
        return values

    # ---- submission files (formats in fgvu.submissions) ----------------------------------------

    def write_submission(self, out: Path, video: str, values: np.ndarray) -> Path:
        """Write one video's frame-level predictions in the benchmark's submission format."""
        raise NotImplementedError

    def write_from_sample(self, sample: Path, out: Path, values: dict[str, np.ndarray]):
        """The organisers' sample (or the dataset's template) filled with frame-level values per
        video, exactly its rows in its order; a `fgvu.submissions.WrittenSubmission`."""
        raise NotImplementedError

    def read_predictions(self, path: Path) -> dict:
        """Submission files -> {video: fgvu.submissions.VideoFrames} (0-based frames)."""
        raise NotImplementedError

    def read_annotations(self, path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The dataset's annotation files -> {video: (targets [n, K], mask [n, K])}."""
        raise NotImplementedError

    def scored_values(self, frames) -> tuple[np.ndarray, np.ndarray | None]:
        """A video's read predictions (`VideoFrames`) -> (y_pred [n, K], prob or None) for `metrics`."""
        return frames.values, None

    # ---- data checks ------------------------------------------------------------------------

    def valid_values(self, values: np.ndarray) -> np.ndarray:
        """Which target values [N, K] lie in the task's range (for cache verification)."""
        raise NotImplementedError

    def synthetic_targets(self, drive: np.ndarray) -> np.ndarray:
        """Targets [n, K] from a synthetic latent drive [n, 2] of unit scale."""
        raise NotImplementedError

    # ---- reports ------------------------------------------------------------------------------

    def plot_predictions(self, frames, path: Path, title: str) -> Path:
        """The per-run picture of predictions against the truth."""
        raise NotImplementedError

    def failure_analysis(self, frames, worst: int = 10) -> str:
        """A Markdown failure analysis of frame-level predictions."""
        raise NotImplementedError


class ValenceArousal(Task):
    """Valence and arousal in [-1, 1] per frame (Aff-Wild2), scored by CCC."""

    name = "va"
    description = "valence-arousal regression (Aff-Wild2), frame-level CCC"
    targets = ("valence", "arousal")
    n_outputs = 2
    losses = ("ccc", "ccc+mse")
    primary = "ccc_mean"
    secondary = ("ccc_valence", "ccc_arousal")
    metric_labels = {"ccc_mean": "mean CCC", "ccc_valence": "valence CCC", "ccc_arousal": "arousal CCC"}
    prediction_columns = ("valence", "arousal")
    submission_suffix = ".txt"
    prediction_plot = ("va_density", "va_density.png")
    prediction_plot_title = "predicted vs true valence/arousal"
    output_range = (-1.0, 1.0)
    group_suffixes = PERSON_SUFFIXES

    def activate(self, steps):
        import torch

        return torch.tanh(steps)

    def loss(self, steps, targets, mask, kind, cfg, class_weights=None):
        from fgvu.fusion import losses

        k = steps.shape[-1]
        mse = cfg.mse_weight if kind == "ccc+mse" else 0.0
        return losses.va_loss(steps.reshape(-1, k), targets.reshape(-1, k), mask.reshape(-1, k), mse_weight=mse)

    def metrics(self, y_true, y_pred, mask, prob):
        from fgvu.fusion.metrics import va_metrics

        return va_metrics(y_true, y_pred, mask)

    def statistics(self, y_true, y_pred, mask, prob):
        from fgvu.fusion.metrics import va_statistics

        return va_statistics(y_true, y_pred, mask)

    def from_statistics(self, stats):
        from fgvu.fusion.metrics import va_from_statistics

        return va_from_statistics(stats)

    def write_submission(self, out, video, values):
        """ABAW format: OUT/<video>.txt, `image_location,valence,arousal`, rows `<video>/00001.jpg,v,a`
        (1-based, as the cropped_aligned frames are named); the file name is
        `fgvu.safe_names`'s, the rows keep the real name."""
        from fgvu.submissions import write_abaw_video

        return write_abaw_video(out, video, values)

    def write_from_sample(self, sample, out, values):
        """OUT/predictions.txt in the order and count of the ABAW sample file."""
        from fgvu.submissions import write_abaw_file

        return write_abaw_file(sample, out, values)

    def read_predictions(self, path):
        from fgvu.submissions import read_abaw_predictions

        return read_abaw_predictions(path)

    def read_annotations(self, path):
        from fgvu.submissions import read_va_annotations

        return read_va_annotations(path)

    def valid_values(self, values):
        return np.isfinite(values) & (np.abs(values) <= 1.0)

    def synthetic_targets(self, drive):
        return np.tanh(0.9 * drive).astype(np.float32)

    def plot_predictions(self, frames, path, title):
        from fgvu.ablations.plots import va_density_plot

        return va_density_plot(frames, path, title)

    def failure_analysis(self, frames, worst=10):
        from fgvu.ablations.failures import va_failure_analysis

        return va_failure_analysis(frames, worst)


class Violence(Task):
    """Binary violence per frame (DVD), scored by macro-F1 over both classes."""

    name = "violence"
    description = "binary violence detection (DVD), frame-level macro-F1"
    targets = ("violence",)
    n_outputs = 2  # class logits
    losses = ("ce", "focal")
    primary = "f1_macro"
    secondary = ("accuracy", "ece")
    metric_labels = {"f1_macro": "macro-F1", "accuracy": "accuracy", "ece": "ECE"}
    prediction_columns = ("p_violent", "label")
    submission_suffix = ".csv"
    prediction_plot = ("confusion", "confusion.png")
    prediction_plot_title = "confusion matrix"
    output_range = (0.0, 1.0)
    event_column = "label"
    threshold = 0.5

    def class_weights(self, targets, mask):
        """Inverse-frequency weights of the classes over the valid training steps."""
        import torch

        labels = targets[..., 0][mask[..., 0]].long()
        counts = torch.bincount(labels, minlength=self.n_outputs).float()
        return counts.sum() / (self.n_outputs * counts.clamp(min=1.0))

    def loss(self, steps, targets, mask, kind, cfg, class_weights=None):
        from fgvu.fusion import losses

        return losses.classification_loss(
            steps.reshape(-1, steps.shape[-1]), targets[..., 0].reshape(-1).long(), mask[..., 0].reshape(-1),
            kind=kind, class_weights=class_weights, gamma=cfg.focal_gamma,
        )

    def step_values(self, outputs):
        """P(violent) [.., S, 1], the softmax of the two logits."""
        shifted = outputs - outputs.max(axis=-1, keepdims=True)
        prob = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
        return prob[..., 1:2]

    def frame_predictions(self, values):
        prob = values[:, 0].astype(np.float32)
        return (prob >= self.threshold).astype(np.float32)[:, None], prob

    def metrics(self, y_true, y_pred, mask, prob):
        from fgvu.fusion.metrics import violence_metrics

        m = mask[:, 0]
        result = violence_metrics(y_true[m, 0].astype(np.int64), prob[m], threshold=self.threshold)
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}

    def statistics(self, y_true, y_pred, mask, prob):
        from fgvu.fusion.metrics import violence_statistics

        source = prob if prob is not None else y_pred[:, 0]
        return violence_statistics(y_true[:, 0], source, mask[:, 0], threshold=self.threshold)

    def from_statistics(self, stats):
        from fgvu.fusion.metrics import violence_from_statistics

        return violence_from_statistics(stats)

    def degenerate(self, y_true, mask):
        classes = np.unique(y_true[mask[:, 0], 0])
        return f"only class {int(classes[0])} among the valid frames" if len(classes) == 1 else None

    def prediction_rows(self, values):
        prob = values[:, 0]
        return np.stack([prob, (prob >= self.threshold).astype(values.dtype)], axis=1)

    def write_submission(self, out, video, values):
        """DVD format: OUT/<video>.csv, `Frame_Number,Predicted_Label,Violence_Probability`, one row
        per frame, numbered from 0 (no template: the decoder's frame index); the file name is
        `fgvu.safe_names`'s."""
        from fgvu.submissions import write_dvd_video

        return write_dvd_video(out, video, values[:, 0], self.threshold)

    def write_from_sample(self, sample, out, values):
        """OUT/<video>.csv for each CSV of the template folder, with its rows and frame numbering."""
        from fgvu.submissions import write_dvd_from_template

        return write_dvd_from_template(sample, out, {v: p[:, 0] for v, p in values.items()}, self.threshold)

    def read_predictions(self, path):
        from fgvu.submissions import read_dvd_predictions

        return read_dvd_predictions(path)

    def read_annotations(self, path):
        from fgvu.submissions import read_violence_annotations

        return read_violence_annotations(path)

    def scored_values(self, frames):
        """Labels, and P(violent) when the file has it (else the labels stand in, so ECE is of 0/1)."""
        prob = frames.prob if frames.prob is not None else frames.values[:, 0]
        return frames.values, prob

    def valid_values(self, values):
        return (values == 0.0) | (values == 1.0)

    def synthetic_targets(self, drive):
        return (drive[:, :1] > 0.5).astype(np.float32)

    def plot_predictions(self, frames, path, title):
        from fgvu.ablations.plots import confusion_plot

        return confusion_plot(frames, path, title)

    def failure_analysis(self, frames, worst=10):
        from fgvu.ablations.failures import violence_failure_analysis

        return violence_failure_analysis(frames, worst)


TASKS: dict[str, Task] = {t.name: t for t in (ValenceArousal(), Violence())}


def get_task(name: str) -> Task:
    """The task entry called `name`; an unknown name is an error listing the known ones."""
    if name not in TASKS:
        raise TaskError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]
