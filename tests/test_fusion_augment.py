"""Tests of fgvu.fusion.augment: each augmentation changes exactly what it should."""

from __future__ import annotations

import pytest
import torch

from fgvu.fusion.augment import AugmentError, augment_features, mixup
from fgvu.fusion.config import FitConfig


def features(b=64, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # strictly positive values, so an exact zero can only come from a mask
    return {m: torch.rand(b, t, 6, generator=g) + 0.5 for m, t in (("v", 16), ("i", 16), ("t", 4))}


def run(augment, **kw):
    x = features()
    before = {m: v.clone() for m, v in x.items()}
    out = augment_features(x, FitConfig(augment=tuple(augment), **kw), torch.Generator().manual_seed(1))
    for m in x:  # inputs are never modified in place
        assert torch.equal(x[m], before[m])
    return x, out


def test_no_augmentation_is_identity():
    x, out = run(())
    assert all(out[m] is x[m] for m in x)
    x, out = run(("mixup",))  # mixup is applied by the training loop, not here
    assert all(out[m] is x[m] for m in x)


def test_noise_changes_values_only():
    x, out = run(("noise",), noise_std=0.1)
    for m in x:
        assert out[m].shape == x[m].shape
        diff = out[m] - x[m]
        assert torch.all(diff != 0)
        assert diff.std().item() == pytest.approx(0.1, rel=0.15)
        assert diff.mean().abs() < 0.02


def test_modality_dropout_zeroes_whole_modalities_but_never_all():
    x, out = run(("modality-dropout",), modality_dropout=0.6)
    dropped = torch.stack([(out[m] == 0).flatten(1).all(1) for m in "vit"], dim=1)  # [B, 3]
    untouched = torch.stack([(out[m] == x[m]).flatten(1).all(1) for m in "vit"], dim=1)
    assert torch.all(dropped ^ untouched)  # each modality of each sample: fully zero or unchanged
    assert dropped.any() and not dropped.all(dim=1).any()
    assert 0.3 < dropped.float().mean() < 0.6  # ~0.6 per modality, less after keeping one


def test_modality_dropout_never_drops_a_single_modality():
    x = {"i": torch.rand(32, 16, 4) + 0.5}
    out = augment_features(x, FitConfig(augment=("modality-dropout",), modality_dropout=0.9),
                           torch.Generator().manual_seed(0))
    assert torch.equal(out["i"], x["i"])


def test_temporal_mask_zeroes_time_steps_only():
    x, out = run(("temporal-mask",), temporal_mask=0.3)
    for m in x:
        zero_step = (out[m] == 0).all(-1)  # [B, T]
        same_step = (out[m] == x[m]).all(-1)
        assert torch.all(zero_step ^ same_step)  # whole steps, never parts of a feature vector
    masked = torch.cat([(out[m] == 0).all(-1).flatten() for m in x]).float().mean()
    assert 0.2 < masked < 0.4


def test_augmentations_are_reproducible_from_the_generator():
    cfg = FitConfig(augment=("noise", "modality-dropout", "temporal-mask"))
    x = features()
    a = augment_features(x, cfg, torch.Generator().manual_seed(5))
    b = augment_features(x, cfg, torch.Generator().manual_seed(5))
    c = augment_features(x, cfg, torch.Generator().manual_seed(6))
    assert all(torch.equal(a[m], b[m]) for m in x)
    assert not all(torch.equal(a[m], c[m]) for m in x)


def test_mixup_keeps_shapes_and_mixes_with_a_permutation():
    x = features(b=16)
    mixed, perm, lam = mixup(x, 16, 0.4, torch.Generator().manual_seed(3))
    assert sorted(perm.tolist()) == list(range(16))
    assert 0.5 <= lam <= 1.0
    for m in x:
        assert mixed[m].shape == x[m].shape
        torch.testing.assert_close(mixed[m], lam * x[m] + (1 - lam) * x[m][perm])
    again = mixup(x, 16, 0.4, torch.Generator().manual_seed(3))
    assert torch.equal(again[1], perm) and again[2] == lam


def test_bad_augmentation_inputs_raise():
    with pytest.raises(AugmentError, match="unknown augmentations"):
        augment_features(features(), FitConfig(augment=("rotate",)), torch.Generator())
    with pytest.raises(AugmentError, match="differs"):
        mixup(features(b=8), 16, 0.2, torch.Generator())
    with pytest.raises(AugmentError, match="alpha"):
        mixup(features(b=8), 8, 0.0, torch.Generator())
