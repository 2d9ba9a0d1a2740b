"""The stage-2 fusion head: per-modality GRUs, a fusion block, and a per-step MLP head.

Reading order, top to bottom:

1. `ModalityEncoder`: LayerNorm + Linear to `d_model`, then a GRU over the modality's steps
   (video 16, image 16, text 4 per window); bidirectional: d_model / 2 units per direction.
2. `CrossAttention`: one attention stage, `LN(query + Dropout(MHA(query, context, context)))`.
3. `FusionModel`: encodes every modality, fuses them onto the query modality's steps, and
   maps every step through an MLP head (tanh valence/arousal, or class logits).

Fusions (`ModelConfig.fusion`), with `q` the query modality and `c` the others:

- `xattn` (the paper's): `a_c = CrossAttention(h_q, h_c)` for each other modality, then
  `[h_q ; a_c ...]` per step -> MLP. `stages` says how the attention stages chain:
  `parallel` (the default) runs every stage from the query's GRU states, as above;
  `sequential` feeds each stage's result to the next, in registry order (with image queries:
  `a_v = CA(h_i, h_v)`, then `a_t = CA(a_v, h_t)`), then the same `[h_q ; a_v ; a_t]` -> MLP.
  The paper's "two-stage" attention reads either way; both have the same parameters.
- `xattn-sym` (the bidirectional variant): every modality's sequence attends to every other
  modality's sequence (one stage per ordered pair, all with residual + LayerNorm). Stages whose
  query is not `q` produce sequences on their own time grid; they are resampled onto `q`'s
  steps by linear interpolation along time (`resample_steps`), then
  `[h_q ; a_{q<-c} ... ; a_{a<-b} ...]` -> MLP. So information flows both ways (e.g. video
  states are refined by the image stream before they reach the head), and `xattn` is exactly
  the subset of stages whose query is `q`.
- `concat` (the baseline): `[h_q(t) ; mean over time of h_c ...]` per step -> MLP; no
  attention.

With one modality the fusion is the identity (its GRU states go straight to the MLP).

Time grids: a modality with `T` steps per window has step `k` at frame `k * window / T`
(left-aligned, like the sampling plan), so step `k` of the output lies at frame
`start + k * window // S`, where `S` is the query modality's length.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fgvu.errors import FgvuError
from fgvu.fusion.config import Fusion, ModelConfig, Stages
from fgvu.modalities import BY_NAME, MODALITIES, query_letter
from fgvu.tasks import TASKS

FUSIONS = typing.get_args(Fusion)
STAGES = typing.get_args(Stages)


class FusionModelError(ValueError):
    """A model configuration or an input batch that the fusion model cannot use."""


class FusionConfigError(FgvuError, FusionModelError):
    """A model configuration (from the user's options) that cannot be built."""


@dataclass
class FusionOutput:
    """What `FusionModel.forward` returns.

    steps: [B, S, n_outputs], S the query modality's length: tanh valence/arousal, or logits.
    recon: letter -> reconstruction of that modality's input [B, T_m, D_m] (None unless cfg.recon).
    attention: head-averaged attention weights, for inspection. `xattn`: context letter ->
        [B, S, T_c]; `xattn-sym`: the same for the query's stages plus "a<-b" -> [B, T_a, T_b]
        for every other ordered pair; empty for `concat` and a single modality.
    """

    steps: Tensor
    recon: dict[str, Tensor] | None
    attention: dict[str, Tensor]


def pool_steps(steps: Tensor) -> Tensor:
    """Window-level output [B, n_outputs]: the mean over the steps of [B, S, n_outputs]."""
    return steps.mean(dim=1)


def resample_steps(x: Tensor, length: int) -> Tensor:
    """Linearly interpolate [B, T, D] along time onto `length` left-aligned steps.

    Source step `j` sits at window fraction j/T and target step `k` at k/length, so target `k`
    reads source position `k * T / length` (clamped at the last step). Downsampling by an
    integer factor picks every n-th step, as the sampling plan's sub-grids do.
    """
    steps = x.shape[1]
    if steps == length:
        return x
    pos = torch.arange(length, device=x.device, dtype=x.dtype) * (steps / length)
    lo = pos.floor().long().clamp(max=steps - 1)
    hi = (lo + 1).clamp(max=steps - 1)
    w = (pos - lo.to(x.dtype)).clamp(0.0, 1.0)[None, :, None]
    return x[:, lo] * (1 - w) + x[:, hi] * w


class ModalityEncoder(nn.Module):
    """LayerNorm + Linear to d_model, then a GRU over the modality's sequence.

    A bidirectional GRU has d_model / 2 units per direction, so the concatenated states are
    d_model wide without a further projection; this halves the recurrent cost (the training
    step's largest part on CPU) compared with d_model units per direction plus a projection.
    """

    def __init__(self, in_dim: int, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(
            d, d // 2 if cfg.bidirectional else d, num_layers=cfg.gru_layers, batch_first=True,
            bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.gru_layers > 1 else 0.0,
        )

    def forward(self, x: Tensor) -> Tensor:
        """[B, T, in_dim] -> GRU states [B, T, d_model] (both directions concatenated)."""
        states, _ = self.gru(self.drop(self.proj(self.norm(x))))
        return states


class CrossAttention(nn.Module):
    """One attention stage: LN(query + Dropout(MHA(q=query, k=v=context))), over whole sequences."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        # dropout on the attention output, not on the weights, so the returned weights are exact
        self.mha = nn.MultiheadAttention(cfg.d_model, cfg.heads, batch_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, query: Tensor, context: Tensor, context_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """[B, S, d], [B, T, d] -> (attended [B, S, d], head-averaged weights [B, S, T]).

        `context_mask` [B, T] (True = valid) keeps invalid context steps out of attention; a
        sample with no valid context step attends to nothing (zero attended, zero weights).
        """
        if context_mask is None:
            attended, weights = self.mha(query, context, context, need_weights=True, average_attn_weights=True)
            return self.norm(query + self.drop(attended)), weights
        empty = ~context_mask.any(dim=1)  # all keys masked would give NaN: open them, then zero the result
        ignore = ~context_mask & ~empty[:, None]
        attended, weights = self.mha(query, context, context, key_padding_mask=ignore, need_weights=True,
                                     average_attn_weights=True)
        keep = (~empty).to(attended.dtype)[:, None, None]
        return self.norm(query + self.drop(attended * keep)), weights * keep


class FusionModel(nn.Module):
    """Per-modality GRUs, a fusion block (xattn | xattn-sym | concat) and a per-step MLP head."""

    def __init__(self, cfg: ModelConfig, dims: dict[str, int], n_outputs: int, task: str):
        """cfg: the model config; dims: letter -> input feature dim for each of cfg.modalities;
        n_outputs: the task's outputs per step (`fgvu.tasks`); task: a task name (va, violence)."""
        super().__init__()
        _check_config(cfg, dims, n_outputs, task)
        self.cfg = cfg
        self.task = task
        self._task = TASKS[task]
        self.dims = {m: int(dims[m]) for m in cfg.modalities}
        # registry order, so ("i", "v") and ("v", "i") build the same model
        self.modalities = tuple(m for m in MODALITIES if m in cfg.modalities)
        self.query = query_letter(cfg.query, self.modalities)
        self.context = tuple(m for m in self.modalities if m != self.query)
        self.encoders = nn.ModuleDict({m: ModalityEncoder(self.dims[m], cfg) for m in self.modalities})

        if len(self.modalities) == 1 or cfg.fusion == "concat":
            self.stages = nn.ModuleDict()
            n_parts = len(self.modalities)
        elif cfg.fusion == "xattn":
            self.stages = nn.ModuleDict({c: CrossAttention(cfg) for c in self.context})
            n_parts = 1 + len(self.context)
        else:  # xattn-sym: one stage per ordered pair, keyed "<query letter><context letter>"
            pairs = [a + b for a in self.modalities for b in self.modalities if a != b]
            self.stages = nn.ModuleDict({p: CrossAttention(cfg) for p in pairs})
            n_parts = 1 + len(pairs)
        self.fused_dim = n_parts * cfg.d_model

        self.head = nn.Sequential(
            nn.Linear(self.fused_dim, cfg.mlp_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.mlp_hidden, n_outputs),
        )
        # autoencoding: a linear map from the fused per-step representation back to each input
        self.decoders = (
            nn.ModuleDict({m: nn.Linear(self.fused_dim, self.dims[m]) for m in self.modalities})
            if cfg.recon else None
        )

    def forward(self, inputs: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> FusionOutput:
        """inputs: letter -> [B, T_m, D_m] float features (normalised) for every model modality;
        masks: letter -> [B, T_m] bool (True = valid) for modalities with invalid steps (a
        soundtrack's gaps), which then enter their GRU as zeros and are left out of attention
        and pooling."""
        self._check_inputs(inputs)
        masks = {m: x for m, x in (masks or {}).items() if m in self.modalities}
        # an invalid step carries nothing into its GRU, whatever the caller put there
        inputs = {m: inputs[m] * masks[m][..., None].to(inputs[m].dtype) if m in masks else inputs[m]
                  for m in self.modalities}
        states = {m: self.encoders[m](inputs[m]) for m in self.modalities}
        fused, attention = self._fuse(states, masks)
        steps = self._task.activate(self.head(fused))
        recon = None
        if self.decoders is not None:
            recon = {m: self.decoders[m](resample_steps(fused, inputs[m].shape[1])) for m in self.modalities}
        return FusionOutput(steps=steps, recon=recon, attention=attention)

    def _fuse(self, states: dict[str, Tensor], masks: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """GRU states -> fused per-step representation [B, S, fused_dim] and attention weights."""
        masks = masks or {}
        h_q = states[self.query]
        if not self.context:  # one modality: identity fusion
            return h_q, {}
        parts, attention = [h_q], {}
        if self.cfg.fusion == "concat":
            parts += [_masked_mean(states[c], masks.get(c)).expand(-1, h_q.shape[1], -1) for c in self.context]
        elif self.cfg.fusion == "xattn":
            query = h_q
            for c in self.context:
                attended, attention[c] = self.stages[c](query, states[c], masks.get(c))
                parts.append(attended)
                if self.cfg.stages == "sequential":  # the next stage queries from this one's result
                    query = attended
        else:  # xattn-sym
            for pair, stage in self.stages.items():
                a, b = pair
                attended, weights = stage(states[a], states[b], masks.get(b))
                attention[b if a == self.query else f"{a}<-{b}"] = weights
                parts.append(resample_steps(attended, h_q.shape[1]))
        return torch.cat(parts, dim=-1), attention

    def _check_inputs(self, inputs: dict[str, Tensor]) -> None:
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise FusionModelError(f"fusion model inputs lack modalities {missing}; got {sorted(inputs)}")
        batch = inputs[self.modalities[0]].shape[0]
        for m in self.modalities:
            x = inputs[m]
            if x.ndim != 3 or x.shape[2] != self.dims[m] or x.shape[0] != batch or x.shape[1] < 1:
                raise FusionModelError(
                    f"fusion model input {m!r} has shape {tuple(x.shape)}; expected [{batch}, T, {self.dims[m]}]"
                )


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    """[B, T, d] -> [B, 1, d]: the mean over the valid steps (zeros for a sample with none)."""
    if mask is None:
        return x.mean(dim=1, keepdim=True)
    w = mask.to(x.dtype)[..., None]
    return (x * w).sum(dim=1, keepdim=True) / w.sum(dim=1, keepdim=True).clamp(min=1.0)


def _check_config(cfg: ModelConfig, dims: dict[str, int], n_outputs: int, task: str) -> None:
    problems = []
    unknown = [m for m in cfg.modalities if m not in MODALITIES]
    if unknown or not cfg.modalities or len(set(cfg.modalities)) != len(cfg.modalities):
        problems.append(f"modalities {list(cfg.modalities)} must be distinct letters of {sorted(MODALITIES)}")
    if cfg.fusion not in FUSIONS:
        problems.append(f"unknown fusion {cfg.fusion!r} ({', '.join(FUSIONS)})")
    if cfg.query not in BY_NAME:
        problems.append(f"unknown query {cfg.query!r} ({', '.join(BY_NAME)})")
    if cfg.stages not in STAGES:
        problems.append(f"unknown stages {cfg.stages!r} ({', '.join(STAGES)})")
    elif cfg.stages == "sequential" and cfg.fusion != "xattn":
        problems.append(f"--stages sequential chains xattn's stages; fusion {cfg.fusion} has no such chain")
    if cfg.d_model < 1 or cfg.heads < 1 or cfg.d_model % cfg.heads:
        problems.append(f"d_model {cfg.d_model} must be a positive multiple of heads {cfg.heads}")
    if cfg.bidirectional and cfg.d_model % 2:
        problems.append(f"a bidirectional GRU needs an even d_model (d_model / 2 per direction), not {cfg.d_model}")
    if cfg.gru_layers < 1 or cfg.mlp_hidden < 1 or not 0.0 <= cfg.dropout < 1.0:
        problems.append("gru_layers and mlp_hidden must be >= 1 and dropout in [0, 1)")
    if missing := [m for m in cfg.modalities if m in MODALITIES and int(dims.get(m, 0)) < 1]:
        problems.append(f"no input dim for modalities {missing} (dims {dims})")
    if task not in TASKS:
        problems.append(f"unknown task {task!r} ({', '.join(TASKS)})")
    elif n_outputs != TASKS[task].n_outputs:
        problems.append(f"task {task} has {TASKS[task].n_outputs} outputs, not {n_outputs}")
    if problems:
        raise FusionConfigError("invalid fusion model config: " + "; ".join(problems))
