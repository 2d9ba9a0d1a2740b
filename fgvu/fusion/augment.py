"""Feature-level augmentation of a training batch (inputs: letter -> [B, T, D] normalised features).

`augment_features` applies, in this order and each only when named in `FitConfig.augment`:
- "noise": adds Gaussian noise of std `noise_std` (features are normalised, so this is relative);
- "modality-dropout": zeroes a whole modality of a sample with probability `modality_dropout`,
  never all modalities of one sample (one is kept at random); with one modality it does nothing;
- "temporal-mask": zeroes each time step of each modality with probability `temporal_mask`.
"mixup" mixes labels too, so it lives in `mixup`, which the training loop calls.
All randomness comes from the given generator, so a seed reproduces a run.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from fgvu.fusion.config import AUGMENTATIONS, FitConfig


class AugmentError(ValueError):
    """An unknown augmentation name or a batch that does not fit together."""


def _rand(shape: tuple[int, ...], generator: torch.Generator, like: Tensor) -> Tensor:
    """Uniform [0, 1) numbers drawn from `generator` (on its device), moved next to `like`."""
    return torch.rand(shape, generator=generator, device=generator.device).to(like.device)


def _batch_size(inputs: dict[str, Tensor]) -> int:
    sizes = {x.shape[0] for x in inputs.values()}
    if len(sizes) != 1:
        raise AugmentError(f"augmentation needs one batch size across modalities; got {sizes}")
    return sizes.pop()


def augment_features(inputs: dict[str, Tensor], cfg: FitConfig, generator: torch.Generator) -> dict[str, Tensor]:
    """Return a new dict of augmented features; the input tensors are never modified."""
    unknown = [a for a in cfg.augment if a not in AUGMENTATIONS]
    if unknown:
        raise AugmentError(f"unknown augmentations {unknown}; choose from {list(AUGMENTATIONS)}")
    out = dict(inputs)
    if not out:
        return out
    letters = list(out)
    batch = _batch_size(out)

    if "noise" in cfg.augment and cfg.noise_std > 0:
        for m in letters:
            x = out[m]
            noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x)
            out[m] = x + cfg.noise_std * noise

    if "modality-dropout" in cfg.augment and cfg.modality_dropout > 0 and len(letters) > 1:
        first = out[letters[0]]
        keep = _rand((batch, len(letters)), generator, first) >= cfg.modality_dropout
        rescue = torch.randint(len(letters), (batch,), generator=generator, device=generator.device).to(first.device)
        none_kept = ~keep.any(dim=1)
        keep[none_kept, rescue[none_kept]] = True
        for j, m in enumerate(letters):
            out[m] = out[m] * keep[:, j, None, None].to(out[m].dtype)

    if "temporal-mask" in cfg.augment and cfg.temporal_mask > 0:
        for m in letters:
            x = out[m]
            keep_step = _rand(x.shape[:2], generator, x) >= cfg.temporal_mask
            out[m] = x * keep_step[..., None].to(x.dtype)
    return out


def mixup(
    inputs: dict[str, Tensor], n: int, alpha: float, generator: torch.Generator
) -> tuple[dict[str, Tensor], Tensor, float]:
    """Mix every sample with sample perm[i] of the same batch: x' = lam * x + (1 - lam) * x[perm].

    lam ~ Beta(alpha, alpha), folded to lam >= 0.5 so each mixed sample stays closest to its own
    labels. The caller combines losses as lam * loss(y) + (1 - lam) * loss(y[perm]).
    Returns (mixed inputs, perm [n] long on the generator's device, lam).
    """
    if alpha <= 0:
        raise AugmentError(f"mixup alpha must be > 0, got {alpha}")
    if inputs and _batch_size(inputs) != n:
        raise AugmentError(f"mixup: batch size {_batch_size(inputs)} differs from n={n}")
    # torch's Beta sampler takes no generator: seed numpy from the generator instead
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device).item())
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    lam = max(lam, 1.0 - lam)
    perm = torch.randperm(n, generator=generator, device=generator.device)
    mixed = {m: lam * x + (1.0 - lam) * x[perm.to(x.device)] for m, x in inputs.items()}
    return mixed, perm, lam
