"""VideoPrism's official checkpoints: finding them, and the parameter layout of their `.npz` files.

An official `.npz` holds one array per Flax parameter path joined by "/" ("params/..."), with the
transformer layers stacked on a leading axis under `x_layers`. `read_videoprism_npz` checks a file
against the configuration and names every missing, unexpected or misshapen key;
`init_videoprism_params` draws random parameters in the same layout (the tiny variant, benchmarks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fgvu.extract.encoders.assets import hub_offline
from fgvu.extract.encoders.base import EncoderError
from fgvu.extract.encoders.device import configure_jax_memory
from fgvu.extract.encoders.videoprism_model import FactorizedVideoEncoder, VideoPrismConfig, as_config

configure_jax_memory()  # before jax initialises a backend, so it never pre-allocates the GPU

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import traverse_util  # noqa: E402

# Hugging Face repository and file name of each official checkpoint.
VIDEOPRISM_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "videoprism-base": ("google/videoprism-base-f16r288", "flax_base_f16r288_repeated.npz"),
    "videoprism-large": ("google/videoprism-large-f8r288", "flax_large_f8r288_repeated.npz"),
}

TINY_SEED = 0


def find_checkpoint(variant: str) -> str:
    """The local path of an official VideoPrism checkpoint: the Hugging Face cache, else a download.

    Offline (HF_HUB_OFFLINE) with nothing cached, fails at once with instructions, never after retries.
    """
    from huggingface_hub import hf_hub_download

    repo, filename = VIDEOPRISM_CHECKPOINTS[variant]
    how_to = (
        f"give a local file as '{variant}:/path/to/{filename}', or fetch it on a machine with internet "
        f"(`huggingface-cli download {repo} {filename}`) and copy it here"
    )
    try:
        return hf_hub_download(repo, filename, local_files_only=True)
    except Exception:  # not in the Hugging Face cache: fall through to the download (or the offline error)
        pass
    if hub_offline():
        raise EncoderError(
            f"{variant}: weights {repo}/{filename} are not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
            f"{how_to}"
        )
    try:
        return hf_hub_download(repo, filename)
    except Exception as exc:
        raise EncoderError(f"{variant}: could not download {repo}/{filename} ({exc}); {how_to}") from exc


def _native_input(config: VideoPrismConfig):
    height, width = config.resolution
    return jax.ShapeDtypeStruct((1, config.num_frames, height, width, 3), jnp.float32)


def expected_param_shapes(config: VideoPrismConfig | dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """The npz key -> shape table that a checkpoint of `config` must match (computed without weights)."""
    config = as_config(config)
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
    config = as_config(config)
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

