"""VideoPrism's architecture in Flax: the official configurations and the factorized video encoder.

The architecture follows the public VideoPrism release (google-deepmind/videoprism), which this
module re-implements; it does not import that package:

- each frame is cut into 18x18 patches (16x16 = 256 patches at 288 px), flattened in (row, col,
  channel) order and projected linearly; a learned spatial position embedding is added;
- a spatial transformer runs over the patches of each frame, then a LayerNorm;
- the tokens are regrouped per patch position, a learned temporal position embedding is added,
  and a temporal transformer runs over the frames, then a LayerNorm;
- transformer blocks are pre-norm; attention queries are scaled by 1/sqrt(d_head) (no learned
  per-dimension scale in the video encoder), logits are capped with cap * tanh(logits / cap)
  (cap 50), the softmax runs in float32; the MLP uses exact (erf) GELU;
- LayerNorms have epsilon 1e-6 and store their scale as an offset from 1 (y * (1 + scale) + bias).

Module and parameter names are the official Flax paths, so an official `.npz` loads without
renaming (`videoprism_checkpoint`). Other frame counts interpolate the temporal position
embedding, other resolutions the spatial one (bilinear, as the original).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from fgvu.extract.encoders.base import EncoderError
from fgvu.extract.encoders.device import configure_jax_memory

configure_jax_memory()  # before jax initialises a backend, so it never pre-allocates the GPU

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

# The official configurations (videoprism/models.py), under our names.
VIDEOPRISM_CONFIGS: dict[str, dict[str, Any]] = {
    "videoprism-base": dict(
        patch_size=18,
        pos_emb_shape=(16, 16, 16),
        model_dim=768,
        num_spatial_layers=12,
        num_temporal_layers=4,
        num_heads=12,
        mlp_dim=3072,
        atten_logit_cap=50.0,
    ),
    "videoprism-large": dict(
        patch_size=18,
        pos_emb_shape=(8, 16, 16),
        model_dim=1024,
        num_spatial_layers=24,
        num_temporal_layers=4,
        num_heads=16,
        mlp_dim=4096,
        atten_logit_cap=50.0,
    ),
    # Same code at a small size with random weights, for tests and the offline demo: 72 px, 16 frames.
    "videoprism-tiny": dict(
        patch_size=18,
        pos_emb_shape=(16, 4, 4),
        model_dim=32,
        num_spatial_layers=2,
        num_temporal_layers=1,
        num_heads=2,
        mlp_dim=64,
        atten_logit_cap=50.0,
    ),
}

_LAYERNORM_EPSILON = 1e-6
# Official keys that describe how the original builds its layers, not the model itself.
_IGNORED_CONFIG_KEYS = {"scan"}


@dataclass(frozen=True)
class VideoPrismConfig:
    """The official configuration keys of the factorized encoder."""

    patch_size: int
    pos_emb_shape: tuple[int, int, int]  # (frames, rows, columns) of the learned position embeddings
    model_dim: int
    num_spatial_layers: int
    num_temporal_layers: int
    num_heads: int
    mlp_dim: int
    atten_logit_cap: float

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> VideoPrismConfig:
        """Build from a dict with the official keys (`scan` is accepted and ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = set(config) - known - _IGNORED_CONFIG_KEYS
        missing = known - set(config)
        if unknown or missing:
            raise EncoderError(
                f"VideoPrism config: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}; "
                f"expected {sorted(known)}"
            )
        values = {k: config[k] for k in known}
        values["pos_emb_shape"] = tuple(int(v) for v in values["pos_emb_shape"])
        if len(values["pos_emb_shape"]) != 3:
            raise EncoderError(f"VideoPrism config: pos_emb_shape must be (T, H, W), got {config['pos_emb_shape']}")
        if values["model_dim"] % values["num_heads"]:
            raise EncoderError(
                f"VideoPrism config: model_dim {values['model_dim']} is not a multiple of "
                f"num_heads {values['num_heads']}"
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The official-key dict."""
        out = asdict(self)
        out["pos_emb_shape"] = list(self.pos_emb_shape)
        return out

    @property
    def num_frames(self) -> int:
        return self.pos_emb_shape[0]

    @property
    def resolution(self) -> tuple[int, int]:
        """(height, width) in pixels at which the spatial position embedding needs no interpolation."""
        return self.pos_emb_shape[1] * self.patch_size, self.pos_emb_shape[2] * self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.pos_emb_shape[1] * self.pos_emb_shape[2]


def as_config(config: VideoPrismConfig | dict[str, Any]) -> VideoPrismConfig:
    """`config` itself, or the VideoPrismConfig of a dict with the official keys."""
    return config if isinstance(config, VideoPrismConfig) else VideoPrismConfig.from_dict(config)


# ----------------------------------------------------------------------------------------------
# Flax modules. Module and parameter names are the official ones: they are the npz keys.


class _LayerNorm(nn.Module):
    """LayerNorm whose scale is stored as an offset from 1; statistics in float32."""

    @nn.compact
    def __call__(self, x):
        dim = x.shape[-1]
        scale = self.param("scale", nn.initializers.zeros_init(), (dim,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros_init(), (dim,), jnp.float32)
        x32 = x.astype(jnp.float32)
        mean = x32.mean(axis=-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + _LAYERNORM_EPSILON)
        y = y * (1.0 + scale.astype(jnp.float32)) + bias.astype(jnp.float32)
        return y.astype(x.dtype)


class _Linear(nn.Module):
    """A dense layer kept under an inner `linear` scope, as the official FeedForward layer."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.features, name="linear", dtype=x.dtype)(x)


class _HeadsProjection(nn.Module):
    """(..., D) -> (..., heads, head_dim): w (D, N, H), b (N, H)."""

    num_heads: int
    head_dim: int

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2))
        w = self.param("w", init, (x.shape[-1], self.num_heads, self.head_dim), jnp.float32)
        b = self.param("b", nn.initializers.zeros_init(), (self.num_heads, self.head_dim), jnp.float32)
        return jnp.einsum("...d,dnh->...nh", x, w.astype(x.dtype)) + b.astype(x.dtype)


class _OutputProjection(nn.Module):
    """(..., heads, head_dim) -> (..., D): w (D, N, H), b (D,)."""

    model_dim: int

    @nn.compact
    def __call__(self, x):
        init = nn.initializers.lecun_normal(in_axis=(1, 2), out_axis=0)
        w = self.param("w", init, (self.model_dim, x.shape[-2], x.shape[-1]), jnp.float32)
        b = self.param("b", nn.initializers.zeros_init(), (self.model_dim,), jnp.float32)
        return jnp.einsum("...nh,dnh->...d", x, w.astype(x.dtype)) + b.astype(x.dtype)


class _SelfAttention(nn.Module):
    num_heads: int
    atten_logit_cap: float

    @nn.compact
    def __call__(self, x):
        model_dim = x.shape[-1]
        head_dim = model_dim // self.num_heads
        query = _HeadsProjection(self.num_heads, head_dim, name="query")(x)
        key = _HeadsProjection(self.num_heads, head_dim, name="key")(x)
        value = _HeadsProjection(self.num_heads, head_dim, name="value")(x)
        query = query * jnp.asarray(head_dim**-0.5, dtype=x.dtype)
        logits = jnp.einsum("bsnh,btnh->bnst", query, key).astype(jnp.float32)
        if self.atten_logit_cap > 0:
            logits = self.atten_logit_cap * jnp.tanh(logits / self.atten_logit_cap)
        probs = jax.nn.softmax(logits, axis=-1).astype(x.dtype)
        context = jnp.einsum("bnst,btnh->bsnh", probs, value)
        return _OutputProjection(model_dim, name="post")(context)


class _FeedForwardBlock(nn.Module):
    """Pre-norm MLP with its residual connection."""

    mlp_dim: int

    @nn.compact
    def __call__(self, x):
        y = _LayerNorm(name="layer_norm")(x)
        y = _Linear(self.mlp_dim, name="ffn_layer1")(y)
        y = jax.nn.gelu(y, approximate=False)
        y = _Linear(x.shape[-1], name="ffn_layer2")(y)
        return x + y


class _TransformerBlock(nn.Module):
    """One pre-norm block; the (carry, unused) signature lets `nn.scan` stack the layers."""

    mlp_dim: int
    num_heads: int
    atten_logit_cap: float

    @nn.compact
    def __call__(self, x, _):
        y = _LayerNorm(name="layer_norm")(x)
        x = x + _SelfAttention(self.num_heads, self.atten_logit_cap, name="self_attention")(y)
        x = _FeedForwardBlock(self.mlp_dim, name="ff_layer")(x)
        return x, None


class _StackedTransformer(nn.Module):
    num_layers: int
    mlp_dim: int
    num_heads: int
    atten_logit_cap: float

    @nn.compact
    def __call__(self, x):
        layers = nn.scan(
            _TransformerBlock,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            length=self.num_layers,
        )
        x, _ = layers(self.mlp_dim, self.num_heads, self.atten_logit_cap, name="x_layers")(x, None)
        return x


class _Transformer(nn.Module):
    """The `<spatial|temporal>_encoder/transformers_stack` scope of the original."""

    num_layers: int
    mlp_dim: int
    num_heads: int
    atten_logit_cap: float

    @nn.compact
    def __call__(self, x):
        stack = _StackedTransformer(
            self.num_layers, self.mlp_dim, self.num_heads, self.atten_logit_cap, name="transformers_stack"
        )
        return stack(x)


class _PositionEmbedding(nn.Module):
    length: int
    dim: int

    @nn.compact
    def __call__(self):
        return self.param("emb_var", nn.initializers.lecun_normal(), (self.length, self.dim), jnp.float32)


def _patchify(frames, patch_size: int):
    """(N, H, W, C) -> (N, H/P * W/P, P*P*C), patches in row-major order, pixels in (row, col, channel) order."""
    n, h, w, c = frames.shape
    rows, cols = h // patch_size, w // patch_size
    x = frames.reshape(n, rows, patch_size, cols, patch_size, c)
    x = x.transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, rows * cols, patch_size * patch_size * c)


class FactorizedVideoEncoder(nn.Module):
    """VideoPrism's factorized space-time encoder: (B, T, H, W, 3) in [0, 1] -> (B, T*N, D)."""

    config: VideoPrismConfig

    @nn.compact
    def __call__(self, frames):
        cfg = self.config
        b, t, h, w, c = frames.shape
        if h % cfg.patch_size or w % cfg.patch_size:
            raise EncoderError(f"VideoPrism: frame size {h}x{w} is not a multiple of the patch size {cfg.patch_size}")
        rows, cols = h // cfg.patch_size, w // cfg.patch_size
        n = rows * cols
        block_args = dict(mlp_dim=cfg.mlp_dim, num_heads=cfg.num_heads, atten_logit_cap=cfg.atten_logit_cap)

        x = _patchify(frames.reshape(b * t, h, w, c), cfg.patch_size)
        x = _Linear(cfg.model_dim, name="patch_projection")(x)
        _, pos_rows, pos_cols = cfg.pos_emb_shape
        spatial = _PositionEmbedding(pos_rows * pos_cols, cfg.model_dim, name="spatial_pos_emb")()
        if (rows, cols) != (pos_rows, pos_cols):
            grid = spatial.reshape(pos_rows, pos_cols, cfg.model_dim)
            spatial = jax.image.resize(grid, (rows, cols, cfg.model_dim), method="bilinear").reshape(n, cfg.model_dim)
        x = x + spatial.astype(x.dtype)
        x = _Transformer(cfg.num_spatial_layers, name="spatial_encoder", **block_args)(x)
        x = _LayerNorm(name="spatial_ln")(x)

        # Regroup so that the temporal transformer sees, for every patch position, its T frames.
        x = x.reshape(b, t, n, cfg.model_dim).transpose(0, 2, 1, 3).reshape(b * n, t, cfg.model_dim)
        temporal = _PositionEmbedding(cfg.num_frames, cfg.model_dim, name="temporal_pos_emb")()
        if t != cfg.num_frames:
            temporal = jax.image.resize(temporal, (t, cfg.model_dim), method="bilinear")
        x = x + temporal.astype(x.dtype)
        x = _Transformer(cfg.num_temporal_layers, name="temporal_encoder", **block_args)(x)
        x = _LayerNorm(name="temporal_ln")(x)
        return x.reshape(b, n, t, cfg.model_dim).transpose(0, 2, 1, 3).reshape(b, t * n, cfg.model_dim)


def transformers_vision_config(config: VideoPrismConfig | dict[str, Any]):
    """`config` as a transformers `VideoPrismVisionConfig`: the same architecture in transformers'
    independent PyTorch port (the parity test and the benchmark baseline).

    Attention is "eager", the only transformers implementation with the logit cap.
    """
    from transformers import VideoPrismVisionConfig

    config = as_config(config)
    hf_config = VideoPrismVisionConfig(
        image_size=config.resolution[0],
        num_frames=config.num_frames,
        tubelet_size=(1, config.patch_size, config.patch_size),
        hidden_size=config.model_dim,
        num_attention_heads=config.num_heads,
        intermediate_size=config.mlp_dim,
        num_spatial_layers=config.num_spatial_layers,
        num_temporal_layers=config.num_temporal_layers,
        attn_logit_softcapping=config.atten_logit_cap,
        hidden_act="gelu_python",
        layer_norm_eps=_LAYERNORM_EPSILON,
    )
    hf_config._attn_implementation = "eager"
    return hf_config
