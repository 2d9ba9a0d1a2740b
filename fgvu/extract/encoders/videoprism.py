"""VideoPrism's factorized video encoder, written in Flax, loading the official parameter files.

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

Parameters use the official Flax paths, so an official `.npz` (keys are the paths joined by "/",
transformer layers stacked on a leading axis under `x_layers`) loads without renaming. Other frame
counts interpolate the temporal position embedding, other resolutions the spatial one (bilinear,
as the original).

Entry point: `load_videoprism(npz_path, config)` -> a jit-compiled callable mapping float32
(B, T, H, W, 3) frames in [0, 1] to the (B, T*N, D) token array.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from fgvu.extract.encoders.base import (
    EncoderError,
    VideoEncoder,
    check_frames,
    check_unit_range,
    file_sha256,
    make_fingerprint,
)
from fgvu.extract.encoders.device import configure_jax_memory, jax_device

configure_jax_memory()  # before jax initialises a backend, so it never pre-allocates the GPU

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402

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

# Hugging Face repository and file name of each official checkpoint.
VIDEOPRISM_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "videoprism-base": ("google/videoprism-base-f16r288", "flax_base_f16r288_repeated.npz"),
    "videoprism-large": ("google/videoprism-large-f8r288", "flax_large_f8r288_repeated.npz"),
}

TINY_SEED = 0
_LAYERNORM_EPSILON = 1e-6
_COMPUTE_DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}
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


# ----------------------------------------------------------------------------------------------
# Parameters: random init, the official npz layout, validation.


def _as_config(config: VideoPrismConfig | dict[str, Any]) -> VideoPrismConfig:
    return config if isinstance(config, VideoPrismConfig) else VideoPrismConfig.from_dict(config)


def _native_input(config: VideoPrismConfig):
    height, width = config.resolution
    return jax.ShapeDtypeStruct((1, config.num_frames, height, width, 3), jnp.float32)


def expected_param_shapes(config: VideoPrismConfig | dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The npz key -> shape table that a checkpoint of `config` must match (computed without weights)."""
    config = _as_config(config)
    module = FactorizedVideoEncoder(config)
    variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), _native_input(config))
    flat = traverse_util.flatten_dict(dict(variables), sep="/")
    return {key: tuple(value.shape) for key, value in flat.items()}


def _init_std(key: str, shape: tuple[int, ...]) -> float:
    """LeCun-normal scale 1/sqrt(fan_in) for weights, 0.02 for position embeddings, 0 for biases and norms."""
    leaf = key.rsplit("/", 1)[-1]
    if leaf == "emb_var":
        return 0.02
    if leaf == "kernel":
        return shape[-2] ** -0.5
    if leaf == "w":  # attention projections, (D, N, H): query/key/value read D, post reads N*H
        return (shape[-1] * shape[-2]) ** -0.5 if key.endswith("post/w") else shape[-3] ** -0.5
    return 0.0


def init_videoprism_params(config: VideoPrismConfig | dict[str, Any], seed: int = TINY_SEED) -> dict:
    """Random parameters from a fixed seed, as the tree `{"params": ...}` of float32 numpy arrays.

    Drawn with numpy (no compilation, same values on every platform) in sorted key order.
    """
    rng = np.random.default_rng(seed)
    flat = {}
    for key, shape in sorted(expected_param_shapes(config).items()):
        std = _init_std(key, shape)
        flat[key] = (rng.standard_normal(shape) * std).astype(np.float32) if std else np.zeros(shape, np.float32)
    return traverse_util.unflatten_dict(flat, sep="/")


def save_videoprism_npz(params: dict, path: str | Path) -> None:
    """Write parameters in the official layout: one array per Flax path joined by "/" ("params/...")."""
    tree = params if set(params) == {"params"} else {"params": params}
    flat = traverse_util.flatten_dict(jax.tree_util.tree_map(np.asarray, tree), sep="/")
    np.savez(path, **flat)


def read_videoprism_npz(path: str | Path, config: VideoPrismConfig | dict[str, Any]) -> dict:
    """Read an official-layout npz and check it against `config`; returns `{"params": ...}`.

    Missing keys, unexpected keys and shape mismatches are all named in the error.
    """
    config = _as_config(config)
    path = Path(path)
    if not path.is_file():
        raise EncoderError(f"VideoPrism checkpoint {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            flat = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as exc:
        raise EncoderError(f"VideoPrism checkpoint {path}: not a readable .npz file ({exc})") from exc
    if flat and not any(key.startswith("params/") for key in flat):  # saved from the params tree alone
        flat = {f"params/{key}": value for key, value in flat.items()}
    expected = expected_param_shapes(config)
    missing = sorted(set(expected) - set(flat))
    unexpected = sorted(set(flat) - set(expected))
    mismatched = [
        f"{key}: file {tuple(flat[key].shape)} vs model {expected[key]}"
        for key in sorted(set(expected) & set(flat))
        if tuple(flat[key].shape) != expected[key]
    ]
    if missing or unexpected or mismatched:
        problems = []
        for title, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        ):
            if items:
                shown = "; ".join(items[:12]) + (f"; ... ({len(items) - 12} more)" if len(items) > 12 else "")
                problems.append(f"{len(items)} {title}: {shown}")
        raise EncoderError(
            f"VideoPrism checkpoint {path} does not match the config {config.to_dict()}: " + " | ".join(problems)
        )
    return traverse_util.unflatten_dict({k: v.astype(np.float32, copy=False) for k, v in flat.items()}, sep="/")


# ----------------------------------------------------------------------------------------------
# The compiled forward pass.


@functools.partial(jax.jit, static_argnames=("config", "dtype", "pooled"))
def _forward(params, frames, config: VideoPrismConfig, dtype: str, pooled: bool):
    """The compiled forward pass; module-level so that every model of one config shares compilations."""
    tokens = FactorizedVideoEncoder(config).apply({"params": params}, frames.astype(_COMPUTE_DTYPES[dtype]))
    tokens = tokens.astype(jnp.float32)
    if not pooled:
        return tokens
    b, t = frames.shape[:2]
    # Mean-pool in float32 over the N spatial tokens of each frame.
    return tokens.reshape(b, t, -1, config.model_dim).mean(axis=2)


class VideoPrismModel:
    """A jit-compiled VideoPrism forward pass bound to its parameters on one JAX device.

    Calling it maps float (B, T, H, W, 3) frames in [0, 1] (H, W multiples of the patch size) to
    the (B, T*N, D) float32 token array, as the official encoder does.
    """

    def __init__(self, config: VideoPrismConfig, params: dict, dtype: str = "fp32", device: str = "auto"):
        self.device = jax_device(device)
        if dtype == "auto":  # bf16 where it is fast (GPU); on a CPU bf16 is several times slower
            dtype = "fp32" if self.device.platform == "cpu" else "bf16"
        if dtype not in _COMPUTE_DTYPES:
            raise EncoderError(f"VideoPrism: unknown dtype {dtype!r}; use 'auto' or one of {sorted(_COMPUTE_DTYPES)}")
        self.config = config
        self.dtype = dtype
        compute = _COMPUTE_DTYPES[dtype]
        tree = params["params"] if set(params) == {"params"} else params
        self.params = jax.device_put(jax.tree_util.tree_map(lambda a: jnp.asarray(a, compute), tree), self.device)

    def __call__(self, frames) -> jax.Array:
        """(B, T, H, W, 3) float in [0, 1] -> (B, T*N, D) float32 tokens."""
        frames = jax.device_put(frames, self.device)
        return _forward(self.params, frames, config=self.config, dtype=self.dtype, pooled=False)

    def pooled(self, frames) -> jax.Array:
        """(B, T, H, W, 3) float in [0, 1] -> (B, T, D) float32, the spatial tokens of each frame averaged."""
        frames = jax.device_put(frames, self.device)
        return _forward(self.params, frames, config=self.config, dtype=self.dtype, pooled=True)


def load_videoprism(npz_path: str | Path, config: VideoPrismConfig | dict[str, Any], **kwargs) -> VideoPrismModel:
    """Load an official-layout VideoPrism `.npz` into a jit-compiled callable.

    `config` is a dict with the official keys (`patch_size`, `pos_emb_shape`, `model_dim`,
    `num_spatial_layers`, `num_temporal_layers`, `num_heads`, `mlp_dim`, `atten_logit_cap`).
    The callable maps a float32 (B, T, H, W, 3) array in [0, 1] to the (B, T*N, D) tokens.
    Keyword arguments (`dtype`, `device`) go to `VideoPrismModel`.
    """
    config = _as_config(config)
    return VideoPrismModel(config, read_videoprism_npz(npz_path, config), **kwargs)


def transformers_vision_config(config: VideoPrismConfig | dict[str, Any]):
    """`config` as a transformers `VideoPrismVisionConfig`: the same architecture in transformers'
    independent PyTorch port (the parity test and the benchmark baseline).

    Attention is "eager", the only transformers implementation with the logit cap.
    """
    from transformers import VideoPrismVisionConfig

    config = _as_config(config)
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


# ----------------------------------------------------------------------------------------------
# The stage-1 encoder.


@functools.partial(jax.jit, static_argnames=("resolution",))
def _to_model_input(clips, resolution: tuple[int, int]):
    """uint8 or [0, 1] float clips -> float32 in [0, 1] at `resolution` (bilinear, antialiased)."""
    x = clips.astype(jnp.float32)
    if clips.dtype == jnp.uint8:
        x = x / 255.0
    if x.shape[2:4] != resolution:
        x = jax.image.resize(x, (*x.shape[:2], *resolution, 3), method="bilinear", antialias=True)
    return x


def _bucket(n: int, batch_size: int) -> int:
    """Pad batches to powers of two (capped at batch_size) so that few shapes are ever compiled."""
    size = 1
    while size < n:
        size *= 2
    return min(size, batch_size)


class VideoPrismEncoder(VideoEncoder):
    """Stage-1 video encoder: clips of any frame size and count -> per-frame VideoPrism embeddings.

    Frames are resized (bilinear, antialiased, on the JAX device, batched) to the model's native
    resolution; frame counts other than the native one interpolate the temporal position embedding.
    """

    def __init__(self, model: VideoPrismModel, variant: str, checkpoint: str, batch_size: int = 8):
        self.model = model
        self.variant = variant
        self.batch_size = int(batch_size)
        self.dim = model.config.model_dim
        height, width = model.config.resolution
        self.input_size = max(height, width)
        self.fingerprint = make_fingerprint(
            name="videoprism",
            variant=variant,
            dim=self.dim,
            preprocessing={
                "resize": [height, width],
                "resize_method": "bilinear-antialias",
                "value_range": [0.0, 1.0],
                "patch_size": model.config.patch_size,
                "pooling": "mean over the spatial tokens of each frame",
            },
            checkpoint=checkpoint,
        )

    @classmethod
    def from_npz(cls, path: str | Path, variant: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8):
        """Load an official checkpoint file for `variant` (a key of VIDEOPRISM_CONFIGS)."""
        model = load_videoprism(path, VIDEOPRISM_CONFIGS[variant], dtype=dtype, device=device)
        return cls(model, variant, checkpoint=file_sha256(path), batch_size=batch_size)

    @classmethod
    def random(
        cls, variant: str, seed: int = TINY_SEED, device: str = "auto", dtype: str = "auto", batch_size: int = 8
    ):
        """The architecture of `variant` with random weights from `seed` (the tiny variant, benchmarks)."""
        config = VideoPrismConfig.from_dict(VIDEOPRISM_CONFIGS[variant])
        model = VideoPrismModel(config, init_videoprism_params(config, seed), dtype=dtype, device=device)
        return cls(model, variant, checkpoint=f"random-init:{seed}", batch_size=batch_size)

    def _run(self, clips: np.ndarray, pooled: bool) -> np.ndarray:
        check_frames(clips, 5, "VideoPrism clips")
        check_unit_range(clips, "VideoPrism clips")
        if clips.dtype != np.uint8:
            clips = clips.astype(np.float32, copy=False)
        forward = self.model.pooled if pooled else self.model
        # Dispatch every chunk before reading any result back: JAX runs asynchronously, so the upload
        # of chunk k+1 overlaps the encoding of chunk k.
        pending = []
        for start in range(0, len(clips), self.batch_size):
            chunk = clips[start : start + self.batch_size]
            size = _bucket(len(chunk), self.batch_size)
            if size > len(chunk):
                pad = np.repeat(chunk[-1:], size - len(chunk), axis=0)
                chunk = np.concatenate([chunk, pad])
            frames = _to_model_input(jax.device_put(chunk, self.model.device), self.model.config.resolution)
            pending.append((forward(frames), min(self.batch_size, len(clips) - start)))
        outputs = [np.asarray(result)[:n] for result, n in pending]
        if not outputs:
            t = clips.shape[1]
            shape = (0, t, self.dim) if pooled else (0, t * self.model.config.tokens_per_frame, self.dim)
            return np.zeros(shape, np.float32)
        return np.concatenate(outputs)

    def encode_clips(self, clips: np.ndarray) -> np.ndarray:
        """(B, T, H, W, 3) uint8 or float in [0, 1] -> (B, T, D) float32."""
        return self._run(clips, pooled=True)

    def encode_tokens(self, clips: np.ndarray) -> np.ndarray:
        """(B, T, H, W, 3) -> the full token grid (B, T*N, D) float32."""
        return self._run(clips, pooled=False)
