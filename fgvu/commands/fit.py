"""`fgvu fit`, `fgvu evaluate`, `fgvu predict`: stage 2 on a feature cache.

Every training option maps onto one field of `ModelConfig` or `FitConfig`
(fgvu/fusion/config.py), the single source of defaults; `[model]` and `[fit]` in ./fgvu.toml
override those defaults, and options given on the command line override both.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from fgvu.fusion.config import AUGMENTATIONS, MODALITY_LETTERS, FitConfig, ModelConfig
from fgvu.settings import SettingsError

_FIT, _MODEL = FitConfig(), ModelConfig()


def _d(config, name: str) -> str:
    """' (default: X)' from the config dataclass (fgvu.toml may override it)."""
    value = getattr(config, name)
    if isinstance(value, tuple):
        value = ",".join(value) or "none"
    return f" (default: {value})"


def parse_modalities(text: str) -> tuple[str, ...]:
    """'v,i,t' (or 'vit') -> ('v', 'i', 't'); unknown letters are an error listing the known ones."""
    letters = [c for part in text.split(",") for c in part.strip()]
    unknown = sorted({c for c in letters if c not in MODALITY_LETTERS})
    if unknown or not letters:
        known = ", ".join(f"{k} ({v})" for k, v in MODALITY_LETTERS.items())
        raise SettingsError(f"--modalities {text!r}: unknown letters {unknown or '(none given)'}; use a subset of {known}")
    return tuple(dict.fromkeys(letters))


def parse_augment(text: str) -> tuple[str, ...]:
    """'noise,mixup' -> ('noise', 'mixup'); 'none' or '' -> ()."""
    names = [a.strip() for a in text.split(",") if a.strip() and a.strip() != "none"]
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise SettingsError(f"--augment: unknown augmentations {unknown}; known: {', '.join(AUGMENTATIONS)}")
    return tuple(dict.fromkeys(names))


def build_fit_config(model_options: dict, fit_options: dict, toml: str | Path = "fgvu.toml") -> FitConfig:
    """Dataclass defaults, then fgvu.toml's [model]/[fit], then the options that were given."""
    from fgvu.settings import apply_overrides, load_section

    model = load_section(ModelConfig(), "model", toml)
    model = apply_overrides(model, {k: v for k, v in model_options.items() if v is not None}, "command line")
    base = load_section(FitConfig(), "fit", toml)
    cfg = apply_overrides(base, {k: v for k, v in fit_options.items() if v is not None}, "command line")
    return replace(cfg, model=model)


def fit_cmd(
    cache: Optional[Path] = typer.Argument(None, help="Feature cache to train on. Default: caches/<--dataset>, "
                                           "or the only cache under caches/."),
    dataset: Optional[str] = typer.Option(None, help="Pick the cache caches/<dataset> when CACHE is not given."),
    task: Optional[str] = typer.Option(None, help="va or violence. Inferred from the cache; a value that "
                                       "disagrees with the cache is an error."),
    out: Optional[Path] = typer.Option(None, help="Run folder; a finished run there made with other options is "
                                       "kept unless --force. (default: runs/<dataset>-<modalities>-<fusion>-s<seed>)"),
    modalities: Optional[str] = typer.Option(None, help="Modalities to fuse: comma-separated subset of v (video), "
                                             "i (image), t (text)." + _d(_MODEL, "modalities")),
    fusion: Optional[str] = typer.Option(None, help="Fusion block: xattn (query attends to the others), xattn-sym "
                                         "(every modality attends to every other) or concat." + _d(_MODEL, "fusion")),
    query: Optional[str] = typer.Option(None, help="Query modality of xattn: image, video or text."
                                        + _d(_MODEL, "query")),
    d_model: Optional[int] = typer.Option(None, help="Width of the projections, GRUs and attention."
                                          + _d(_MODEL, "d_model")),
    gru_layers: Optional[int] = typer.Option(None, help="GRU layers per modality." + _d(_MODEL, "gru_layers")),
    bidirectional: Optional[bool] = typer.Option(None, "--bidirectional/--unidirectional",
                                                 help="Bidirectional GRUs." + _d(_MODEL, "bidirectional")),
    heads: Optional[int] = typer.Option(None, help="Attention heads." + _d(_MODEL, "heads")),
    mlp_hidden: Optional[int] = typer.Option(None, help="Hidden width of the per-step MLP head."
                                             + _d(_MODEL, "mlp_hidden")),
    dropout: Optional[float] = typer.Option(None, help="Dropout in the model." + _d(_MODEL, "dropout")),
    image_frames: Optional[int] = typer.Option(None, help="Image frames per window used in training (8 takes every "
                                               "second cached frame)." + _d(_FIT, "image_frames")),
    captions: Optional[int] = typer.Option(None, help="Captions per window used in training (2 takes every second)."
                                           + _d(_FIT, "captions")),
    video_frames: Optional[int] = typer.Option(None, help="VideoPrism clip length to read (a clips/video_f<T> array "
                                               "of the cache)." + _d(_FIT, "video_frames")),
    epochs: Optional[int] = typer.Option(None, help="Maximum epochs." + _d(_FIT, "epochs")),
    batch_size: Optional[int] = typer.Option(None, help="Windows per batch." + _d(_FIT, "batch_size")),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate of AdamW." + _d(_FIT, "lr")),
    weight_decay: Optional[float] = typer.Option(None, help="AdamW weight decay." + _d(_FIT, "weight_decay")),
    warmup_epochs: Optional[float] = typer.Option(None, help="Linear warm-up length in epochs."
                                                  + _d(_FIT, "warmup_epochs")),
    schedule: Optional[str] = typer.Option(None, help="Learning-rate schedule after warm-up: cosine or onecycle."
                                           + _d(_FIT, "schedule")),
    grad_clip: Optional[float] = typer.Option(None, help="Gradient norm clip (0: off)." + _d(_FIT, "grad_clip")),
    patience: Optional[int] = typer.Option(None, help="Early stopping: epochs without a better validation metric."
                                           + _d(_FIT, "patience")),
    seed: Optional[int] = typer.Option(None, help="Seed of initialisation, shuffling, augmentation and the "
                                       "fallback validation split." + _d(_FIT, "seed")),
    loss: Optional[str] = typer.Option(None, help="ccc or ccc+mse (va), ce or focal (violence). (default: ccc for "
                                       "va, ce for violence)"),
    mse_weight: Optional[float] = typer.Option(None, help="Weight of the MSE term with --loss ccc+mse."
                                               + _d(_FIT, "mse_weight")),
    focal_gamma: Optional[float] = typer.Option(None, help="Focusing parameter of --loss focal."
                                                + _d(_FIT, "focal_gamma")),
    class_weights: Optional[bool] = typer.Option(None, "--class-weights/--no-class-weights",
                                                 help="Inverse-frequency class weights (violence)."
                                                 + _d(_FIT, "class_weights")),
    recon_weight: Optional[float] = typer.Option(None, help="Weight of the autoencoding term (0: off); a decoder "
                                                 "reconstructs each modality's input features." + _d(_FIT, "recon_weight")),
    augment: Optional[str] = typer.Option(None, help="Feature augmentations, comma-separated: noise, "
                                          "modality-dropout, temporal-mask, mixup (or none)." + _d(_FIT, "augment")),
    noise_std: Optional[float] = typer.Option(None, help="Std of the Gaussian feature noise." + _d(_FIT, "noise_std")),
    modality_dropout: Optional[float] = typer.Option(None, help="Probability of dropping a whole modality."
                                                     + _d(_FIT, "modality_dropout")),
    temporal_mask: Optional[float] = typer.Option(None, help="Fraction of time steps masked."
                                                  + _d(_FIT, "temporal_mask")),
    mixup_alpha: Optional[float] = typer.Option(None, help="Beta(alpha, alpha) of mixup." + _d(_FIT, "mixup_alpha")),
    val_split: Optional[str] = typer.Option(None, help="The cache's split used for validation (not train). When the "
                                            "cache has no val videos, the default val holds out --val-fraction of the "
                                            "training videos instead; any other missing split is an error."
                                            + _d(_FIT, "val_split")),
    val_fraction: Optional[float] = typer.Option(None, help="Share of training videos held out when the cache has "
                                                 "no val videos (with the default --val-split)."
                                                 + _d(_FIT, "val_fraction")),
    normalize: Optional[bool] = typer.Option(None, "--normalize/--no-normalize",
                                             help="Per-dimension normalisation from the training videos."
                                             + _d(_FIT, "normalize")),
    device: Optional[str] = typer.Option(None, help="Torch device (cpu, cuda, cuda:1)." + _d(_FIT, "device")),
    force: bool = typer.Option(False, "--force", help="Replace a finished run in the run folder even when it was "
                               "made with other options (the same options re-run it without --force)."),
    progress: bool = typer.Option(True, "--progress/--quiet", help="Show a progress bar."),
) -> None:
    """Train the fusion head on a feature cache and keep the best checkpoint."""
    from fgvu.cache_schema import read_spec
    from fgvu.fusion.train import fit
    from fgvu.settings import find_cache, paths

    cache = Path(cache) if cache is not None else find_cache(dataset)
    spec = read_spec(cache)
    if task is not None and task != spec.task:
        raise SettingsError(f"--task {task} disagrees with cache {cache}, which holds {spec.task} targets")
    model_options = dict(
        modalities=parse_modalities(modalities) if modalities is not None else None, fusion=fusion, query=query,
        d_model=d_model, gru_layers=gru_layers, bidirectional=bidirectional, heads=heads, mlp_hidden=mlp_hidden,
        dropout=dropout,
    )
    fit_options = dict(
        image_frames=image_frames, captions=captions, video_frames=video_frames, epochs=epochs, batch_size=batch_size,
        lr=lr, weight_decay=weight_decay, warmup_epochs=warmup_epochs, schedule=schedule, grad_clip=grad_clip,
        patience=patience, seed=seed, loss=loss, mse_weight=mse_weight, focal_gamma=focal_gamma,
        class_weights=class_weights, recon_weight=recon_weight,
        augment=parse_augment(augment) if augment is not None else None, noise_std=noise_std,
        modality_dropout=modality_dropout, temporal_mask=temporal_mask, mixup_alpha=mixup_alpha,
        val_split=val_split, val_fraction=val_fraction, normalize=normalize, device=device,
    )
    cfg = build_fit_config(model_options, fit_options)
    if out is None:
        out = Path(paths().runs) / f"{spec.dataset}-{''.join(cfg.model.modalities)}-{cfg.model.fusion}-s{cfg.seed}"
    result = fit(cache, cfg, out, progress=progress, overwrite=force)
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in result["val"].items() if isinstance(v, float))
    typer.echo(f"best epoch {result['best_epoch']} of {result['epochs_run']}: {metrics}")
    typer.echo(f"run folder: {out}")


def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    cache: Optional[Path] = typer.Option(None, help="Cache to evaluate on. (default: the run's training cache)"),
    split: str = typer.Option("val", help="Split to evaluate (val uses the run's own validation videos)."),
) -> None:
    """Frame-level metrics of a run's best checkpoint, overall and per video; writes RUN/eval.json."""
    from fgvu.fusion.evaluate import evaluate, format_table

    result = evaluate(run, cache=cache, split=split)
    typer.echo(format_table(result))
    typer.echo(f"wrote {run / ('eval.json' if split == 'val' else f'eval-{split}.json')}")


def predict_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `fgvu fit`."),
    split: str = typer.Option("test", help="Split to predict."),
    out: Optional[Path] = typer.Option(None, help="Folder for the prediction files. (default: RUN/predictions-<split>)"),
    cache: Optional[Path] = typer.Option(None, help="Cache to predict from. (default: the run's training cache)"),
) -> None:
    """Frame-level predictions in the benchmark's submission format (Aff-Wild2 or DVD)."""
    from fgvu.fusion.evaluate import predict

    out = out if out is not None else run / f"predictions-{split}"
    written = predict(run, out, split=split, cache=cache)
    typer.echo(f"wrote {len(written)} prediction files to {out}")


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict_cmd)
