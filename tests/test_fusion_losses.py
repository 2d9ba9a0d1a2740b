"""Tests of fgvu.fusion.losses against independent numpy / torch computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fgvu.fusion.losses import (
    LossInputError,
    ccc_loss,
    classification_loss,
    masked_mse,
    recon_loss,
    va_loss,
)


def numpy_ccc(t: np.ndarray, p: np.ndarray) -> float:
    t, p = t.astype(np.float64), p.astype(np.float64)
    cov = np.mean((t - t.mean()) * (p - p.mean()))
    return 2 * cov / (np.var(t) + np.var(p) + (t.mean() - p.mean()) ** 2)


def va_batch(n=60, seed=0):
    rng = np.random.default_rng(seed)
    target = rng.uniform(-1, 1, (n, 2))
    pred = 0.6 * target + rng.normal(0, 0.4, (n, 2)) + 0.1
    mask = rng.random((n, 2)) > 0.25
    target[~mask] = -5.0  # Aff-Wild2's invalid marker must not matter
    return (torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32),
            torch.tensor(mask))


def test_ccc_loss_is_one_minus_numpy_ccc_over_valid_frames():
    pred, target, mask = va_batch()
    expected = np.mean([1 - numpy_ccc(target[mask[:, k], k].numpy(), pred[mask[:, k], k].numpy()) for k in range(2)])
    assert ccc_loss(pred, target, mask).item() == pytest.approx(expected, abs=1e-5)


def test_ccc_loss_ignores_masked_frames_entirely():
    pred, target, mask = va_batch()
    pred.requires_grad_(True)
    loss = ccc_loss(pred, target, mask)
    loss.backward()
    assert torch.all(pred.grad[~mask] == 0) and pred.grad[mask].abs().sum() > 0
    garbage_pred = torch.where(mask, pred.detach(), torch.full_like(pred, 100.0))
    garbage_target = torch.where(mask, target, torch.full_like(target, float("nan")))
    assert ccc_loss(garbage_pred, garbage_target, mask).item() == pytest.approx(loss.item(), abs=1e-6)


def test_ccc_loss_perfect_prediction_and_empty_dims():
    pred, target, mask = va_batch()
    perfect = torch.where(mask, target, torch.zeros_like(target))
    assert ccc_loss(perfect, target, mask).item() == pytest.approx(0.0, abs=1e-5)
    # a dim with no valid frame is left out of the mean
    only_valence = mask.clone()
    only_valence[:, 1] = False
    expected = 1 - numpy_ccc(target[mask[:, 0], 0].numpy(), pred[mask[:, 0], 0].numpy())
    assert ccc_loss(pred, target, only_valence).item() == pytest.approx(expected, abs=1e-5)
    nothing = ccc_loss(pred.requires_grad_(True), target, torch.zeros_like(mask))
    assert nothing.item() == 0.0 and nothing.requires_grad


def test_va_loss_adds_weighted_masked_mse():
    pred, target, mask = va_batch()
    m = mask.numpy()
    mse = np.mean((pred.numpy()[m] - target.numpy()[m]) ** 2)
    assert masked_mse(pred, target, mask).item() == pytest.approx(mse, rel=1e-5)
    base = ccc_loss(pred, target, mask).item()
    assert va_loss(pred, target, mask).item() == pytest.approx(base, abs=1e-6)
    assert va_loss(pred, target, mask, mse_weight=0.5).item() == pytest.approx(base + 0.5 * mse, abs=1e-5)


def class_batch(n=40, c=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, generator=g) * 2
    labels = torch.randint(c, (n,), generator=g)
    mask = torch.rand(n, generator=g) > 0.2
    return logits, labels, mask


def test_focal_with_gamma_zero_equals_cross_entropy():
    logits, labels, mask = class_batch(c=3)
    ce = F.cross_entropy(logits[mask], labels[mask])
    assert classification_loss(logits, labels, mask, "ce").item() == pytest.approx(ce.item(), rel=1e-6)
    assert classification_loss(logits, labels, mask, "focal", gamma=0.0).item() == pytest.approx(ce.item(), rel=1e-6)
    w = torch.tensor([0.5, 2.0, 1.0])
    ce_w = F.cross_entropy(logits[mask], labels[mask], weight=w)
    got = classification_loss(logits, labels, mask, "focal", class_weights=w, gamma=0.0)
    assert got.item() == pytest.approx(ce_w.item(), rel=1e-6)


def test_focal_matches_hand_computation_and_downweights_easy_entries():
    logits, labels, mask = class_batch()
    p = torch.softmax(logits, 1).numpy()[np.arange(len(labels)), labels.numpy()]
    m = mask.numpy()
    expected = np.mean(-((1 - p[m]) ** 2) * np.log(p[m]))
    focal = classification_loss(logits, labels, mask, "focal", gamma=2.0)
    assert focal.item() == pytest.approx(expected, rel=1e-5)
    assert focal < classification_loss(logits, labels, mask, "ce")


def test_class_weights_change_the_loss_as_expected():
    logits, labels, mask = class_batch()
    plain = classification_loss(logits, labels, mask)
    # scaling every weight equally changes nothing (the sum is normalised by the weights)
    scaled = classification_loss(logits, labels, mask, class_weights=torch.tensor([3.0, 3.0]))
    assert scaled.item() == pytest.approx(plain.item(), rel=1e-6)
    # weight 0 on class 1: only class-0 entries count
    only0 = classification_loss(logits, labels, mask, class_weights=torch.tensor([1.0, 0.0]))
    keep = mask & (labels == 0)
    assert only0.item() == pytest.approx(F.cross_entropy(logits[keep], labels[keep]).item(), rel=1e-6)
    # upweighting the class with the larger mean loss raises the loss
    per = F.cross_entropy(logits, labels, reduction="none")
    harder = int(per[mask & (labels == 1)].mean() > per[mask & (labels == 0)].mean())
    w = torch.ones(2)
    w[harder] = 4.0
    assert classification_loss(logits, labels, mask, class_weights=w) > plain


def test_classification_loss_skips_masked_labels_of_any_value():
    logits, labels, mask = class_batch()
    labels = torch.where(mask, labels, torch.full_like(labels, -1))
    logits.requires_grad_(True)
    loss = classification_loss(logits, labels, mask, "focal")
    loss.backward()
    assert torch.isfinite(loss) and torch.all(logits.grad[~mask] == 0)
    with pytest.raises(LossInputError, match="outside"):
        classification_loss(logits, torch.full_like(labels, 2), mask)
    with pytest.raises(LossInputError, match="kind"):
        classification_loss(logits, labels, mask, kind="hinge")


def test_recon_loss_is_the_mean_of_per_modality_mse():
    g = torch.Generator().manual_seed(0)
    inputs = {"v": torch.randn(2, 16, 6, generator=g), "t": torch.randn(2, 4, 3, generator=g)}
    recon = {m: x + 0.1 * torch.randn(x.shape, generator=g) for m, x in inputs.items()}
    expected = np.mean([np.mean((recon[m] - inputs[m]).numpy() ** 2) for m in inputs])
    assert recon_loss(recon, inputs).item() == pytest.approx(expected, rel=1e-5)
    assert recon_loss(inputs, inputs).item() == 0.0
    with pytest.raises(LossInputError, match="shape"):
        recon_loss({"v": torch.zeros(2, 8, 6)}, inputs)


def test_shape_and_dtype_mismatches_raise():
    pred, target, mask = va_batch()
    with pytest.raises(LossInputError, match="ccc_loss"):
        ccc_loss(pred, target[:, :1], mask)
    with pytest.raises(LossInputError, match="bool mask"):
        ccc_loss(pred, target, mask.float())
