"""Stage-2 configuration: the single source of truth for fusion-model and training defaults.

Each field is one `fgvu fit` option (`--d-model` -> `ModelConfig.d_model`, `--lr` -> `FitConfig.lr`),
declared once with `fgvu.options.opt`: its help, choices and range live here. A `fgvu.toml` in the
working directory can override the defaults in its `[model]` and `[fit]` sections;
`build_fit_config` applies both, then the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from fgvu.modalities import BY_NAME, MODALITIES, known
from fgvu.options import opt
from fgvu.settings import CONFIG_FILE, apply_overrides, load_section

Fusion = Literal["xattn", "xattn-sym", "concat"]
Stages = Literal["parallel", "sequential"]
AUGMENTATIONS: tuple[str, ...] = ("noise", "modality-dropout", "temporal-mask", "mixup")


def parse_modalities(text: str) -> tuple[str, ...]:
    """'v,i,t' (or 'vit') -> ('v', 'i', 't') in the order given; letters come from the modality registry."""
    letters = [c for part in text.split(",") for c in part.strip()]
    unknown = sorted({c for c in letters if c not in MODALITIES})
    if unknown or not letters:  # the option names itself in front of this message
        raise ValueError(f"unknown letters {unknown or '(none given)'}; use a subset of {known()}")
    return tuple(dict.fromkeys(letters))


def parse_augment(text: str) -> tuple[str, ...]:
    """'noise,mixup' -> ('noise', 'mixup'); 'none' or '' -> ()."""
    names = [a.strip() for a in text.split(",") if a.strip() and a.strip() != "none"]
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentations {unknown}; known: {', '.join(AUGMENTATIONS)}")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class ModelConfig:
    """The fusion head: one GRU per modality, a fusion block, and a per-step MLP head."""

    modalities: tuple[str, ...] = opt(("v", "i", "t"), f"Modalities to fuse, comma-separated: a subset of {known()}.",
                                      choices=tuple(MODALITIES), parse=parse_modalities)
    fusion: Fusion = opt("xattn", "Fusion block: xattn (the query stream attends to the others), xattn-sym "
                         "(every modality attends to every other) or concat.")
    query: str = opt("image", "Query modality of xattn.", choices=tuple(BY_NAME))
    stages: Stages = opt("parallel", "How xattn's attention stages chain: parallel (each context stream attends "
                         "from the query's GRU states) or sequential (query -> video, then that result -> text, "
                         "in registry order).")
    d_model: int = opt(128, "Width of the projections, GRUs and attention.", ge=1)
    gru_layers: int = opt(1, "GRU layers per modality.", ge=1)
    bidirectional: bool = opt(True, "Bidirectional GRUs.", flag="--bidirectional/--unidirectional")
    heads: int = opt(4, "Attention heads.", ge=1)
    mlp_hidden: int = opt(256, "Hidden width of the per-step MLP head.", ge=1)
    dropout: float = opt(0.1, "Dropout in the model.", ge=0, lt=1)
    # fit builds the decoder exactly when FitConfig.recon_weight > 0, so this is not an option
    recon: bool = opt(False, "Build the autoencoding decoder.", option=False)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        return cls(**{**d, "modalities": tuple(d["modalities"])})


@dataclass(frozen=True)
class FitConfig:
    """Everything `fgvu fit` needs besides the cache and the output folder."""

    model: ModelConfig = field(default_factory=ModelConfig)
    # sampling used at training time (subsets of what the cache holds)
    image_frames: int = opt(16, "Image frames per window used in training (8 takes every second cached frame).",
                            ge=1)
    captions: int = opt(4, "Captions per window used in training (2 takes every second).", ge=1)
    video_frames: int = opt(16, "VideoPrism clip length to read (a clips/video_f<T> array of the cache).", ge=1)
    # optimisation
    epochs: int = opt(30, "Maximum epochs.", ge=1)
    batch_size: int = opt(64, "Windows per batch.", ge=1)
    lr: float = opt(1e-3, "Peak learning rate of AdamW.", gt=0)
    weight_decay: float = opt(1e-2, "AdamW weight decay.", ge=0)
    warmup_epochs: float = opt(1.0, "Linear warm-up length in epochs.", ge=0)
    schedule: Literal["cosine", "onecycle"] = opt("cosine", "Learning-rate schedule after warm-up.")
    grad_clip: float = opt(1.0, "Gradient norm clip (0: off).", ge=0)
    patience: int = opt(8, "Early stopping: epochs without a better metric on the selection split.", ge=1)
    seed: int = opt(0, "Seed of initialisation, shuffling, augmentation and the hold-outs (selection, fallback "
                    "validation).", ge=0)
    # losses
    loss: Literal["ccc", "ccc+mse", "ce", "focal"] | None = opt(
        None, "Loss: ccc or ccc+mse (va), ce or focal (violence).", shown="ccc for va, ce for violence")
    mse_weight: float = opt(0.5, "Weight of the MSE term with --loss ccc+mse.", ge=0)
    focal_gamma: float = opt(2.0, "Focusing parameter of --loss focal.", ge=0)
    class_weights: bool = opt(True, "Inverse-frequency class weights (violence).",
                              flag="--class-weights/--no-class-weights")
    recon_weight: float = opt(0.0, "Weight of the autoencoding term (0: off); a decoder reconstructs each "
                              "modality's input features.", ge=0)
    # feature augmentation
    augment: tuple[str, ...] = opt((), "Feature augmentations, comma-separated (or none).", choices=AUGMENTATIONS,
                                   parse=parse_augment)
    noise_std: float = opt(0.1, "Std of the Gaussian feature noise.", ge=0)
    modality_dropout: float = opt(0.2, "Probability of dropping a whole modality.", ge=0, lt=1)
    temporal_mask: float = opt(0.15, "Fraction of time steps masked.", ge=0, lt=1)
    mixup_alpha: float = opt(0.2, "Beta(alpha, alpha) of mixup.", gt=0)
    # data and protocol: which videos train, which select the epoch, which report the score
    val_split: str = opt("val", "The cache's validation split (neither train nor test). When the cache has no val "
                         "videos, the default val holds out --val-fraction of the training base videos instead; "
                         "any other missing split is an error.")
    val_fraction: float = opt(0.2, "Share of training base videos held out as val when the cache has no val videos "
                              "(with the default --val-split).", gt=0, lt=1)
    select_on: Literal["holdout", "val"] = opt(
        "holdout", "What early stopping selects the epoch on: holdout (a --select-fraction of the training base "
        "videos, so the reported score comes from videos selection never saw) or val (the common ABAW practice; "
        "its numbers are labelled 'selected on val').")
    select_fraction: float = opt(0.15, "Share of training base videos held out for epoch selection "
                                 "(--select-on holdout).", gt=0, lt=1)
    report_split: Literal["val", "test"] = opt("val", "The split the reported score comes from: the validation "
                                               "split, or test where its videos have labels.")
    folds: int = opt(0, "Group k-fold by base video over train + val (0: off); the reported split is fold --fold.",
                     ge=0)
    fold: int = opt(0, "The held-out fold with --folds K (0..K-1).", ge=0)
    bootstrap_draws: int = opt(1000, "Draws of the seeded bootstrap over base videos behind every reported "
                               "metric's 95% interval.", ge=1)
    normalize: bool = opt(True, "Per-dimension normalisation from the training videos.",
                          flag="--normalize/--no-normalize")
    device: str = opt("auto", "Torch device: auto (cuda when torch sees a GPU, else cpu), cpu, cuda or cuda:N.")
    # one thread suits the head's small matrices: on 2 cores two threads made an epoch 6x slower on a
    # busy machine, and 10 % faster for 40 % more CPU time on an idle one
    threads: int | None = opt(None, "Torch math threads of each process (fit, evaluate, predict, every ablation "
                              "worker); fit records it in config.json.", ge=1, shown="1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["augment"] = list(self.augment)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        return cls(**{**d, "model": ModelConfig.from_dict(d["model"]), "augment": tuple(d.get("augment", ()))})


def build_fit_config(options: Mapping[str, Any] | None = None, toml: str | Path = CONFIG_FILE) -> FitConfig:
    """Dataclass defaults, then fgvu.toml's [model] and [fit], then `options`.

    `options` maps ModelConfig and FitConfig field names to command-line values (None: not given).
    """
    given = {k: v for k, v in (options or {}).items() if v is not None}
    model_names = {f.name for f in fields(ModelConfig)}
    model = load_section(ModelConfig(), "model", toml)
    model = apply_overrides(model, {k: v for k, v in given.items() if k in model_names}, "command line")
    cfg = load_section(FitConfig(), "fit", toml)
    cfg = apply_overrides(cfg, {k: v for k, v in given.items() if k not in model_names}, "command line")
    return replace(cfg, model=model)
