"""Frame-level evaluation, as the benchmarks score it, and submission-format predictions.

A window predicts at S steps, step k on frame start + k * window // S. Overlapping windows
put several predictions on the same grid frame: they are averaged. Every frame of the video
then gets the linear interpolation between its neighbouring grid frames (held constant
before the first and after the last grid frame). Metrics use every valid frame.

For violence the averaged quantity is P(violent) (softmax of the logits); the predicted
label is P >= 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fgvu.cache import CacheView, open_cache
from fgvu.fusion.data import FeatureData, length_options
from fgvu.fusion.run_folder import FrameTable, eval_file
from fgvu.fusion.splits import DataError, rows_of_names, videos_in_split
from fgvu.sampling import step_frames
from fgvu.tasks import get_task
from fgvu.threads import stage2_threads, torch_threads

EVAL_BATCH = 256


def predict_windows(model, data: FeatureData, windows: np.ndarray, norm, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """The model's step outputs [n, S, n_outputs] for the given windows (eval mode, no grad)."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, len(windows), batch_size):
            idx = torch.from_numpy(np.asarray(windows[lo : lo + batch_size], dtype=np.int64))
            out.append(model(data.inputs(idx, norm), data.step_masks(idx)).steps.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1, 1), np.float32)


def step_values(task: str, outputs: np.ndarray) -> np.ndarray:
    """What frame-level evaluation averages: the task's per-step values (va values, P(violent))."""
    return get_task(task).step_values(outputs)


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
        pred, p = get_task(task).frame_predictions(per_video[v].astype(np.float32))
        y_pred.append(pred.astype(np.float32))
        if p is not None:
            prob.append(p)
    cat = np.concatenate
    return FrameTable(
        video_names=np.array(names, dtype=str), video=cat(video), frame=cat(frame),
        y_true=cat(y_true).astype(np.float32), y_pred=cat(y_pred), mask=cat(mask),
        prob=cat(prob).astype(np.float32) if prob else None,
    )


def table_metrics(task: str, table: FrameTable, rows: np.ndarray | None = None) -> dict:
    """The benchmark metrics over the valid frames of `table` (or of its `rows`)."""
    sel = slice(None) if rows is None else rows
    prob = table.prob[sel] if table.prob is not None else None
    return get_task(task).metrics(table.y_true[sel], table.y_pred[sel], table.mask[sel], prob)


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
    cfg = ckpt.cfg
    view = open_cache(cache, modalities=cfg.model.modalities, video_frames=(cfg.video_frames,))
    if view.spec.task != ckpt.task:
        raise DataError(f"cache {cache} is a {view.spec.task} cache, but run {run} was trained for {ckpt.task}")
    data = FeatureData(view, cfg.model.modalities, **length_options(cfg))
    if data.dims != {m: int(d) for m, d in ckpt.meta["dims"].items()}:
        raise DataError(f"cache {cache} has feature dims {data.dims}, run {run} was trained on {ckpt.meta['dims']}")
    return ckpt, data


def _split_rows(ckpt, view: CacheView, split: str) -> np.ndarray:
    """The videos of `split`; the training run's own validation videos for its val split."""
    stored = ckpt.meta.get("splits", {})
    if split == ckpt.cfg.val_split and stored.get("val"):
        return rows_of_names(view, stored["val"])
    return videos_in_split(view, split)


def evaluate(run: str | Path, cache: str | Path | None = None, split: str = "val", threads: int | None = None) -> dict:
    """Evaluate a run's best checkpoint on a split at frame level; writes RUN/eval.json.

    Returns {"run", "cache", "task", "split", "threads", "n_videos", "n_frames", "n_valid",
    "metrics": {...}, "per_video": {name: {"n_frames", "n_valid", ...}}}; n_valid counts the frames
    whose targets are all valid. A split other than val goes to RUN/eval-<split>.json. Torch runs
    with `threads` math threads (one by default).
    """
    with torch_threads(stage2_threads(threads)) as used:
        return _evaluate(Path(run), cache, split, used)


def _evaluate(run: Path, cache: str | Path | None, split: str, threads: int) -> dict:
    from fgvu.atomic_io import write_json

    ckpt, data = _load(run, cache)
    rows = _split_rows(ckpt, data.view, split)
    overall, table = evaluate_windows(ckpt.model, data, rows, ckpt.norm)
    per_video = {}
    for i, name in enumerate(table.video_names.tolist()):
        sel = table.rows_of(i)
        per_video[name] = {"n_frames": int(len(sel)), "n_valid": int(table.mask[sel].all(axis=1).sum()),
                           **(table_metrics(ckpt.task, table, sel) if table.mask[sel].any() else {})}
    result = {
        "run": str(run), "cache": str(data.view.path), "task": ckpt.task, "split": split, "threads": threads,
        "n_videos": int(len(rows)), "n_frames": int(len(table.frame)), "n_valid": int(table.mask.all(axis=1).sum()),
        "metrics": overall, "per_video": per_video,
    }
    write_json(eval_file(run, split), _finite(result))
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


def predict(run: str | Path, out: str | Path, split: str = "test", cache: str | Path | None = None,
            threads: int | None = None) -> list[Path]:
    """Write frame-level predictions of a split in the benchmark's submission format
    (`Task.write_submission`: Aff-Wild2 `<video>.txt`, DVD `<video>.csv`), with `threads` torch
    math threads (one by default)."""
    with torch_threads(stage2_threads(threads)):
        return _predict(run, out, split, cache)


def _predict(run: str | Path, out: str | Path, split: str, cache: str | Path | None) -> list[Path]:
    ckpt, data = _load(run, cache)
    view = data.view
    rows = _split_rows(ckpt, view, split)
    windows = data.windows_of(rows)
    values = step_values(ckpt.task, predict_windows(ckpt.model, data, windows, ckpt.norm))
    per_video = frame_level(view, windows, values)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    task = get_task(ckpt.task)
    return [task.write_submission(out, view.videos.name[v], pred) for v, pred in per_video.items()]


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
