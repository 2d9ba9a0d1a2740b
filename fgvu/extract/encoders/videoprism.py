"""VideoPrism at run time: the compiled forward pass bound to its weights, and the stage-1 encoder.

`load_videoprism(npz_path, config)` gives a `VideoPrismModel`, a jit-compiled callable mapping
float32 (B, T, H, W, 3) frames in [0, 1] to the (B, T*N, D) token array, as the official encoder.
`VideoPrismEncoder` wraps it in the `VideoEncoder` interface: clips of any frame size and count,
resized on the JAX device in batches, tokens mean-pooled per frame.
"""

from __future__ import annotations

import functools
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
from fgvu.extract.encoders.videoprism_checkpoint import TINY_SEED, init_videoprism_params, read_videoprism_npz
from fgvu.extract.encoders.videoprism_model import (
    VIDEOPRISM_CONFIGS,
    FactorizedVideoEncoder,
    VideoPrismConfig,
    as_config,
)

configure_jax_memory()  # before jax initialises a backend, so it never pre-allocates the GPU

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

_COMPUTE_DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}


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
    config = as_config(config)
    return VideoPrismModel(config, read_videoprism_npz(npz_path, config), **kwargs)


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
