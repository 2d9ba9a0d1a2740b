"""Loading a converted MiniGPT-4 directory onto a device (`load_minigpt4`), refusing what cannot run there."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fgvu.extract.encoders.device import DTYPES, resolve_device, torch_dtype
from fgvu.extract.encoders.minigpt4_config import (
    BRIDGE_FILE,
    CONFIG_FILE,
    LLM_SUBDIR,
    MiniGPT4Config,
    MiniGPT4Error,
    read_config,
)
from fgvu.extract.encoders.minigpt4_model import MiniGPT4, build_vision_bridge

if TYPE_CHECKING:
    import torch

# Above this many parameters the model is "full size": refused on CPU (fp32, minutes per caption).
CPU_MAX_PARAMS = 2_000_000_000


def count_parameters(directory: str | Path, config: MiniGPT4Config) -> int:
    """Parameters of the whole model, read from the shapes on disk and the LLM config (no weights loaded)."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForCausalLM

    with safe_open(str(Path(directory) / BRIDGE_FILE), framework="pt") as f:
        bridge = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    with torch.device("meta"):
        llm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(Path(directory) / LLM_SUBDIR))
    return bridge + sum(p.numel() for p in llm.parameters())


def check_fits_device(n_params: int, device: torch.device) -> None:
    """Refuse the full-size model on CPU, saying what it would need."""
    if device.type == "cpu" and n_params > CPU_MAX_PARAMS:
        raise MiniGPT4Error(
            f"MiniGPT-4 has {n_params / 1e9:.1f}B parameters: on CPU it needs about "
            f"{n_params * 4 / 2**30:.0f} GiB of RAM in float32 and minutes per caption. Run it on a GPU "
            f"(about {n_params * 2 / 2**30:.0f} GiB in float16, less with 8-bit loading), or use a tiny model on CPU."
        )


def load_bridge(directory: str | Path, config: MiniGPT4Config, device: torch.device, dtype: torch.dtype):
    """The image side with the converted weights (built on `meta`, then the tensors are assigned)."""
    import torch
    from safetensors.torch import load_file

    path = Path(directory) / BRIDGE_FILE
    if not path.is_file():
        raise MiniGPT4Error(f"{directory}: missing {BRIDGE_FILE}")
    with torch.device("meta"):
        bridge = build_vision_bridge(config)
    state = load_file(str(path), device=str(device))
    result = bridge.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise MiniGPT4Error(
            f"{path}: does not match {CONFIG_FILE}; missing {result.missing_keys}, unexpected {result.unexpected_keys}"
        )
    return bridge.to(device=device, dtype=dtype)


def load_minigpt4(
    directory: str | Path, device: str = "auto", dtype: str | None = None, load_in_8bit: bool = False
) -> MiniGPT4:
    """Load a converted MiniGPT-4 directory.

    `device`: "auto" | "cpu" | "cuda[:N]". `dtype`: "fp16" (the GPU default, as the official
    model), "bf16" or "fp32" (the CPU default). `load_in_8bit`: the LLM in 8 bits (needs a GPU,
    bitsandbytes and accelerate).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = read_config(directory)
    llm_dir = Path(directory) / LLM_SUBDIR
    if not (llm_dir / "config.json").is_file():
        raise MiniGPT4Error(f"{directory}: missing {LLM_SUBDIR}/config.json")
    resolved = torch.device(resolve_device(device))
    check_fits_device(count_parameters(directory, config), resolved)
    dtype_name = dtype or ("fp32" if resolved.type == "cpu" else "fp16")
    if dtype_name not in DTYPES:
        raise MiniGPT4Error(f"MiniGPT-4: unknown dtype {dtype_name!r}; use one of {', '.join(DTYPES)}")
    weights_dtype = torch_dtype(dtype_name)

    # With accelerate, weights stream straight onto the GPU; without it they pass through RAM.
    has_accelerate = importlib.util.find_spec("accelerate") is not None
    llm_kwargs: dict = {"dtype": weights_dtype}
    if has_accelerate and resolved.type != "cpu":
        llm_kwargs["device_map"] = {"": str(resolved)}
    if load_in_8bit:
        if resolved.type != "cuda":
            raise MiniGPT4Error("MiniGPT-4: 8-bit loading needs a CUDA GPU")
        missing = [m for m in ("bitsandbytes", "accelerate") if importlib.util.find_spec(m) is None]
        if missing:
            raise MiniGPT4Error(
                f"MiniGPT-4: 8-bit loading needs {' and '.join(missing)} (pip install {' '.join(missing)})"
            )
        from transformers import BitsAndBytesConfig

        llm_kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    llm = AutoModelForCausalLM.from_pretrained(llm_dir, **llm_kwargs)
    if "device_map" not in llm_kwargs:
        llm = llm.to(resolved)
    if llm.config.hidden_size != config.llm_hidden_size:
        raise MiniGPT4Error(
            f"{llm_dir}: LLM hidden size {llm.config.hidden_size}, but llama_proj outputs {config.llm_hidden_size}"
        )
    tokenizer = AutoTokenizer.from_pretrained(llm_dir)
    bridge = load_bridge(directory, config, resolved, weights_dtype)
    return MiniGPT4(config, bridge, llm, tokenizer)
