"""CLIP image and text towers through open_clip, with batched tensor preprocessing.

`OpenClipEncoder(model_name, pretrained)` takes an open_clip architecture name and either a
pretrained tag (downloaded through open_clip when online, found in the Hugging Face cache
offline) or a local checkpoint file (safetensors, or a torch file loaded with weights_only=True).
OpenAI weights were trained with QuickGELU: a tag that says so switches it on; for a local file
of OpenAI weights, use the `-quickgelu` architecture name (e.g. `ViT-L-14-quickgelu`).

Images are resized and normalised as open_clip's own eval transform does, but on torch
tensors for the whole batch at once (on the model's device). How a frame is fitted into the
square input is `resize` (`fgvu extract --image-resize`): "pad" (the default: the whole frame,
letterboxed), "squash" or "center-crop" (open_clip's eval transform, which keeps only the
middle 56 % of a 16:9 frame's width). Square images (face crops) come out the same under all
three. The fingerprint records the mode, so a cache never mixes them. Embeddings are
L2-normalised by default.

`clip-tiny` is a small architecture (`fgvu-tiny-clip`) registered with open_clip at runtime, with
random weights from a fixed seed and the real open_clip BPE tokenizer (its vocabulary ships with
the package, so it works offline).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from fgvu.extract.encoders.assets import build_once, hub_offline
from fgvu.extract.encoders.base import (
    EncoderError,
    ImageTextEncoder,
    check_frames,
    check_unit_range,
    file_sha256,
    make_fingerprint,
)
from fgvu.extract.encoders.device import resolve_device, resolve_dtype, torch_dtype

TINY_MODEL_NAME = "fgvu-tiny-clip"
TINY_SEED = 0
# ViT with 64-wide, 2-layer towers at 64 px (patch 16); the text tower keeps CLIP's vocabulary and
# 77-token context so that the real tokenizer applies unchanged.
TINY_MODEL_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_tiny_config() -> None:
    """Make `fgvu-tiny-clip` a known open_clip architecture (idempotent)."""
    import open_clip

    if TINY_MODEL_NAME in open_clip.list_models():
        return
    text = json.dumps(TINY_MODEL_CONFIG, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    folder = build_once(f"open_clip-config-{digest}", lambda tmp: (tmp / f"{TINY_MODEL_NAME}.json").write_text(text))
    open_clip.add_model_config(folder / f"{TINY_MODEL_NAME}.json")


# --image-resize -> open_clip's resize_mode
RESIZE_MODES = {"pad": "longest", "squash": "squash", "center-crop": "shortest"}


def _resolve_pretrained(model_name: str, pretrained: str) -> tuple[str, dict]:
    """A tag or a file -> (local checkpoint path, the tag's pretrained config or {})."""
    import open_clip

    if os.path.isfile(pretrained):
        return pretrained, {}
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        if os.sep in pretrained or pretrained.endswith((".safetensors", ".bin", ".pt", ".pth")):
            raise EncoderError(f"CLIP checkpoint {pretrained}: no such file")
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise EncoderError(
            f"CLIP {model_name}: {pretrained!r} is neither a local file nor a known pretrained tag; tags: {tags}"
        )
    how_to = (
        f"to use it offline, pass a local file (clip:{model_name}:/path/to/weights.safetensors), or run once "
        f"online so that open_clip caches '{model_name}' / '{pretrained}'"
    )
    hub = tag_cfg.get("hf_hub", "")
    if hub_offline():
        if not hub:
            raise EncoderError(
                f"CLIP {model_name}:{pretrained} has no Hugging Face copy and the hub is offline; {how_to}"
            )
        from huggingface_hub import hf_hub_download

        repo, filename = os.path.split(hub)
        candidates = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for candidate in candidates:
            try:
                return hf_hub_download(repo, candidate, local_files_only=True), tag_cfg
            except Exception:  # not cached under this name; try the next
                continue
        raise EncoderError(
            f"CLIP {model_name}:{pretrained} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; {how_to}"
        )
    try:
        return open_clip.download_pretrained(tag_cfg), tag_cfg
    except Exception as exc:
        raise EncoderError(f"CLIP {model_name}:{pretrained}: download failed ({exc}); {how_to}") from exc


@contextlib.contextmanager
def _quiet_root_logger():
    """Silence open_clip's root-logger warnings for the duration (it warns about random init)."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _describe(pretrained: str | None) -> str:
    """How the weights were chosen, for the fingerprint's variant (the sha256 names the exact file)."""
    if pretrained is None:
        return "random"
    return "file" if os.path.isfile(pretrained) else pretrained


def preprocess_images(images, size: tuple[int, int], cfg: dict):
    """Batched open_clip eval transform on a (B, H, W, 3) uint8/float torch tensor -> (B, 3, h, w) float32.

    `cfg` is open_clip's preprocess config: `mean`, `std`, `interpolation` (bicubic|bilinear),
    `resize_mode` (shortest: resize the short side then centre-crop; squash; longest: resize the
    long side then pad with `fill_color`).
    """
    import torch
    import torch.nn.functional as F

    x = images.permute(0, 3, 1, 2)  # (B, 3, H, W), channels-last in memory
    # On the CPU, torch resizes uint8 channels-last images with a fast SIMD kernel that rounds to
    # uint8 as PIL does; elsewhere (and for float input) resize in float32.
    keep_uint8 = images.dtype == torch.uint8 and x.device.type == "cpu"
    if not keep_uint8:
        x = x.float() / 255.0 if images.dtype == torch.uint8 else x.float()
    out_h, out_w = size
    h, w = x.shape[-2:]
    mode = "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
    resize_mode = cfg.get("resize_mode", "shortest")
    if resize_mode == "squash":
        new_h, new_w = out_h, out_w
    elif resize_mode == "longest":
        scale = min(out_h / h, out_w / w)
        new_h, new_w = min(out_h, round(h * scale)), min(out_w, round(w * scale))
    else:  # shortest; the max() guards against float error leaving the short side one pixel short
        scale = max(out_h / h, out_w / w)
        new_h, new_w = max(out_h, int(h * scale)), max(out_w, int(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode=mode, align_corners=False, antialias=True)
        if not keep_uint8:
            x = x.clamp_(0.0, 1.0)
    if (new_h, new_w) != (out_h, out_w):
        pad_h, pad_w = max(out_h - new_h, 0), max(out_w - new_w, 0)
        if pad_h or pad_w:
            fill = int(cfg.get("fill_color", 0))
            x = F.pad(
                x,
                (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2),
                value=fill if keep_uint8 else fill / 255.0,
            )
        top = int(round((x.shape[-2] - out_h) / 2.0))
        left = int(round((x.shape[-1] - out_w) / 2.0))
        x = x[..., top : top + out_h, left : left + out_w]
    if keep_uint8:
        x = x.float() / 255.0
    mean = torch.tensor(cfg["mean"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class OpenClipEncoder(ImageTextEncoder):
    """open_clip image and text towers embedding into one space.

    `pretrained`: a tag, a local checkpoint file, or None for random weights from `seed`
    (the tiny variant and the benchmarks). `dtype`: "auto" (fp32 on CPU, bf16 autocast on GPU),
    "fp32", "bf16" or "fp16". `resize`: pad | squash | center-crop (see the module docstring).
    """

    def __init__(
        self,
        model_name: str,
        pretrained: str | None,
        *,
        device: str = "auto",
        dtype: str = "auto",
        normalize: bool = True,
        batch_size: int = 64,
        seed: int = TINY_SEED,
        variant: str | None = None,
        resize: str = "pad",
    ):
        import open_clip
        import torch

        if resize not in RESIZE_MODES:
            raise EncoderError(f"CLIP: image resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
        register_tiny_config()
        if model_name not in open_clip.list_models():
            raise EncoderError(f"CLIP: unknown open_clip architecture {model_name!r}; known: {open_clip.list_models()}")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.normalize = normalize
        self.batch_size = int(batch_size)

        kwargs: dict = {}
        if pretrained is None:
            checkpoint = f"random-init:{seed}"
            with torch.random.fork_rng(devices=[]), _quiet_root_logger():
                torch.manual_seed(seed)
                model = open_clip.create_model(model_name, pretrained=None)  # random on purpose: no warning
        else:
            path, tag_cfg = _resolve_pretrained(model_name, pretrained)
            if tag_cfg.get("quick_gelu"):
                kwargs["force_quick_gelu"] = True
            preprocess = {k: tag_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in tag_cfg}
            try:
                model = open_clip.create_model(model_name, pretrained=path, force_preprocess_cfg=preprocess, **kwargs)
            except (RuntimeError, KeyError, ValueError) as exc:
                raise EncoderError(f"CLIP checkpoint {path} does not fit {model_name}: {exc}") from exc
            checkpoint = file_sha256(path)
        self.model = model.to(self.device).eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.preprocess_cfg = dict(open_clip.get_model_preprocess_cfg(self.model))
        self.preprocess_cfg["resize_mode"] = RESIZE_MODES[resize]
        self.preprocess_cfg.setdefault("fill_color", 0)
        size = self.preprocess_cfg["size"]
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.input_size = max(self.image_size)
        self.dim = self._probe_dim()
        preprocessing = {
            "size": list(self.image_size),
            "mean": [float(v) for v in self.preprocess_cfg["mean"]],
            "std": [float(v) for v in self.preprocess_cfg["std"]],
            "interpolation": self.preprocess_cfg.get("interpolation", "bicubic"),
            "resize_mode": self.preprocess_cfg["resize_mode"],
            "image_resize": resize,
            "fill_color": int(self.preprocess_cfg["fill_color"]),
            "quick_gelu": bool(kwargs.get("force_quick_gelu") or "quickgelu" in model_name),
            "l2_normalized": normalize,
            "context_length": int(getattr(self.tokenizer, "context_length", 77)),
        }
        self.fingerprint = make_fingerprint(
            name="clip",
            variant=variant or f"{model_name}:{_describe(pretrained)}",
            dim=self.dim,
            preprocessing=preprocessing,
            checkpoint=checkpoint,
        )

    def _probe_dim(self) -> int:
        import torch

        with torch.inference_mode():
            return int(self.model.encode_text(self.tokenizer(["a"]).to(self.device)).shape[-1])

    def _autocast(self):
        import torch

        if self.dtype == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=torch_dtype(self.dtype))

    def encode_images(self, images: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 or float in [0, 1] -> (B, D) float32."""
        import torch

        check_frames(images, 4, "CLIP images")
        check_unit_range(images, "CLIP images")
        outputs = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(images), self.batch_size):
                chunk = torch.from_numpy(np.require(images[start : start + self.batch_size], requirements=["C", "W"]))
                pixels = preprocess_images(
                    chunk.to(self.device, non_blocking=True), self.image_size, self.preprocess_cfg
                )
                features = self.model.encode_image(pixels, normalize=self.normalize)
                outputs.append(features.float().cpu().numpy())
        return np.concatenate(outputs)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """list of B strings -> (B, D) float32, in the same space as `encode_images`."""
        import torch

        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise EncoderError("CLIP texts: expected a list of strings")
        outputs = [np.zeros((0, self.dim), np.float32)]
        with torch.inference_mode(), self._autocast():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(list(texts[start : start + self.batch_size])).to(self.device)
                features = self.model.encode_text(tokens, normalize=self.normalize)
                outputs.append(features.float().cpu().numpy())
        return np.concatenate(outputs)


def save_open_clip_weights(encoder: OpenClipEncoder, path: str | Path) -> None:
    """Save an encoder's weights as safetensors, loadable again through `pretrained=path`."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in encoder.model.state_dict().items()}
    save_file(state, str(path))
