"""Frame-level evaluation, as the benchmarks score it, and submission-format predictions.

A window predicts at S steps, step k on frame start + k * window // S. Overlapping windows
put several predictions on the same grid frame: they are averaged. Every frame of the video
then gets the linear interpolation between its neighbouring grid frames (held constant
before the first and after the last grid frame). Metrics use every valid frame.

For violence the averaged quantity is P(violent) (softmax of the logits); the predicted
label is P >= 0.5.

On the run's own cache a split name means the run's own videos of that split (config.json's
"splits": train, select, and the reported split). On another cache (`cache=`) it means that
cache's split, the cache must come from the same encoders with the same dims, and the result
goes to a file named after that cache, never to the run's eval.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.cache import CacheError, CacheView, cache_fingerprint, open_cache, read_spec
from fgvu.cache.location import absolute, cache_path
from fgvu.fusion import bootstrap
from fgvu.fusion.data import FeatureData, length_options
from fgvu.fusion.run_folder import (
    FrameTable, RunFolderError, check_finished, eval_file, foreign_tag, read_config, read_metrics, selection_label,
)
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


def feature_data(ckpt, view: CacheView, run: str | Path = "the run", device: str = "cpu") -> FeatureData:
    """The features of `view` that a loaded run reads, checked against the run's task and feature dims."""
    cfg = ckpt.cfg
    if view.spec.task != ckpt.task:
        raise DataError(f"cache {view.path} is a {view.spec.task} cache, but run {run} was trained for {ckpt.task}")
    data = FeatureData(view, cfg.model.modalities, device=device, **length_options(cfg))
    if data.dims != {m: int(d) for m, d in ckpt.meta["dims"].items()}:
        raise DataError(f"cache {view.path} has feature dims {data.dims}, run {run} was trained on {ckpt.meta['dims']}")
    return data


@dataclass
class Loaded:
    """A run's checkpoint with the cache it is evaluated on."""

    ckpt: object  # fgvu.fusion.checkpoint.Checkpoint
    data: FeatureData
    foreign: str | None  # foreign_tag of a cache other than the run's own, else None


def _load(run: str | Path, cache: str | Path | None, allow_unfinished: bool = False,
          allow_partial: bool = False) -> Loaded:
    """The run (refused when unfinished unless `allow_unfinished`) and the cache it is evaluated on
    (refused with missing or unfinished parts unless `allow_partial`)."""
    from fgvu.fusion.checkpoint import load_checkpoint

    read_config(run)  # a folder that is no run at all says so first
    check_finished(run, allow_unfinished)
    ckpt = load_checkpoint(run)
    own = cache_path(ckpt.meta["cache"])
    cache = cache_path(cache) if cache is not None else own
    spec = read_spec(cache)
    if spec.task != ckpt.task:
        raise DataError(f"cache {cache} is a {spec.task} cache, but run {run} was trained for {ckpt.task}")
    fingerprint = cache_fingerprint(cache)
    same = absolute(cache) == absolute(own) and fingerprint == ckpt.meta.get("cache_fingerprint", fingerprint)
    if not same:
        check_same_encoders(run, ckpt.meta, ckpt.cfg.model.modalities, cache, spec.encoders)
    cfg = ckpt.cfg
    view = open_cache(cache, modalities=cfg.model.modalities, video_frames=(cfg.video_frames,),
                      allow_partial=allow_partial)
    return Loaded(ckpt, feature_data(ckpt, view, run), None if same else foreign_tag(cache, fingerprint))


def check_same_encoders(run, meta: dict, modalities, cache, encoders: dict) -> None:
    """Refuse a cache made with other encoders than the run's cache, for the streams the run uses
    (and the encoders that feed them without a stream of their own, such as the captioner)."""
    from fgvu.modalities import MODALITIES

    recorded = meta.get("encoders")
    if recorded is None:  # runs from before config.json recorded them: ask the run's cache, if it is there
        try:
            recorded = read_spec(meta["cache"]).encoders
        except CacheError:
            raise DataError(f"run {run}: config.json does not record its encoders and its cache {meta['cache']} is "
                            f"gone, so cache {cache} cannot be checked against them") from None
    stream_roles = {m.role for m in MODALITIES.values()}
    used = {MODALITIES[m].role for m in modalities} | (set(recorded) - stream_roles)
    differ = [f"{role}: run {_encoder(recorded.get(role))}, cache {_encoder(encoders.get(role))}"
              for role in sorted(used) if recorded.get(role) != encoders.get(role)]
    if differ:
        raise DataError(f"cache {cache} was not made with the encoders of run {run}'s cache ({'; '.join(differ)}); "
                        "its features mean something else to the model. Extract that data with the run's encoders")


def _encoder(fp: dict | None) -> str:
    if not fp:
        return "none"
    return f"{fp.get('name')} {fp.get('variant', '')} [{str(fp.get('checkpoint', ''))[:24]}]".replace("  ", " ")


def _split_rows(loaded: Loaded, split: str) -> np.ndarray:
    """The videos of `split`: on the run's own cache the run's own videos of that split
    (train, select, its reported split), else the cache's split."""
    stored = loaded.ckpt.meta.get("splits", {})
    if loaded.foreign is None and stored.get(split):
        return rows_of_names(loaded.data.view, stored[split])
    return videos_in_split(loaded.data.view, split)


def _selection_of(run: Path, loaded: Loaded, split: str) -> str | None:
    """The label of a run's numbers on `split` of its own cache: what selected the epoch."""
    if loaded.foreign is not None:
        return None
    try:
        metrics = read_metrics(run)
    except RunFolderError:  # an unfinished run folder: evaluate still works, unlabelled
        return None
    if split == "select" or split == metrics.get("reported_on", "val"):
        return selection_label(metrics)
    return None


def evaluate(run: str | Path, cache: str | Path | None = None, split: str = "val",
             allow_unfinished: bool = False, allow_partial: bool = False, threads: int | None = None) -> dict:
    """Evaluate a run's best checkpoint on a split at frame level; write its eval file.

    A run without metrics.json (interrupted, or still training) is refused unless `allow_unfinished`,
    a cache with missing or unfinished parts unless `allow_partial`.

    Returns {"run", "cache", "task", "split", "n_videos", "n_frames", "n_valid", "metrics": {...,
    <metric>_ci: [lo, hi]}, "bootstrap", "warnings", "selection", "per_video": {name: {"n_frames",
    "n_valid", ...}}}; n_valid counts the frames whose targets are all valid. On the run's own cache
    val goes to RUN/eval.json and any other split to RUN/eval-<split>.json; another cache's
    scores go to RUN/eval-<cache>-<fingerprint>-<split>.json. Torch runs with `threads` math
    threads (one by default); the result records them.
    """
    with torch_threads(stage2_threads(threads)) as used:
        return _evaluate(Path(run), cache, split, used, allow_unfinished, allow_partial)


def _evaluate(run: Path, cache: str | Path | None, split: str, threads: int, allow_unfinished: bool,
              allow_partial: bool) -> dict:
    from fgvu.atomic_io import write_json

    loaded = _load(run, cache, allow_unfinished, allow_partial)
    ckpt, data = loaded.ckpt, loaded.data
    task = get_task(ckpt.task)
    rows = _split_rows(loaded, split)
    overall, table = evaluate_windows(ckpt.model, data, rows, ckpt.norm)
    draws = ckpt.cfg.bootstrap_draws
    per_video = {}
    for i, name in enumerate(table.video_names.tolist()):
        sel = table.rows_of(i)
        per_video[name] = {"n_frames": int(len(sel)), "n_valid": int(table.mask[sel].all(axis=1).sum()),
                           **(table_metrics(ckpt.task, table, sel) if table.mask[sel].any() else {})}
    where = f"split {split} of {data.view.path}"
    result = {
        "run": str(run), "cache": str(data.view.path), "task": ckpt.task, "split": split, "threads": threads,
        "n_videos": int(len(rows)), "n_frames": int(len(table.frame)), "n_valid": int(table.mask.all(axis=1).sum()),
        "metrics": bootstrap.with_intervals(task, table, overall, draws),
        "bootstrap": bootstrap.bootstrap_note(table, task, draws),
        "warnings": bootstrap.degenerate_warnings(task, table, where),
        "selection": _selection_of(run, loaded, split), "per_video": per_video,
    }
    path = eval_file(run, split, loaded.foreign)
    write_json(path, _finite(result))
    result["file"] = str(path)
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


def frame_predictions(run: str | Path, split: str = "test", cache: str | Path | None = None,
                      allow_unfinished: bool = False, allow_partial: bool = False) -> tuple[str, dict[str, np.ndarray]]:
    """(task, {video name: frame-level values [n_frames, V]}) of a split, every frame of each video."""
    loaded = _load(run, cache, allow_unfinished, allow_partial)
    ckpt, data = loaded.ckpt, loaded.data
    rows = _split_rows(loaded, split)
    windows = data.windows_of(rows)
    values = step_values(ckpt.task, predict_windows(ckpt.model, data, windows, ckpt.norm))
    per_video = frame_level(data.view, windows, values)
    return ckpt.task, {str(data.view.videos.name[v]): pred for v, pred in per_video.items()}


def predict(run: str | Path, out: str | Path, split: str = "test", cache: str | Path | None = None,
            allow_unfinished: bool = False, allow_partial: bool = False, threads: int | None = None) -> list[Path]:
    """Write frame-level predictions of a split in the benchmark's submission format, one file
    per video (`Task.write_submission`: Aff-Wild2 `<video>.txt`, DVD `<video>.csv`, file names from
    `fgvu.safe_names`). Unfinished runs and partial caches as in `evaluate`; `threads` torch math
    threads (one by default)."""
    with torch_threads(stage2_threads(threads)):
        task, per_video = frame_predictions(run, split, cache, allow_unfinished, allow_partial)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return [get_task(task).write_submission(out, name, pred) for name, pred in per_video.items()]


def predict_from_sample(run: str | Path, out: str | Path, sample: str | Path, split: str = "test",
                        cache: str | Path | None = None, allow_unfinished: bool = False, allow_partial: bool = False,
                        threads: int | None = None):
    """The organisers' sample filled in (`Task.write_from_sample`): Aff-Wild2 OUT/predictions.txt
    in the sample file's order, DVD one CSV per template file with its frame numbering.
    Returns the `fgvu.submissions.WrittenSubmission` (rows, and the rows filled from the nearest frame)."""
    with torch_threads(stage2_threads(threads)):
        task, per_video = frame_predictions(run, split, cache, allow_unfinished, allow_partial)
    return get_task(task).write_from_sample(Path(sample), Path(out), per_video)


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
    cis = [f"{k} [{_ci(result['metrics'].get(f'{k}_ci'))}]" for k in keys if result["metrics"].get(f"{k}_ci")]
    if cis:
        note = result.get("bootstrap") or {}
        lines.append(f"95% bootstrap interval over {note.get('n_groups', '?')} base videos "
                     f"({note.get('draws', '?')} draws): " + "  ".join(cis))
    if result.get("selection"):
        lines.append(f"the run's epoch was {result['selection']}")
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)


def _ci(ci) -> str:
    return ", ".join("-" if v is None or not np.isfinite(v) else f"{v:.4f}" for v in ci)
