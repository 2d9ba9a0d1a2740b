"""VideoPrism in Flax: shapes, parity with transformers' independent PyTorch port, the official npz layout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from flax import traverse_util

from fgvu.extract.encoders.base import EncoderError, file_sha256
from fgvu.extract.encoders.videoprism import VideoPrismEncoder, VideoPrismModel, load_videoprism
from fgvu.extract.encoders.videoprism_checkpoint import (
    expected_param_shapes,
    init_videoprism_params,
    save_videoprism_npz,
)
from fgvu.extract.encoders.videoprism_model import VIDEOPRISM_CONFIGS, VideoPrismConfig, transformers_vision_config

TINY = dict(VIDEOPRISM_CONFIGS["videoprism-tiny"])
CONFIG = VideoPrismConfig.from_dict(TINY)


@pytest.fixture(scope="module")
def params() -> dict:
    """Tiny random parameters, perturbed so that every tensor (norms and biases too) is non-trivial
    and attention logits are large enough for the cap to matter."""
    flat = traverse_util.flatten_dict(init_videoprism_params(CONFIG, seed=1), sep="/")
    rng = np.random.default_rng(3)
    for key, value in flat.items():
        scale = 0.5 if key.endswith(("/w", "/kernel")) else 0.2
        flat[key] = (value + rng.standard_normal(value.shape) * scale).astype(np.float32)
    return traverse_util.unflatten_dict(flat, sep="/")


@pytest.fixture(scope="module")
def model(params) -> VideoPrismModel:
    return VideoPrismModel(CONFIG, params, device="cpu")


def _to_transformers(params: dict, config: VideoPrismConfig) -> dict[str, torch.Tensor]:
    """Our (official) parameter tree -> transformers' VideoPrismVisionModel state dict."""
    p, d = config.patch_size, config.model_dim
    flat = traverse_util.flatten_dict(params, sep="/")
    out: dict[str, np.ndarray] = {}
    layer_names = {
        "layer_norm/scale": "layernorm_before.weight",
        "layer_norm/bias": "layernorm_before.bias",
        "ff_layer/layer_norm/scale": "layernorm_after.weight",
        "ff_layer/layer_norm/bias": "layernorm_after.bias",
        "ff_layer/ffn_layer1/linear/kernel": "mlp.fc1.weight",
        "ff_layer/ffn_layer1/linear/bias": "mlp.fc1.bias",
        "ff_layer/ffn_layer2/linear/kernel": "mlp.fc2.weight",
        "ff_layer/ffn_layer2/linear/bias": "mlp.fc2.bias",
    }
    projections = {"query": "q_proj", "key": "k_proj", "value": "v_proj", "post": "o_proj"}
    for key, value in flat.items():
        path = key.removeprefix("params/")
        if path == "patch_projection/linear/kernel":  # (P*P*3, D) -> Conv3d (D, 3, 1, P, P)
            out["spatial_embeddings.patch_embeddings.projection.weight"] = value.T.reshape(d, 1, p, p, 3).transpose(
                0, 4, 1, 2, 3
            )
        elif path == "patch_projection/linear/bias":
            out["spatial_embeddings.patch_embeddings.projection.bias"] = value
        elif path.endswith("_pos_emb/emb_var"):
            out[f"{path.split('_')[0]}_embeddings.position_embeddings"] = value[None]
        elif path in ("spatial_ln/scale", "spatial_ln/bias", "temporal_ln/scale", "temporal_ln/bias"):
            norm = "layernorm1" if path.startswith("spatial") else "layernorm2"
            out[f"{norm}.{'weight' if path.endswith('scale') else 'bias'}"] = value
        else:
            stack, inner = path.split("/transformers_stack/x_layers/")
            prefix = stack.replace("_encoder", "_layers")
            for i, layer in enumerate(value):
                name = f"{prefix}.{i}."
                if inner in layer_names:
                    is_kernel = inner.endswith("kernel")
                    out[name + layer_names[inner]] = layer.T if is_kernel else layer
                else:
                    _, proj, leaf = inner.split("/")
                    target = f"{name}attention.{projections[proj]}."
                    if leaf == "w":  # (D, N, H)
                        flat_w = layer.reshape(d, -1)
                        out[target + "weight"] = flat_w if proj == "post" else flat_w.T
                    else:
                        out[target + "bias"] = layer.reshape(-1)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


@pytest.fixture(scope="module")
def hf_model(params):
    from transformers import VideoPrismVisionModel

    hf = VideoPrismVisionModel(transformers_vision_config(CONFIG)).eval()
    hf.load_state_dict(_to_transformers(params, CONFIG), strict=True)
    return hf


@pytest.mark.parametrize(
    "frames, side",
    [(16, 72), (8, 90), (20, 54)],
    ids=["native", "fewer-frames-larger", "more-frames-smaller"],
)
def test_matches_transformers_videoprism(model, hf_model, frames, side):
    x = np.random.default_rng(0).random((2, frames, side, side, 3), dtype=np.float32)
    ours = np.asarray(model(x))
    interpolate = (frames, side) != (CONFIG.num_frames, CONFIG.resolution[0])
    with torch.no_grad():
        pixels = torch.from_numpy(x).permute(0, 1, 4, 2, 3)  # (B, T, C, H, W)
        theirs = hf_model(pixels, interpolate_pos_encoding=interpolate).last_hidden_state.numpy()
    n = (side // CONFIG.patch_size) ** 2
    assert ours.shape == theirs.shape == (2, frames * n, CONFIG.model_dim)
    assert np.abs(ours - theirs).max() <= 1e-4


def test_logit_cap_is_exercised(model, params):
    """The parity test would not notice a missing cap if the logits never reached it."""
    x = np.random.default_rng(0).random((1, 16, 72, 72, 3), dtype=np.float32)
    uncapped = VideoPrismModel(VideoPrismConfig.from_dict({**TINY, "atten_logit_cap": 0.0}), params, device="cpu")
    assert np.abs(np.asarray(model(x)) - np.asarray(uncapped(x))).max() > 1e-2


def test_npz_round_trip_uses_official_layout(tmp_path, params, model):
    path = tmp_path / "flax_tiny_repeated.npz"
    save_videoprism_npz(params, path)
    with np.load(path) as archive:
        keys = set(archive.files)
        stacked = archive["params/spatial_encoder/transformers_stack/x_layers/self_attention/query/w"]
    assert "params/patch_projection/linear/kernel" in keys
    assert "params/temporal_encoder/transformers_stack/x_layers/ff_layer/ffn_layer1/linear/kernel" in keys
    assert stacked.shape == (
        CONFIG.num_spatial_layers,
        CONFIG.model_dim,
        CONFIG.num_heads,
        CONFIG.model_dim // CONFIG.num_heads,
    )
    assert keys == set(expected_param_shapes(CONFIG))

    loaded = load_videoprism(path, TINY | {"scan": True}, device="cpu")  # official dicts carry `scan`
    x = np.random.default_rng(1).random((2, 16, 72, 72, 3), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))

    encoder = VideoPrismEncoder.from_npz(path, "videoprism-tiny", device="cpu")
    assert encoder.fingerprint["checkpoint"] == file_sha256(path)


def test_official_base_shapes():
    shapes = expected_param_shapes(VIDEOPRISM_CONFIGS["videoprism-base"])
    assert shapes["params/patch_projection/linear/kernel"] == (18 * 18 * 3, 768)
    assert shapes["params/spatial_pos_emb/emb_var"] == (256, 768)
    assert shapes["params/temporal_pos_emb/emb_var"] == (16, 768)
    assert shapes["params/spatial_encoder/transformers_stack/x_layers/ff_layer/ffn_layer1/linear/kernel"] == (
        12,
        768,
        3072,
    )
    assert shapes["params/temporal_encoder/transformers_stack/x_layers/self_attention/post/w"] == (4, 768, 12, 64)
    assert len(shapes) == 40


def test_checkpoint_errors_name_the_keys(tmp_path, params):
    flat = traverse_util.flatten_dict(params, sep="/")
    dropped = "params/temporal_ln/bias"
    resized = "params/spatial_pos_emb/emb_var"
    del flat[dropped]
    flat[resized] = np.zeros((7, CONFIG.model_dim), np.float32)
    flat["params/extra/w"] = np.zeros(3, np.float32)
    path = tmp_path / "broken.npz"
    save_videoprism_npz(traverse_util.unflatten_dict(flat, sep="/"), path)
    with pytest.raises(EncoderError) as info:
        load_videoprism(path, TINY)
    message = str(info.value)
    assert str(path) in message
    assert dropped in message and resized in message and "params/extra/w" in message
    assert "(7, 32)" in message and "(16, 32)" in message

    with pytest.raises(EncoderError, match="no such file"):
        load_videoprism(tmp_path / "absent.npz", TINY)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(EncoderError, match="not a readable"):
        load_videoprism(garbage, TINY)
    with pytest.raises(EncoderError, match="unknown keys"):
        VideoPrismConfig.from_dict({**TINY, "num_layers": 3})


@pytest.fixture(scope="module")
def tiny_encoder() -> VideoPrismEncoder:
    return VideoPrismEncoder.random("videoprism-tiny", device="cpu", batch_size=4)


def test_encoder_shapes_any_frame_size(tiny_encoder):
    clips = np.random.default_rng(2).integers(0, 256, (3, 16, 100, 80, 3), dtype=np.uint8)
    pooled = tiny_encoder.encode_clips(clips)
    tokens = tiny_encoder.encode_tokens(clips)
    assert pooled.shape == (3, 16, 32) and pooled.dtype == np.float32
    assert tokens.shape == (3, 16 * 16, 32)
    np.testing.assert_allclose(tokens.reshape(3, 16, 16, 32).mean(axis=2), pooled, atol=1e-5)
    assert tiny_encoder.fingerprint["checkpoint"] == "random-init:0"
    assert tiny_encoder.fingerprint["dim"] == 32
    # Other frame counts go through the temporal interpolation.
    assert tiny_encoder.encode_clips(clips[:, :8]).shape == (3, 8, 32)


def test_encoder_batching_and_determinism(tiny_encoder):
    """Chunking (batch_size 4) and padding to a power of two change nothing; uint8 == float/255."""
    clips = np.random.default_rng(3).integers(0, 256, (5, 16, 72, 72, 3), dtype=np.uint8)
    together = tiny_encoder.encode_clips(clips)  # chunks of 4 and 1
    padded = tiny_encoder.encode_clips(clips[:3])  # 3 padded to 4
    one_by_one = np.concatenate([tiny_encoder.encode_clips(clips[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    np.testing.assert_allclose(padded, one_by_one[:3], atol=1e-5)
    np.testing.assert_allclose(tiny_encoder.encode_clips(clips[:1].astype(np.float32) / 255.0), together[:1], atol=1e-5)
    again = VideoPrismEncoder.random("videoprism-tiny", device="cpu", batch_size=4)
    np.testing.assert_array_equal(again.encode_clips(clips[:1]), one_by_one[:1])
    assert np.abs(together[0] - together[1]).max() > 1e-3  # different clips, different features
    assert tiny_encoder.encode_clips(clips[:0]).shape == (0, 16, 32)


def test_encoder_rejects_bad_frames(tiny_encoder):
    with pytest.raises(EncoderError, match="shaped"):
        tiny_encoder.encode_clips(np.zeros((2, 72, 72, 3), np.uint8))
    with pytest.raises(EncoderError, match="uint8 or float"):
        tiny_encoder.encode_clips(np.zeros((1, 16, 72, 72, 3), np.int32))
    with pytest.raises(EncoderError, match=r"\[0, 1\]"):
        tiny_encoder.encode_clips(np.full((1, 16, 72, 72, 3), 255.0, np.float32))
