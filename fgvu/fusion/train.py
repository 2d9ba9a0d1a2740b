"""Training the fusion head on a cache: `fit(cache, cfg, out)`.

AdamW with linear warm-up then cosine decay (or one-cycle), gradient clipping, feature
augmentation and mixup, an optional autoencoding term, and early stopping on the frame-level
metric (ccc_mean for va, f1_macro for violence) of the selection split. The best epoch's model
is kept and scored once on the reported split, which selection never saw unless
`--select-on val` (`fgvu.fusion.splits`, `fgvu.fusion.protocol`).

The run folder's files are described in `fgvu.fusion.run_folder`; task-specific choices (losses,
class weights, the metric that selects the epoch) come from the task registry (`fgvu.tasks`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fgvu.cache import cache_fingerprint, open_cache
from fgvu.cache.location import absolute
from fgvu.errors import FgvuError
from fgvu.fusion import run_folder
from fgvu.fusion.checkpoint import save_weights
from fgvu.fusion.config import AUGMENTATIONS, FitConfig
from fgvu.fusion.data import FeatureData, length_options
from fgvu.fusion.evaluate import evaluate_windows
from fgvu.fusion.protocol import run_result, same_videos
from fgvu.fusion.splits import plan_splits
from fgvu.tasks import Task, TaskError, get_task
from fgvu.threads import stage2_threads, torch_threads


class FitError(FgvuError):
    """A training configuration that cannot work with this cache."""


def resolve_device(device: str) -> str:
    """The torch device to train on: "auto" is cuda when torch sees a GPU, else cpu; others are checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    _check_device(device)
    return device


def _check_device(device: str) -> None:
    """A device string torch understands and this machine has; else a FitError saying which."""
    import torch

    try:
        target = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise FitError(f"--device {device!r} is not a torch device (use cpu, cuda or cuda:<index>): {e}") from None
    if target.type == "cuda":
        if not torch.cuda.is_available():
            raise FitError(f"--device {device}: no CUDA GPU is available here (torch {torch.__version__}); "
                           "use --device cpu")
        if target.index is not None and target.index >= torch.cuda.device_count():
            raise FitError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif target.type == "mps" and not torch.backends.mps.is_available():
        raise FitError(f"--device {device}: Apple MPS is not available here; use --device cpu")


def _loss_kind(cfg: FitConfig, task: Task) -> str:
    try:
        return task.loss_kind(cfg.loss)
    except TaskError as e:
        raise FitError(str(e)) from None


@contextlib.contextmanager
def _seeded(seed: int, device: str):
    """Seed torch inside, restoring the global random state (CPU and the run's CUDA device) after.

    Runs are reproducible on CPU (its kernels are deterministic for a fixed thread count), and
    use deterministic kernels on GPU: deterministic algorithms are requested there (warn-only,
    as some kernels have no deterministic variant), with the cuBLAS workspace setting they need.
    """
    import torch

    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    target = torch.device(device)
    accelerated = target.type != "cpu"
    cuda_devices = []
    if target.type == "cuda":
        cuda_devices = [target.index if target.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        if accelerated:
            if target.type == "cuda":  # cuBLAS is deterministic only with a fixed workspace (read at first use)
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            if accelerated:
                torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


def _lr_schedule(optimizer, cfg: FitConfig, steps_per_epoch: int):
    """Per-step scheduler: linear warm-up then cosine to zero, or one-cycle.

    torch's OneCycleLR divides by (warm-up steps - 1) and by (annealing steps), so its warm-up
    is clamped to [2, total - 1] steps; runs of fewer than 3 steps use warm-up + cosine instead.
    """
    import torch

    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total - 1, max(0, round(cfg.warmup_epochs * steps_per_epoch)))
    if cfg.schedule == "onecycle" and total >= 3:
        rise = min(total - 1, max(2, warmup))
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.lr, total_steps=total, pct_start=rise / total, anneal_strategy="cos"
        )

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class _Objective:
    """The task loss on per-step outputs, with invalid steps masked."""

    def __init__(self, task: Task, cfg: FitConfig, class_weights):
        self.task, self.kind, self.cfg, self.class_weights = task, _loss_kind(cfg, task), cfg, class_weights

    def __call__(self, steps, targets, mask):
        return self.task.loss(steps, targets, mask, self.kind, self.cfg, self.class_weights)


def fit(cache: str | Path, cfg: FitConfig, out: str | Path, progress: bool = True, overwrite: bool = False,
        allow_partial: bool = False, view=None) -> dict:
    """Train the fusion head on `cache` with `cfg`; write the run folder `out`.

    A finished run in `out` made with another configuration or cache is an error unless
    `overwrite`; the same configuration and cache re-runs in place. The run folder is locked
    while the fit runs (`run_folder.locked`): a second fit into `out` is refused. A cache with
    parts missing or unfinished is refused unless `allow_partial`. Torch runs with `cfg.threads`
    math threads (one by default; `fgvu.threads`), restored afterwards. `view` is the cache
    already opened with (at least) the run's arrays, e.g. the ablation workers' shared copy
    (`fgvu.cache.shared`); None reads them from `cache`.
    Returns the content of metrics.json (`fgvu.fusion.protocol`): {"task", "best_epoch",
    "selected_on", "reported_on", "select": {metrics}, "val": {metrics with intervals}, ...}.
    """
    with torch_threads(stage2_threads(cfg.threads)), run_folder.locked(out):
        return _fit_locked(cache, cfg, Path(out), progress, overwrite, allow_partial, view)


def _fit_locked(cache: str | Path, cfg: FitConfig, out: Path, progress: bool, overwrite: bool,
                allow_partial: bool, view) -> dict:
    import torch

    from fgvu.fusion.model import FusionModel
    from fgvu.fusion.optim import AdamW

    unknown_aug = sorted(set(cfg.augment) - set(AUGMENTATIONS))
    if unknown_aug:
        raise FitError(f"unknown augmentations {unknown_aug}; known: {', '.join(AUGMENTATIONS)}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise FitError(f"epochs and batch size must be positive, got {cfg.epochs} and {cfg.batch_size}")
    device = resolve_device(cfg.device)
    started = time.time()
    if not overwrite:
        run_folder.check_overwrite(out, cfg, cache)
    if view is None:
        view = open_cache(cache, modalities=cfg.model.modalities, video_frames=(cfg.video_frames,),
                          allow_partial=allow_partial)
    task = get_task(view.spec.task)
    _loss_kind(cfg, task)
    # the autoencoding decoder exists exactly when its loss is on (load_checkpoint does the same)
    model_cfg = replace(cfg.model, recon=cfg.recon_weight > 0)
    data = FeatureData(view, cfg.model.modalities, device=device, **length_options(cfg))
    plan = plan_splits(view, cfg)
    train_rows = plan.train
    train_windows = torch.from_numpy(data.windows_of(train_rows))
    norm = data.fit_normalization(train_rows) if cfg.normalize else None

    run_folder.clear_outputs(out)
    meta = {
        "fit": cfg.to_dict(), "cache": absolute(cache), "cache_fingerprint": cache_fingerprint(cache),
        "dataset": view.spec.dataset, "task": task.name, "device": device, "threads": torch.get_num_threads(),
        "target_names": list(task.targets), "dims": data.dims, "n_outputs": task.n_outputs,
        "splits": plan.names(view), "selected_on": plan.selected_on, "reported_on": plan.reported_on,
        "encoders": view.spec.encoders,
        "normalization": "model.safetensors: norm.<modality>.mean / norm.<modality>.std" if norm else None,
    }
    primary = task.primary
    with _seeded(cfg.seed, device):
        model = FusionModel(model_cfg, data.dims, task.n_outputs, task.name).to(data.device)
        with torch.no_grad():
            model.eval()
            first = train_windows[:1]
            n_steps = model(data.inputs(first, norm), data.step_masks(first)).steps.shape[1]
        meta["n_steps"] = int(n_steps)
        run_folder.write_config(out, meta)
        targets, mask = data.step_targets(n_steps)
        weights = task.class_weights(targets[train_windows], mask[train_windows]) if cfg.class_weights else None
        objective = _Objective(task, cfg, weights)
        steps_per_epoch = math.ceil(len(train_windows) / cfg.batch_size)
        optimizer = AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = _lr_schedule(optimizer, cfg, steps_per_epoch)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        aug_gen = torch.Generator().manual_seed(cfg.seed + 1)

        best, best_epoch, best_table, best_state, stale = -math.inf, 0, None, None, 0
        from tqdm.auto import tqdm

        bar = tqdm(range(1, cfg.epochs + 1), desc=f"fit {''.join(cfg.model.modalities)} {cfg.model.fusion}",
                   unit="epoch", disable=not progress)
        with open(out / run_folder.METRICS_LOG, "w") as log:
            for epoch in bar:
                t0 = time.time()
                train_loss = _train_epoch(model, data, norm, train_windows, targets, mask, objective, optimizer,
                                          scheduler, cfg, shuffle, aug_gen)
                select, table = evaluate_windows(model, data, plan.select, norm)
                score = select[primary] if np.isfinite(select[primary]) else -math.inf
                improved = score > best
                if improved:
                    best, best_epoch, best_table, best_select, stale = score, epoch, table, select, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    save_weights(out, model, norm)
                else:
                    stale += 1
                log.write(json.dumps({"epoch": epoch, "train_loss": train_loss, "select": select,
                                      "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - t0, 3)})
                          + "\n")
                log.flush()
                bar.set_postfix(loss=f"{train_loss:.4f}", **{primary: f"{select[primary]:.4f}"}, best=f"{best:.4f}")
                if stale >= cfg.patience:
                    break
    if best_table is None:
        raise FitError(f"run {out}: the selection split's {primary} was never finite; nothing was learned")
    report, report_table = best_select, best_table
    if not same_videos(plan.select, plan.report):  # the one look at the reported split, with the chosen epoch
        model.load_state_dict(best_state)
        report, report_table = evaluate_windows(model, data, plan.report, norm)
    report_table.save(out / run_folder.VAL_FRAMES)
    result = run_result(task, plan, best_epoch, epoch, best_select, report, report_table, cfg.bootstrap_draws,
                        best_table)
    result["seconds"] = round(time.time() - started, 2)
    run_folder.write_metrics(out, result)
    return result


def _train_epoch(model, data: FeatureData, norm, train_windows, targets, mask, objective, optimizer, scheduler,
                 cfg: FitConfig, shuffle, aug_gen) -> float:
    """One pass over the training windows in a seeded random order; returns the mean loss."""
    import torch

    from fgvu.fusion import augment, losses

    model.train()
    order = train_windows[torch.randperm(len(train_windows), generator=shuffle)]
    use_mixup = "mixup" in cfg.augment
    feature_aug = [a for a in cfg.augment if a != "mixup"]
    total, batches = 0.0, 0
    for lo in range(0, len(order), cfg.batch_size):
        idx = order[lo : lo + cfg.batch_size]
        inputs, step_masks = data.inputs(idx, norm), data.step_masks(idx)
        y, m = targets[idx.to(targets.device)], mask[idx.to(mask.device)]
        perm, lam = None, 1.0
        if use_mixup:
            inputs, perm, lam = augment.mixup(inputs, len(idx), cfg.mixup_alpha, aug_gen)
            # a mixed step holds information where either of its two samples had some
            step_masks = {k: v | v[perm.to(v.device)] for k, v in step_masks.items()}
        model_inputs = augment.augment_features(inputs, cfg, aug_gen) if feature_aug else inputs
        out = model(model_inputs, step_masks)
        loss = objective(out.steps, y, m)
        if perm is not None:
            perm = perm.to(y.device)
            loss = lam * loss + (1.0 - lam) * objective(out.steps, y[perm], m[perm])
        if cfg.recon_weight > 0:
            loss = loss + cfg.recon_weight * losses.recon_loss(out.recon, inputs, step_masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        total += float(loss.detach())
        batches += 1
    return total / max(batches, 1)
