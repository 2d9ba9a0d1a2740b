"""Frame-level evaluation, as the benchmarks score it, and submission-format predictions.

A window predicts at S steps, step k on frame start + k * window // S. Overlapping windows
put several predictions on the same grid frame: they are averaged. Every frame of the video
then gets the linear interpolation between its neighbouring grid frames (held constant
before the first and after the last grid frame). Metrics use every valid frame.

For violence the averaged quantity is P(violent) (softmax of the logits); the predicted
label is P >= 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.cache_schema import CacheView, open_cache
from fgvu.fusion.data import DataError, FeatureData, rows_of_names, videos_in_split
from fgvu.sampling import step_frames

EVAL_BATCH = 256


@dataclass
class FrameTable:
    """Frame-level predictions of some videos, every frame of each, in cache order.

    For va, y_pred holds valence/arousal; for violence, y_pred the 0/1 label and prob P(violent).
    """

    video_names: np.ndarray  # [V] str
    video: np.ndarray  # [N] index into video_names
    frame: np.ndarray  # [N] frame number inside its video (0-based)
    y_true: np.ndarray  # [N, K]
    y_pred: np.ndarray  # [N, K]
    mask: np.ndarray  # [N, K] True where the target is valid
    prob: np.ndarray | None = None  # [N] (violence)

    def save(self, path: str | Path) -> None:
        arrays = dict(video_names=self.video_names.astype(str), video=self.video, frame=self.frame,
                      y_true=self.y_true, y_pred=self.y_pred, mask=self.mask)
        if self.prob is not None:
            arrays["prob"] = self.prob
        np.savez(path, **arrays)

    def rows_of(self, v: int) -> np.ndarray:
        return np.flatnonzero(self.video == v)


def predict_windows(model, data: FeatureData, windows: np.ndarray, norm, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """The model's step outputs [n, S, n_outputs] for the given windows (eval mode, no grad)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, len(windows), batch_size):
            idx = torch.from_numpy(np.asarray(windows[lo : lo + batch_size], dtype=np.int64))
            out.append(model(data.inputs(idx, norm)).steps.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1), np.float32)


def step_values(task: str, outputs: np.ndarray) -> np.ndarray:
    """What frame-level evaluation averages: va values, or P(violent) [.., 1] from logits."""
    if task == "va":
        return outputs
    shifted = outputs - outputs.max(axis=-1, keepdims=True)
    prob = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    return prob[..., 1:2]


def frame_level(view: CacheView, windows: np.ndarray, values: np.ndarray) -> dict[int, np.ndarray]:
    """Per-step values [n, S, K] of `windows` -> {video row: [n_frames, K]} on every frame.

    Steps on padding frames are dropped; predictions that land on the same frame are
    averaged; frames between grid frames are interpolated linearly, and held at the ends.
    """
    n_steps, k = values.shape[1], values.shape[2]
    every = view.spec.sampling.window // n_steps
    frames = step_frames(view.window_start[windows], n_steps, every)
    keep = view.valid[windows][:, ::every]
    vids = view.window_video[windows]
    offsets = view.videos.frame_offset.astype(np.int64)
    rows = (offsets[vids][:, None] + frames)[keep]
    sums = np.zeros((len(view.targets), k))
    np.add.at(sums, rows, values[keep].astype(np.float64))
    counts = np.bincount(rows, minlength=len(view.targets))
    out = {}
    for v in np.unique(vids):
        n = int(view.videos.n_frames[v])
        lo = int(offsets[v])
        grid = np.flatnonzero(counts[lo : lo + n])
        mean = sums[lo + grid] / counts[lo + grid][:, None]
        every_frame = np.arange(n)
        out[int(v)] = np.stack([np.interp(every_frame, grid, mean[:, j]) for j in range(k)], axis=1)
    return out


def frame_table(view: CacheView, task: str, per_video: dict[int, np.ndarray]) -> FrameTable:
    """Join frame-level predictions with the cache's targets into one table."""
    vids = sorted(per_video)
    offsets = view.videos.frame_offset.astype(np.int64)
    names, video, frame, y_true, y_pred, mask, prob = [], [], [], [], [], [], []
    for i, v in enumerate(vids):
        n = int(view.videos.n_frames[v])
        lo = int(offsets[v])
        names.append(view.videos.name[v])
        video.append(np.full(n, i, np.int64))
        frame.append(np.arange(n, dtype=np.int64))
        y_true.append(view.targets[lo : lo + n])
        mask.append(view.target_mask[lo : lo + n])
        pred = per_video[v].astype(np.float32)
        if task == "violence":
            prob.append(pred[:, 0])
            pred = (pred >= 0.5).astype(np.float32)
        y_pred.append(pred)
    cat = np.concatenate
    return FrameTable(
        video_names=np.array(names, dtype=str), video=cat(video), frame=cat(frame),
        y_true=cat(y_true).astype(np.float32), y_pred=cat(y_pred), mask=cat(mask),
        prob=cat(prob).astype(np.float32) if task == "violence" else None,
    )


def table_metrics(task: str, table: FrameTable, rows: np.ndarray | None = None) -> dict:
    """The benchmark metrics over the valid frames of `table` (or of its `rows`)."""
    from fgvu.fusion import metrics

    sel = slice(None) if rows is None else rows
    y_true, y_pred, mask = table.y_true[sel], table.y_pred[sel], table.mask[sel]
    if task == "va":
        return metrics.va_metrics(y_true, y_pred, mask)
    m = mask[:, 0]
    result = metrics.violence_metrics(y_true[m, 0].astype(np.int64), table.prob[sel][m])
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}


def evaluate_windows(model, data: FeatureData, video_rows: np.ndarray, norm) -> tuple[dict, FrameTable]:
    """Frame-level metrics and predictions of the given videos."""
    task = data.task
    windows = data.windows_of(video_rows)
    values = step_values(task, predict_windows(model, data, windows, norm))
    table = frame_table(data.view, task, frame_level(data.view, windows, values))
    if not table.mask.any():
        raise DataError(f"cache {data.view.path}: the evaluated videos have no labelled frames; use `fgvu predict`")
    return table_metrics(task, table), table


def _load(run: str | Path, cache: str | Path | None):
    from fgvu.fusion.checkpoint import load_checkpoint

    ckpt = load_checkpoint(run)
    cache = Path(cache) if cache is not None else Path(ckpt.meta["cache"])
    view = open_cache(cache)
    if view.spec.task != ckpt.task:
        raise DataError(f"cache {cache} is a {view.spec.task} cache, but run {run} was trained for {ckpt.task}")
    cfg = ckpt.cfg
    data = FeatureData(view, cfg.model.modalities, image_frames=cfg.image_frames, captions=cfg.captions,
                       video_frames=cfg.video_frames)
    if data.dims != {m: int(d) for m, d in ckpt.meta["dims"].items()}:
        raise DataError(f"cache {cache} has feature dims {data.dims}, run {run} was trained on {ckpt.meta['dims']}")
    return ckpt, data


def _split_rows(ckpt, view: CacheView, split: str) -> np.ndarray:
    """The videos of `split`; the training run's own validation videos for its val split."""
    stored = ckpt.meta.get("splits", {})
    if split == ckpt.cfg.val_split and stored.get("val"):
        return rows_of_names(view, stored["val"])
    return videos_in_split(view, split)


def evaluate(run: str | Path, cache: str | Path | None = None, split: str = "val") -> dict:
    """Evaluate a run's best checkpoint on a split at frame level; writes RUN/eval.json.

    Returns {"run", "cache", "task", "split", "n_videos", "n_frames", "n_valid", "metrics": {...},
    "per_video": {name: {"n_frames", "n_valid", ...}}}; n_valid counts the frames whose targets are
    all valid. A split other than val goes to RUN/eval-<split>.json.
    """
    from fgvu.cache_schema import write_json

    run = Path(run)
    ckpt, data = _load(run, cache)
    rows = _split_rows(ckpt, data.view, split)
    overall, table = evaluate_windows(ckpt.model, data, rows, ckpt.norm)
    per_video = {}
    for i, name in enumerate(table.video_names.tolist()):
        sel = table.rows_of(i)
        per_video[name] = {"n_frames": int(len(sel)), "n_valid": int(table.mask[sel].all(axis=1).sum()),
                           **(table_metrics(ckpt.task, table, sel) if table.mask[sel].any() else {})}
    result = {
        "run": str(run), "cache": str(data.view.path), "task": ckpt.task, "split": split,
        "n_videos": int(len(rows)), "n_frames": int(len(table.frame)), "n_valid": int(table.mask.all(axis=1).sum()),
        "metrics": overall, "per_video": per_video,
    }
    write_json(run / ("eval.json" if split == "val" else f"eval-{split}.json"), _finite(result))
    return result


def _finite(obj):
    """JSON has no NaN: undefined metrics (e.g. the CCC of a dimension with no valid frame) become null."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def predict(run: str | Path, out: str | Path, split: str = "test", cache: str | Path | None = None) -> list[Path]:
    """Write frame-level predictions of a split in the benchmark's submission format.

    va (Aff-Wild2): OUT/<video>.txt, header `image_location,valence,arousal`, one row per
    frame `<video>/<00001>.jpg,v,a` (1-based, as the cropped_aligned frames are named).
    violence (DVD): OUT/<video>.csv, header `Frame_Number,Predicted_Label`, one row per frame
    (0-based frame numbers).
    """
    ckpt, data = _load(run, cache)
    view = data.view
    rows = _split_rows(ckpt, view, split)
    windows = data.windows_of(rows)
    values = step_values(ckpt.task, predict_windows(ckpt.model, data, windows, ckpt.norm))
    per_video = frame_level(view, windows, values)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for v, pred in per_video.items():
        name = view.videos.name[v]
        if ckpt.task == "va":
            path = out / f"{name}.txt"
            lines = ["image_location,valence,arousal"]
            lines += [f"{name}/{f + 1:05d}.jpg,{p[0]:.6f},{p[1]:.6f}" for f, p in enumerate(pred)]
        else:
            path = out / f"{name}.csv"
            lines = ["Frame_Number,Predicted_Label"]
            lines += [f"{f},{int(p[0] >= 0.5)}" for f, p in enumerate(pred)]
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written


def format_table(result: dict) -> str:
    """A plain-text table of an evaluate() result: per video, then overall (all frames, and the
    valid ones the metrics use)."""
    overall = {k: v for k, v in result["metrics"].items() if not isinstance(v, list)}
    keys = list(overall)
    head = f"{'video':<28}{'frames':>8}{'valid':>8}" + "".join(f"{k:>14}" for k in keys)
    lines = [f"{result['task']} · split {result['split']} · {result['n_videos']} videos · {result['cache']}", head,
             "-" * len(head)]

    def fmt(x) -> str:
        return f"{x:>14.4f}" if isinstance(x, (int, float)) else f"{'-':>14}"

    for name, m in result["per_video"].items():
        lines.append(f"{name[:27]:<28}{m['n_frames']:>8}{m['n_valid']:>8}" + "".join(fmt(m.get(k)) for k in keys))
    lines.append("-" * len(head))
    lines.append(f"{'all videos':<28}{result['n_frames']:>8}{result['n_valid']:>8}"
                 + "".join(fmt(overall[k]) for k in keys))
    if "confusion" in result["metrics"]:
        lines.append(f"confusion (rows true 0/1, columns predicted 0/1): {result['metrics']['confusion']}")
    return "\n".join(lines)
