"""The run folder's model: weights and normalisation in safetensors, the rest in config.json.

Loading never unpickles anything: the weights come from safetensors and the configuration
from JSON, so a run folder from elsewhere is safe to open.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fgvu.atomic_io import write_bytes
from fgvu.fusion.config import FitConfig
from fgvu.fusion.run_folder import CONFIG, MODEL, RunFolderError, read_config

if TYPE_CHECKING:  # torch stays out of the CLI's import time
    import torch

    from fgvu.fusion.data import Normalization


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


def save_weights(run: str | Path, model, norm) -> None:
    """Write the model's weights and the normalisation statistics to model.safetensors."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if norm is not None:
        tensors.update(norm.tensors())
    # through atomic_io rather than safetensors' save_file, which creates its file 0600: the
    # checkpoint is readable like the run folder's other files
    write_bytes(Path(run) / MODEL, save(tensors, metadata={"format": "pt"}))


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
        raise RunFolderError(f"{run / CONFIG}: the fit configuration is malformed ({e})") from None
    path = run / MODEL
    if not path.exists():
        raise RunFolderError(f"run {run}: {MODEL} is missing (training never finished an epoch?)")
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError) as e:
        raise RunFolderError(f"{path}: not a readable safetensors file ({e})") from None
    model_cfg = replace(cfg.model, recon=cfg.recon_weight > 0)
    model = FusionModel(model_cfg, meta["dims"], meta["n_outputs"], meta["task"]).to(device)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RunFolderError(f"{path}: weights do not match the model in {CONFIG} ({e})") from None
    model.eval()
    return Checkpoint(model=model, norm=Normalization.from_tensors(tensors), cfg=cfg, meta=meta)
