"""Training losses: 1 - CCC (+ MSE) for valence/arousal, CE or focal for classes, reconstruction.

Every loss takes a validity mask; masked entries contribute nothing (their targets may hold
any value, e.g. Aff-Wild2's -5, or -1 labels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


EPS = 1e-8


class LossInputError(ValueError):
    """Loss inputs whose shapes or kinds do not match."""


def ccc_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean over the K dims of 1 - CCC, each CCC over that dim's valid entries.

    pred, target: [N, K]; mask: [N, K] bool. CCC uses population moments (the ABAW formula
    2 cov / (var_p + var_t + (mean_p - mean_t)^2)). Dims with no valid entry are left out of
    the mean; with none at all the loss is a zero that still depends on `pred`.
    """
    _check_same_shape(pred, target, mask, "ccc_loss", ndim=2)
    n = mask.sum(dim=0).to(pred.dtype)  # [K]
    present = n > 0
    if not bool(present.any()):
        return pred.sum() * 0.0
    n = n.clamp(min=1.0)
    zero = torch.zeros_like(pred)
    # where(), not multiplication, so masked targets may even be NaN
    p, t = torch.where(mask, pred, zero), torch.where(mask, target, zero)
    mean_p, mean_t = p.sum(0) / n, t.sum(0) / n
    dp, dt = torch.where(mask, p - mean_p, zero), torch.where(mask, t - mean_t, zero)
    var_p, var_t = dp.square().sum(0) / n, dt.square().sum(0) / n
    cov = (dp * dt).sum(0) / n
    ccc = 2 * cov / (var_p + var_t + (mean_p - mean_t).square() + EPS)
    return (1.0 - ccc)[present].mean()


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the valid entries (zero, still depending on `pred`, if none)."""
    _check_same_shape(pred, target, mask, "masked_mse", ndim=None)
    diff = torch.where(mask, pred - target, torch.zeros_like(pred))
    return diff.square().sum() / mask.sum().to(pred.dtype).clamp(min=1.0)


def va_loss(pred: Tensor, target: Tensor, mask: Tensor, mse_weight: float = 0.0) -> Tensor:
    """Valence/arousal loss: ccc_loss + mse_weight * masked MSE ([N, K] each)."""
    loss = ccc_loss(pred, target, mask)
    if mse_weight:
        loss = loss + mse_weight * masked_mse(pred, target, mask)
    return loss


def classification_loss(
    logits: Tensor,
    labels: Tensor,
    mask: Tensor,
    kind: str = "ce",
    class_weights: Tensor | None = None,
    gamma: float = 2.0,
) -> Tensor:
    """Cross-entropy or focal loss over the valid entries.

    logits [N, C], labels [N] long (any value where masked), mask [N] bool. With class weights
    w, each entry counts w[label] and the sum is divided by the summed weights (as
    `F.cross_entropy(weight=...)` does). Focal multiplies each entry by (1 - p_label)^gamma, so
    gamma = 0 gives cross-entropy.
    """
    if logits.ndim != 2 or labels.shape != logits.shape[:1] or mask.shape != labels.shape:
        raise LossInputError(
            f"classification_loss needs logits [N, C], labels [N], mask [N]; got "
            f"{tuple(logits.shape)}, {tuple(labels.shape)}, {tuple(mask.shape)}"
        )
    if kind not in ("ce", "focal"):
        raise LossInputError(f"classification_loss kind must be 'ce' or 'focal', not {kind!r}")
    n_classes = logits.shape[1]
    safe = torch.where(mask, labels, torch.zeros_like(labels)).long()
    if bool(((safe < 0) | (safe >= n_classes)).any()):
        raise LossInputError(f"classification_loss: a valid label lies outside [0, {n_classes})")
    log_p = F.log_softmax(logits, dim=1).gather(1, safe[:, None])[:, 0]
    per_entry = -log_p
    if kind == "focal":
        per_entry = (1.0 - log_p.exp()).clamp(min=0.0).pow(gamma) * per_entry
    weight = mask.to(logits.dtype)
    if class_weights is not None:
        if class_weights.shape != (n_classes,):
            raise LossInputError(f"class_weights has shape {tuple(class_weights.shape)}; expected ({n_classes},)")
        weight = weight * class_weights.to(logits)[safe]
    return (per_entry * weight).sum() / weight.sum().clamp(min=EPS)


def recon_loss(recon: dict[str, Tensor], inputs: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> Tensor:
    """Mean over modalities of the MSE between each reconstruction and its (normalised) input.

    `masks` (letter -> [B, T] bool, True = valid) leaves invalid steps out of their modality's MSE.
    """
    if not recon:
        raise LossInputError("recon_loss got no reconstructions (build the model with recon=True)")
    masks = masks or {}
    losses = []
    for m, r in recon.items():
        if m not in inputs or inputs[m].shape != r.shape:
            got = tuple(inputs[m].shape) if m in inputs else "nothing"
            raise LossInputError(f"recon_loss: reconstruction of {m!r} has shape {tuple(r.shape)}, input {got}")
        if m in masks:
            valid = masks[m][..., None].expand_as(r)
            losses.append(masked_mse(r, inputs[m], valid))
        else:
            losses.append(F.mse_loss(r, inputs[m]))
    return torch.stack(losses).mean()


def _check_same_shape(pred: Tensor, target: Tensor, mask: Tensor, name: str, ndim: int | None) -> None:
    if pred.shape != target.shape or pred.shape != mask.shape or (ndim is not None and pred.ndim != ndim):
        want = "[N, K] each" if ndim == 2 else "equal shapes"
        raise LossInputError(
            f"{name} needs pred, target, mask of {want}; got "
            f"{tuple(pred.shape)}, {tuple(target.shape)}, {tuple(mask.shape)}"
        )
    if mask.dtype != torch.bool:
        raise LossInputError(f"{name} needs a bool mask, got {mask.dtype}")
