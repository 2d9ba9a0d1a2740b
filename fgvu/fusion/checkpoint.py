"""The run folder's model: weights and normalisation in safetensors, the rest in config.json.

Loading never unpickles anything: the weights come from safetensors and the configuration
from JSON, so a run folder from elsewhere is safe to open.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fgvu.cache_schema import write_json
from fgvu.errors import FgvuError
from fgvu.fusion.config import FitConfig

if TYPE_CHECKING:  # torch stays out of the CLI's import time
    import torch

    from fgvu.fusion.data import Normalization

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class CheckpointError(FgvuError):
    """A run folder that cannot be loaded; the message names the file."""


@dataclass
class Checkpoint:
    """A loaded run: the model in eval mode, its normalisation, and config.json's content."""

    model: "torch.nn.Module"
    norm: "Normalization | None"
    cfg: FitConfig
    meta: dict

    @property
    def task(self) -> str:
        return self.meta["task"]



def cache_fingerprint(cache: str | Path) -> str:
    """sha256 of cache.json and the committed videos (sorted names with their frame counts).

    Reads only cache.json, each part's commit.json and its two small video columns, so it is
    cheap on a large cache. Re-extracting a cache with other encoders, sampling or videos
    changes it; rewriting the same videos' features with the same settings does not.
    """
    import hashlib

    import numpy as np

    from fgvu.cache_schema import open_part, part_dirs, read_commit

    cache = Path(cache)
    digest = hashlib.sha256((cache / "cache.json").read_bytes())
    videos = []
    for part in part_dirs(cache):
        n = read_commit(part)["rows"]["videos"]
        if n == 0:
            continue
        group = open_part(part)
        names = group["videos/name"][:n].tolist()
        frames = np.asarray(group["videos/n_frames"][:n]).tolist()
        videos += [f"{name}\t{int(f)}" for name, f in zip(names, frames)]
    digest.update("\n".join(sorted(videos)).encode())
    return digest.hexdigest()


def save_config(run: str | Path, meta: dict) -> None:
    """Write config.json: {"fit": FitConfig.to_dict(), "task", "dims", "cache", ...}."""
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    write_json(run / CONFIG_FILE, meta)


def save_weights(run: str | Path, model, norm) -> None:
    """Write the model's weights and the normalisation statistics to model.safetensors."""
    from safetensors.torch import save_file

    path = Path(run) / MODEL_FILE
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if norm is not None:
        tensors.update(norm.tensors())
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def read_config(run: str | Path) -> dict:
    """config.json of a run folder, checked for the keys loading needs."""
    run = Path(run)
    path = run / CONFIG_FILE
    if not run.is_dir():
        raise CheckpointError(f"run {run}: no such directory")
    if not path.exists():
        raise CheckpointError(f"run {run}: {CONFIG_FILE} is missing (not a finished `fgvu fit` run?)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    missing = [k for k in ("fit", "cache", "task", "dims", "n_outputs") if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: missing keys {missing}")
    return meta


def load_checkpoint(run: str | Path, device: str = "cpu") -> Checkpoint:
    """The best model of a run folder, rebuilt from config.json and model.safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from fgvu.fusion.data import Normalization
    from fgvu.fusion.model import FusionModel

    run = Path(run)
    meta = read_config(run)
    try:
        cfg = FitConfig.from_dict(meta["fit"])
    except (TypeError, KeyError) as e:
        raise CheckpointError(f"{run / CONFIG_FILE}: the fit configuration is malformed ({e})") from None
    path = run / MODEL_FILE
    if not path.exists():
        raise CheckpointError(f"run {run}: {MODEL_FILE} is missing (training never finished an epoch?)")
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    model_cfg = replace(cfg.model, recon=cfg.recon_weight > 0)
    model = FusionModel(model_cfg, meta["dims"], meta["n_outputs"], meta["task"]).to(device)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not match the model in {CONFIG_FILE} ({e})") from None
    model.eval()
    return Checkpoint(model=model, norm=Normalization.from_tensors(tensors), cfg=cfg, meta=meta)
