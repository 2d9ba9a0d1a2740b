"""The run folder of one `fgvu fit` run: its file names, their I/O, and whether the run is finished.

    config.json         what the run was: {"fit": FitConfig, "cache", "cache_fingerprint", "dataset",
                        "task", "device", "dims", "n_outputs", "n_steps", "encoders" (the cache's encoder
                        fingerprints), "splits" ({"train", "select", <reported split>: video names}),
                        "selected_on", "reported_on", "normalization"}
    model.safetensors   the best epoch's weights and normalisation statistics (fgvu.fusion.checkpoint)
    metrics.jsonl       one line per epoch: epoch, train_loss, select (the selection split's metrics), lr, seconds
    metrics.json        the result (fgvu.fusion.protocol); its presence marks a finished run
    val_frames.npz      frame-level predictions of the best epoch on the reported split (a FrameTable)
    eval.json, eval-<split>.json          `fgvu evaluate` on the run's own cache
    eval-<cache>-<fingerprint>-<split>.json   `fgvu evaluate --cache OTHER` (never eval.json)
    predictions-<split>/, report/, error.txt (a failed ablation run)
    fit.lock            flock held by the fit writing the folder (its pid inside); see `locked`
    predictions-videos/ `fgvu predict RUN VIDEO...`: per video a CSV, a timeline PNG (and events)
    stream-<source>/    `fgvu stream RUN --source ...`: the per-frame CSV, windows.csv, latency.json

Everything that reads or writes these files goes through this module, and "is this a finished
run of that configuration on that cache?" has one answer, `is_finished`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fgvu.atomic_io import write_json
from fgvu.cache.location import absolute, cache_path
from fgvu.errors import FgvuError

CONFIG = "config.json"
MODEL = "model.safetensors"
METRICS_LOG = "metrics.jsonl"
METRICS = "metrics.json"
VAL_FRAMES = "val_frames.npz"
EVAL = "eval.json"
ERROR = "error.txt"
REPORT = "report"
LOCK = "fit.lock"
# The files a new run in the folder replaces.
OUTPUT_FILES = (METRICS_LOG, METRICS, VAL_FRAMES, EVAL, MODEL)
CONFIG_KEYS = ("fit", "cache", "task", "dims", "n_outputs")


class RunFolderError(FgvuError):
    """A run folder without the files asked for, or with malformed ones; the message names the file."""


# ---- per-frame predictions --------------------------------------------------------------------


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

    def rows_of(self, v: int) -> np.ndarray:
        return np.flatnonzero(self.video == v)

    @property
    def labels(self) -> np.ndarray:
        """Violence: predicted labels (y_pred holds P(violent) or 0/1 labels; 0.5 separates both)."""
        source = self.prob if self.prob is not None else self.y_pred[:, 0]
        return (source >= 0.5).astype(np.int64)

    def save(self, path: str | Path) -> None:
        arrays = dict(video_names=self.video_names.astype(str), video=self.video, frame=self.frame,
                      y_true=self.y_true, y_pred=self.y_pred, mask=self.mask)
        if self.prob is not None:
            arrays["prob"] = self.prob
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "FrameTable":
        """Read a saved table (no pickles), checking the arrays' shapes."""
        path = Path(path)
        if not path.is_file():
            raise RunFolderError(f"{path}: missing; is {path.parent} a finished fit run?")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise RunFolderError(f"{path}: not a readable npz file ({e})") from None
        missing = sorted({"video_names", "video", "frame", "y_true", "y_pred", "mask"} - set(data))
        if missing:
            raise RunFolderError(f"{path}: missing arrays {missing}")
        y_true, y_pred, mask = (_columns(np.asarray(data[k], t)) for k, t in
                                (("y_true", np.float64), ("y_pred", np.float64), ("mask", bool)))
        n = len(y_true)
        if y_pred.shape != y_true.shape or mask.shape != y_true.shape or len(data["video"]) != n:
            raise RunFolderError(f"{path}: y_true {y_true.shape}, y_pred {y_pred.shape}, mask {mask.shape} and "
                                 f"video {np.shape(data['video'])} do not agree")
        video = np.asarray(data["video"], np.int64)
        names = np.asarray(data["video_names"]).astype(str)
        if n and (video.min() < 0 or video.max() >= len(names)):
            raise RunFolderError(f"{path}: video indices outside video_names")
        prob = np.asarray(data["prob"], np.float64) if "prob" in data else None
        return cls(names, video, np.asarray(data["frame"]), y_true, y_pred, mask, prob)


def _columns(x: np.ndarray) -> np.ndarray:
    return x[:, None] if x.ndim == 1 else x


def load_val_frames(run: str | Path) -> FrameTable:
    """RUN/val_frames.npz: the best epoch's frame-level validation predictions."""
    return FrameTable.load(Path(run) / VAL_FRAMES)


# ---- the JSON files ----------------------------------------------------------------------------


def read_json(path: Path) -> dict:
    """A JSON object from a run folder file; missing or malformed files name themselves."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunFolderError(f"{path}: missing; is {path.parent} a finished fit run?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFolderError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise RunFolderError(f"{path}: expected a JSON object")
    return value


def read_config(run: str | Path) -> dict:
    """config.json of a run folder, checked for the keys loading needs."""
    run = Path(run)
    if not run.is_dir():
        raise RunFolderError(f"run {run}: no such directory")
    if not (run / CONFIG).exists():
        raise RunFolderError(f"run {run}: {CONFIG} is missing (not a finished `fgvu fit` run?)")
    meta = read_json(run / CONFIG)
    missing = [k for k in CONFIG_KEYS if k not in meta]
    if missing:
        raise RunFolderError(f"{run / CONFIG}: missing keys {missing}")
    return meta


def write_config(run: str | Path, meta: dict) -> None:
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / CONFIG, meta)


def read_metrics(run: str | Path) -> dict:
    """metrics.json: the result of a finished run."""
    return read_json(Path(run) / METRICS)


def reported(metrics: dict) -> dict:
    """The reported metrics of a metrics.json (under its `reported_on` key; "val" before fgvu 0.2)."""
    value = metrics.get(metrics.get("reported_on", "val"))
    return value if isinstance(value, dict) else {}


def selection_label(metrics: dict) -> str:
    """How tables label a run's numbers: "selected on val" or "selected on a training hold-out".

    Runs from before the selection hold-out existed selected on the reported split."""
    return metrics.get("label") or "selected on val"


def write_metrics(run: str | Path, result: dict) -> None:
    write_json(Path(run) / METRICS, result)


def read_epochs(run: str | Path) -> list[dict]:
    """The per-epoch records of RUN/metrics.jsonl."""
    path = Path(run) / METRICS_LOG
    if not path.is_file():
        raise RunFolderError(f"{path}: missing; is {run} a fit run?")
    records = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RunFolderError(f"{path}: line {i} is not JSON ({e})") from None
    return records


def eval_file(run: str | Path, split: str, foreign: str | None = None) -> Path:
    """Where `fgvu evaluate` writes a split's result; `foreign` names another cache than the run's
    own (`foreign_tag`), whose scores never go to the run's eval.json."""
    if foreign is not None:
        return Path(run) / f"eval-{foreign}-{split}.json"
    return Path(run) / (EVAL if split == "val" else f"eval-{split}.json")


def video_predictions_dir(run: str | Path) -> Path:
    """Where `fgvu predict RUN VIDEO...` writes by default."""
    return Path(run) / "predictions-videos"


def stream_dir(run: str | Path, source_name: str) -> Path:
    """Where `fgvu stream RUN --source ...` writes by default."""
    return Path(run) / f"stream-{source_name}"


def foreign_tag(cache: str | Path, fingerprint: str) -> str:
    """`<cache folder name>-<8 hex of its fingerprint>`: names another cache's files in a run folder."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in cache_path(absolute(cache)).name).lstrip(".")
    return f"{name or 'cache'}-{fingerprint[:8]}"


def clear_outputs(run: str | Path) -> None:
    """Remove the files of an earlier run in this folder that a new run replaces."""
    for name in OUTPUT_FILES:
        (Path(run) / name).unlink(missing_ok=True)


# ---- the writer's lock ---------------------------------------------------------------------------


@contextlib.contextmanager
def locked(run: str | Path) -> Iterator[Path]:
    """Hold RUN/fit.lock while a fit writes the folder: a second fit into it is refused.

    The lock is an flock, so the kernel releases it when the process ends, even on kill -9. A
    folder this call created is removed again when the body fails before writing anything else.
    """
    run = Path(run)
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    handle = open(run / LOCK, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"  # the holder writes its pid right after locking
        handle.close()
        raise RunFolderError(f"run folder {run} is being written by another fit (pid {holder}, lock "
                             f"{run / LOCK}); wait for it to finish, or choose another --out") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield run
    except BaseException:
        if created and [p.name for p in run.iterdir()] == [LOCK]:
            (run / LOCK).unlink()
            run.rmdir()
        raise
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def lock_holder(run: str | Path) -> str | None:
    """The pid ("?" when not yet written) of the fit writing `run` right now, or None when none is."""
    try:
        handle = open(Path(run) / LOCK)
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "?"
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def check_finished(run: str | Path, allow_unfinished: bool = False) -> None:
    """Refuse a run folder without metrics.json (killed, failed or still training) unless `allow_unfinished`."""
    run = Path(run)
    if allow_unfinished or (run / METRICS).exists():
        return
    pid = lock_holder(run)
    why = (f"a fit is still writing it (pid {pid})" if pid is not None
           else "its fit was interrupted or failed before the end")
    raise RunFolderError(f"run {run} is unfinished: {METRICS} is missing ({why}); pass --allow-unfinished "
                         "to use its best checkpoint so far")


# ---- finished runs -------------------------------------------------------------------------------


def _flat_fit(meta: dict) -> dict:
    """config.json's fit configuration as one flat dict ("model.d_model", "lr", ...)."""
    fit_cfg = meta.get("fit") if isinstance(meta.get("fit"), dict) else {}
    flat = {k: v for k, v in fit_cfg.items() if k != "model"}
    model = fit_cfg.get("model") if isinstance(fit_cfg.get("model"), dict) else {}
    flat.update({f"model.{k}": v for k, v in model.items()})
    return flat


def differences(run: str | Path, cfg, cache: str | Path) -> list[str]:
    """How the run stored in `run` differs from `cfg` on `cache` ("lr: 0.001 -> 0.005", ...)."""
    try:
        old = json.loads((Path(run) / CONFIG).read_text())
    except (OSError, ValueError):
        old = {}
    old = old if isinstance(old, dict) else {}
    before, after = _flat_fit(old), _flat_fit({"fit": cfg.to_dict()})
    changes = [f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k)]
    cache = absolute(cache)
    if old.get("cache") != cache:
        changes.append(f"cache: {old.get('cache')!r} -> {cache!r}")
    return changes


def is_finished(run: str | Path, cfg, cache: str | Path, fingerprint: str | None = None) -> dict | None:
    """The metrics of a finished run in `run` made with `cfg` on `cache`, else None.

    With `fingerprint` (`fgvu.cache.cache_fingerprint`), the cache's content must match too, so
    a cache re-extracted at the same path does not count as the same cache.
    """
    run = Path(run)
    try:
        metrics = read_metrics(run)
        config = read_json(run / CONFIG)
    except RunFolderError:
        return None
    if differences(run, cfg, cache):
        return None
    if fingerprint is not None and config.get("cache_fingerprint") != fingerprint:
        return None
    return metrics


def check_overwrite(run: str | Path, cfg, cache: str | Path) -> None:
    """Refuse to replace a finished run made with another configuration or cache.

    The same configuration on the same cache is a re-run and may replace it.
    """
    run = Path(run)
    if not (run / METRICS).exists():
        return
    changes = differences(run, cfg, cache)
    if changes:
        listed = "; ".join(changes[:6]) + (f"; ... ({len(changes)} differences)" if len(changes) > 6 else "")
        raise RunFolderError(f"run folder {run} holds a finished run with another configuration ({listed}); "
                             "choose another --out, or pass --force to replace it")
