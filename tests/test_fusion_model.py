"""Tests of fgvu.fusion.model: shapes for every configuration, real attention, hand-checked stages."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from fgvu.fusion.config import ModelConfig
from fgvu.fusion.model import (
    CrossAttention,
    FusionModel,
    FusionModelError,
    pool_steps,
    resample_steps,
)

DIMS = {"v": 12, "i": 10, "t": 8}
LENGTHS = {"v": 16, "i": 16, "t": 4}
SUBSETS = [c for r in (1, 2, 3) for c in itertools.combinations("vit", r)]
QUERY_LETTER = {"image": "i", "video": "v", "text": "t"}


def small_config(**kw) -> ModelConfig:
    base = dict(d_model=16, heads=2, mlp_hidden=24, dropout=0.0)
    return ModelConfig(**{**base, **kw})


def batch(modalities, b=3, lengths=LENGTHS, seed=0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {m: torch.randn(b, lengths[m], DIMS[m], generator=g) for m in modalities}


def expected_query(query: str, modalities) -> str:
    letter = QUERY_LETTER[query]
    return letter if letter in modalities else next(m for m in "ivt" if m in modalities)


@pytest.mark.parametrize("fusion", ["xattn", "xattn-sym", "concat"])
@pytest.mark.parametrize("query", ["image", "video", "text"])
@pytest.mark.parametrize("modalities", SUBSETS, ids="".join)
def test_output_shapes_for_every_fusion_query_and_subset(fusion, query, modalities):
    torch.manual_seed(0)
    model = FusionModel(small_config(modalities=modalities, fusion=fusion, query=query, recon=True),
                        {m: DIMS[m] for m in modalities}, 2, "va")
    out = model(batch(modalities))
    q = expected_query(query, modalities)
    assert model.query == q
    S = LENGTHS[q]
    assert out.steps.shape == (3, S, 2)
    assert out.steps.abs().max() < 1  # tanh head
    assert {m: r.shape for m, r in out.recon.items()} == {m: (3, LENGTHS[m], DIMS[m]) for m in modalities}
    others = [m for m in modalities if m != q]
    if len(modalities) == 1 or fusion == "concat":
        assert out.attention == {}
        return
    want = {c: (3, S, LENGTHS[c]) for c in others}
    if fusion == "xattn-sym":
        want |= {f"{a}<-{b}": (3, LENGTHS[a], LENGTHS[b]) for a in others for b in modalities if b != a}
    assert {k: w.shape for k, w in out.attention.items()} == want
    for w in out.attention.values():  # rows of attention weights are distributions
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


def test_violence_head_gives_unbounded_logits_and_other_lengths():
    torch.manual_seed(0)
    model = FusionModel(small_config(), DIMS, 2, "violence")
    lengths = {"v": 32, "i": 8, "t": 2}
    out = model(batch("vit", b=2, lengths=lengths))
    assert out.steps.shape == (2, 8, 2) and out.recon is None
    assert out.attention["v"].shape == (2, 8, 32) and out.attention["t"].shape == (2, 8, 2)
    with torch.no_grad():
        model.head[-1].bias.fill_(5.0)
    assert model(batch("vit", b=2, lengths=lengths)).steps.min() > 1  # no tanh on logits


def test_xattn_attends_over_whole_sequences():
    torch.manual_seed(0)
    # one-directional GRUs: the last video step can reach early image steps only through attention
    model = FusionModel(small_config(bidirectional=False), DIMS, 2, "va").eval()
    x = batch("vit")
    out = model(x)
    w_v = out.attention["v"]  # [B, 16 image steps, 16 video steps]
    # the weights over the video tokens differ from one query step to the next
    assert (w_v[:, 1:] - w_v[:, :1]).abs().amax() > 1e-3
    # ... and move when the image stream changes
    x_img = dict(x, i=x["i"] + torch.randn_like(x["i"]))
    assert (model(x_img).attention["v"] - w_v).abs().amax() > 1e-3
    # changing only the last video step changes the prediction at the first image step
    x_vid = dict(x, v=x["v"].clone())
    x_vid["v"][:, -1] = torch.randn_like(x_vid["v"][:, -1])
    assert (model(x_vid).steps[:, 0] - out.steps[:, 0]).abs().amax() > 1e-5


def test_attention_stage_matches_hand_computation():
    torch.manual_seed(0)
    cfg = small_config(d_model=8, heads=2)
    stage = CrossAttention(cfg).eval()
    with torch.no_grad():  # non-trivial LayerNorm parameters
        stage.norm.weight.uniform_(0.5, 1.5)
        stage.norm.bias.uniform_(-0.5, 0.5)
    q, ctx = torch.randn(2, 5, 8), torch.randn(2, 7, 8)
    out, weights = stage(q, ctx)

    d, h = 8, 2
    dh = d // h
    w_q, w_k, w_v = stage.mha.in_proj_weight.split(d)
    b_q, b_k, b_v = stage.mha.in_proj_bias.split(d)

    def heads(x):  # [B, L, d] -> [B, h, L, dh]
        return x.reshape(x.shape[0], x.shape[1], h, dh).transpose(1, 2)

    Q, K, V = heads(q @ w_q.T + b_q), heads(ctx @ w_k.T + b_k), heads(ctx @ w_v.T + b_v)
    scores = Q @ K.transpose(-1, -2) / math.sqrt(dh)
    attn = torch.exp(scores - scores.amax(-1, keepdim=True))
    attn = attn / attn.sum(-1, keepdim=True)  # explicit softmax
    mixed = (attn @ V).transpose(1, 2).reshape(2, 5, d)
    attended = mixed @ stage.mha.out_proj.weight.T + stage.mha.out_proj.bias
    y = q + attended
    mu, var = y.mean(-1, keepdim=True), y.var(-1, unbiased=False, keepdim=True)
    expected = (y - mu) / torch.sqrt(var + stage.norm.eps) * stage.norm.weight + stage.norm.bias

    torch.testing.assert_close(weights, attn.mean(1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_xattn_sym_uses_both_directions():
    torch.manual_seed(0)
    model = FusionModel(small_config(modalities=("v", "i"), fusion="xattn-sym"), DIMS, 2, "va")
    assert set(model.stages) == {"vi", "iv"}
    model(batch("vi")).steps.square().sum().backward()
    # the reverse stage (video queries image) feeds the head
    assert model.stages["vi"].mha.in_proj_weight.grad.abs().sum() > 0
    assert model.stages["iv"].mha.in_proj_weight.grad.abs().sum() > 0
    xattn = FusionModel(small_config(modalities=("v", "i")), DIMS, 2, "va")
    assert set(xattn.stages) == {"v"}
    assert model.fused_dim == 3 * 16 and xattn.fused_dim == 2 * 16


def test_concat_fuses_query_steps_with_pooled_context():
    torch.manual_seed(0)
    model = FusionModel(small_config(fusion="concat"), DIMS, 2, "va")
    states = {m: torch.randn(2, LENGTHS[m], 16) for m in "vit"}
    fused, attention = model._fuse(states)
    expected = torch.cat(
        [states["i"], states["v"].mean(1, keepdim=True).expand(-1, 16, -1),
         states["t"].mean(1, keepdim=True).expand(-1, 16, -1)], dim=-1)
    torch.testing.assert_close(fused, expected)
    assert attention == {}


def test_single_modality_fusion_is_identity():
    model = FusionModel(small_config(modalities=("t",)), DIMS, 2, "va")
    states = {"t": torch.randn(2, 4, 16)}
    fused, attention = model._fuse(states)
    assert fused is states["t"] and attention == {}


def test_same_seed_same_model_and_outputs_in_training_mode():
    def run():
        torch.manual_seed(7)
        model = FusionModel(small_config(dropout=0.3, recon=True), DIMS, 2, "va").train()
        return model(batch("vit"))

    a, b = run(), run()
    torch.testing.assert_close(a.steps, b.steps, rtol=0, atol=0)
    torch.testing.assert_close(a.recon["v"], b.recon["v"], rtol=0, atol=0)


def test_pool_steps_is_the_mean_over_steps():
    steps = torch.randn(4, 16, 2)
    torch.testing.assert_close(pool_steps(steps), steps.mean(1))
    assert pool_steps(steps).shape == (4, 2)


def test_resample_steps_follows_left_aligned_grids():
    x = torch.arange(4.0).reshape(1, 4, 1)  # text steps at frames 0, 16, 32, 48
    up = resample_steps(x, 16)[0, :, 0]  # image steps at frames 0, 4, ..., 60
    torch.testing.assert_close(up[:13], torch.arange(13.0) / 4)
    torch.testing.assert_close(up[12:], torch.full((4,), 3.0))  # past the last step: hold it
    x32 = torch.randn(2, 32, 3)
    torch.testing.assert_close(resample_steps(x32, 16), x32[:, ::2])  # every second step
    assert resample_steps(x32, 32) is x32


def test_bad_configs_and_inputs_raise_clear_errors():
    with pytest.raises(FusionModelError, match="modalities"):
        FusionModel(small_config(modalities=("v", "x")), DIMS, 2, "va")
    with pytest.raises(FusionModelError, match="multiple of heads"):
        FusionModel(small_config(d_model=10, heads=4), DIMS, 2, "va")
    with pytest.raises(FusionModelError, match="even d_model"):
        FusionModel(small_config(d_model=9, heads=1), DIMS, 2, "va")
    FusionModel(small_config(d_model=9, heads=1, bidirectional=False), DIMS, 2, "va")
    with pytest.raises(FusionModelError, match="no input dim"):
        FusionModel(small_config(), {"v": 4, "i": 4}, 2, "va")
    with pytest.raises(FusionModelError, match="unknown task"):
        FusionModel(small_config(), DIMS, 2, "emotion")
    with pytest.raises(FusionModelError, match="outputs"):
        FusionModel(small_config(), DIMS, 3, "violence")
    model = FusionModel(small_config(), DIMS, 2, "va")
    with pytest.raises(FusionModelError, match="lack modalities"):
        model(batch("vi"))
    x = batch("vit")
    x["t"] = torch.randn(3, 4, 5)
    with pytest.raises(FusionModelError, match="'t' has shape"):
        model(x)


def test_reconstruction_trains_encoders_and_fusion_through_the_fused_representation():
    from fgvu.fusion.losses import recon_loss

    torch.manual_seed(0)
    model = FusionModel(small_config(recon=True), DIMS, 2, "va")
    x = batch("vit")
    recon_loss(model(x).recon, x).backward()
    assert model.decoders["t"].weight.grad.abs().sum() > 0
    assert model.encoders["v"].proj.weight.grad.abs().sum() > 0
    assert model.stages["t"].mha.in_proj_weight.grad.abs().sum() > 0
    assert model.head[0].weight.grad is None  # the task head is not part of the decoder


def test_sequential_stages_chain_image_to_video_then_that_result_to_text():
    torch.manual_seed(0)
    parallel = FusionModel(small_config(), DIMS, 2, "va").eval()
    sequential = FusionModel(small_config(stages="sequential"), DIMS, 2, "va").eval()
    sequential.load_state_dict(parallel.state_dict())  # the same parameters, only the wiring differs
    x = batch("vit")
    with torch.no_grad():
        states = {m: sequential.encoders[m](x[m]) for m in "vit"}
        a_v, _ = sequential.stages["v"](states["i"], states["v"])
        a_t, _ = sequential.stages["t"](a_v, states["t"])  # queries from the video stage's result
        by_hand = sequential.head(torch.cat([states["i"], a_v, a_t], dim=-1))
        a_t_parallel, _ = parallel.stages["t"](states["i"], states["t"])
        parallel_by_hand = parallel.head(torch.cat([states["i"], a_v, a_t_parallel], dim=-1))
        torch.testing.assert_close(sequential(x).steps, torch.tanh(by_hand))
        torch.testing.assert_close(parallel(x).steps, torch.tanh(parallel_by_hand))
        assert not torch.allclose(sequential(x).steps, parallel(x).steps)
    with pytest.raises(FusionModelError, match="--stages sequential chains xattn's stages"):
        FusionModel(small_config(stages="sequential", fusion="concat"), DIMS, 2, "va")
