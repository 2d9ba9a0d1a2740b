"""Device and precision choices shared by the encoders ("auto" -> cuda when there is one).

JAX is configured here, before it first initialises a backend, so that it allocates GPU memory
on demand instead of taking most of the card that torch also needs.
"""

from __future__ import annotations

import os
import warnings

from fgvu.extract.encoders.base import EncoderError

DTYPES = ("fp32", "bf16", "fp16")


def resolve_device(device: str = "auto") -> str:
    """ "auto" -> "cuda" when torch sees a GPU, else "cpu"; "cpu", "cuda" and "cuda:N" pass through."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or device == "cuda" or device.startswith("cuda:"):
        if device != "cpu":
            import torch

            if not torch.cuda.is_available():
                raise EncoderError(f"device {device!r} was asked for, but torch sees no CUDA GPU")
        return device
    raise EncoderError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_dtype(dtype: str, device: str) -> str:
    """ "auto" -> "bf16" on a GPU, "fp32" on a CPU (where bf16 is several times slower)."""
    if dtype == "auto":
        return "fp32" if device == "cpu" else "bf16"
    if dtype not in DTYPES:
        raise EncoderError(f"unknown dtype {dtype!r}: use 'auto' or one of {', '.join(DTYPES)}")
    return dtype


def torch_dtype(dtype: str):
    """ "fp32" / "bf16" / "fp16" -> the torch dtype."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def configure_jax_memory() -> None:
    """Make JAX allocate GPU memory on demand. Only effective before JAX initialises a backend."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


def jax_device(device: str = "auto"):
    """The JAX device for `device`: the first GPU for "cuda"/"auto" when JAX has one, else the CPU.

    "auto" falls back to the CPU with a warning when torch sees a GPU that JAX cannot use (a
    CPU-only jaxlib); an explicit "cuda" raises instead.
    """
    configure_jax_memory()
    import jax

    wanted = resolve_device(device)
    if wanted == "cpu":
        return jax.devices("cpu")[0]
    index = int(wanted.split(":", 1)[1]) if ":" in wanted else 0
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if len(gpus) > index:
        return gpus[index]
    hint = "install a CUDA build of jaxlib (pip install 'jax[cuda13]==<the installed jax version>')"
    if device == "auto":
        warnings.warn(f"torch sees a GPU but JAX does not; VideoPrism runs on the CPU. To fix: {hint}", stacklevel=2)
        return jax.devices("cpu")[0]
    raise EncoderError(f"device {device!r}: JAX sees no GPU number {index}; {hint}")
