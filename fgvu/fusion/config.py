"""Stage-2 configuration: the single source of truth for fusion-model and training defaults.

`fgvu fit` options map one to one onto these fields (`--d-model` -> `ModelConfig.d_model`,
`--lr` -> `FitConfig.lr`, ...); a `fgvu.toml` in the working directory can override them in
its `[model]` and `[fit]` sections.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Fusion = Literal["xattn", "xattn-sym", "concat"]
Query = Literal["image", "video", "text"]
Augmentation = Literal["noise", "modality-dropout", "temporal-mask", "mixup"]
AUGMENTATIONS: tuple[str, ...] = ("noise", "modality-dropout", "temporal-mask", "mixup")
MODALITY_LETTERS = {"v": "video", "i": "image", "t": "text"}


@dataclass(frozen=True)
class ModelConfig:
    """The fusion head: one GRU per modality, a fusion block, and a per-step MLP head."""

    modalities: tuple[str, ...] = ("v", "i", "t")
    fusion: Fusion = "xattn"
    query: Query = "image"
    d_model: int = 128
    gru_layers: int = 1
    bidirectional: bool = True
    heads: int = 4
    mlp_hidden: int = 256
    dropout: float = 0.1
    recon: bool = False  # build the autoencoding decoder (FitConfig.recon_weight > 0 turns it on)

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
    image_frames: int = 16  # 8 takes every second image-grid index
    captions: int = 4  # 2 takes every second caption
    video_frames: int = 16  # which clips/video_fT array to read
    # optimisation
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "onecycle"] = "cosine"
    grad_clip: float = 1.0
    patience: int = 8  # early stopping, in epochs without validation improvement
    seed: int = 0
    # losses
    loss: Literal["ccc", "ccc+mse", "ce", "focal"] | None = None  # None: ccc for va, ce for violence
    mse_weight: float = 0.5
    focal_gamma: float = 2.0
    class_weights: bool = True
    recon_weight: float = 0.0
    # feature augmentation
    augment: tuple[str, ...] = ()
    noise_std: float = 0.1
    modality_dropout: float = 0.2
    temporal_mask: float = 0.15
    mixup_alpha: float = 0.2
    # data
    val_split: str = "val"
    val_fraction: float = 0.2  # used when the cache has no validation videos
    normalize: bool = True
    device: str = "cpu"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["augment"] = list(self.augment)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        return cls(**{**d, "model": ModelConfig.from_dict(d["model"]), "augment": tuple(d.get("augment", ()))})
