"""A converted MiniGPT-4 directory: its file names, the architecture it records, and reading it.

A converted directory (written by `fgvu.extract.encoders.minigpt4_convert`) holds `minigpt4.json`
(a `MiniGPT4Config`), `vision_bridge.safetensors` (everything but the LLM) and `llm/` (a
transformers checkpoint plus its tokenizer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from fgvu.extract.encoders.base import EncoderError

CONFIG_FILE = "minigpt4.json"
BRIDGE_FILE = "vision_bridge.safetensors"
LLM_SUBDIR = "llm"
FORMAT_VERSION = 1
VARIANTS = ("vicuna0", "llama2")

# Blip2ImageEvalProcessor: resize to 224x224 (bicubic), then OpenAI CLIP normalisation.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class MiniGPT4Error(EncoderError):
    """A converted MiniGPT-4 directory that is missing, malformed, or cannot run where asked."""


@dataclass(frozen=True)
class VisionTowerSpec:
    """The EVA ViT shape (defaults: EVA-CLIP ViT-g/14 with its last layer removed, as in BLIP-2)."""

    hidden_size: int = 1408
    num_layers: int = 39
    num_heads: int = 16
    intermediate_size: int = 6144
    patch_size: int = 14
    image_size: int = 224
    layer_norm_eps: float = 1e-6
    ln_vision_eps: float = 1e-5  # BLIP-2's ln_vision is a default nn.LayerNorm

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class QFormerSpec:
    """The BLIP-2 Q-Former shape (defaults: BERT-base with cross-attention every second layer)."""

    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    cross_attention_frequency: int = 2
    num_query_tokens: int = 32
    layer_norm_eps: float = 1e-12


@dataclass(frozen=True)
class MiniGPT4Config:
    """What a converted directory records in `minigpt4.json`."""

    variant: str
    vision: VisionTowerSpec
    qformer: QFormerSpec | None
    llm_hidden_size: int
    merged_patch_tokens: int = 4  # Llama-2 variant: adjacent ViT tokens concatenated per LLM token
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    checksums: dict[str, str] = field(default_factory=dict)  # relative path -> sha256, from the converter

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise MiniGPT4Error(f"unknown MiniGPT-4 variant {self.variant!r}; expected one of {VARIANTS}")
        if (self.variant == "vicuna0") != (self.qformer is not None):
            raise MiniGPT4Error(f"variant {self.variant!r}: the Q-Former is used by 'vicuna0' only")
        if self.variant == "llama2" and self.vision.num_patches % self.merged_patch_tokens:
            raise MiniGPT4Error(
                f"{self.vision.num_patches} patches cannot be merged in groups of {self.merged_patch_tokens}"
            )

    @property
    def projection_in_features(self) -> int:
        """Width of what `llama_proj` reads: Q-Former outputs, or concatenated ViT tokens."""
        if self.qformer is not None:
            return self.qformer.hidden_size
        return self.vision.hidden_size * self.merged_patch_tokens

    @property
    def num_image_tokens(self) -> int:
        """How many LLM positions one image takes."""
        if self.qformer is not None:
            return self.qformer.num_query_tokens
        return self.vision.num_patches // self.merged_patch_tokens

    def to_json(self) -> dict:
        return {"format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict, source: str | Path = CONFIG_FILE) -> MiniGPT4Config:
        """Parse `minigpt4.json`; a wrong version or field is a `MiniGPT4Error` naming the file."""
        try:
            if data.get("format_version") != FORMAT_VERSION:
                raise MiniGPT4Error(
                    f"{source}: format_version {data.get('format_version')!r}, this fgvu reads {FORMAT_VERSION}"
                )
            fields = {k: v for k, v in data.items() if k != "format_version"}
            fields["vision"] = VisionTowerSpec(**fields["vision"])
            fields["qformer"] = QFormerSpec(**fields["qformer"]) if fields.get("qformer") else None
            fields["image_mean"] = tuple(fields.get("image_mean", CLIP_MEAN))
            fields["image_std"] = tuple(fields.get("image_std", CLIP_STD))
            return cls(**fields)
        except (KeyError, TypeError) as e:
            raise MiniGPT4Error(f"{source}: malformed MiniGPT-4 config ({e})") from e

    def checkpoint_digest(self) -> str:
        """One sha256 over the converter's per-file digests: the cache fingerprint's checkpoint."""
        if not self.checksums:
            return "unknown"
        return hashlib.sha256(json.dumps(sorted(self.checksums.items())).encode()).hexdigest()


def read_config(directory: str | Path) -> MiniGPT4Config:
    """The `minigpt4.json` of a converted directory, checked."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise MiniGPT4Error(
            f"{directory}: not a converted MiniGPT-4 directory (no {CONFIG_FILE}); "
            "make one with `fgvu convert minigpt4`"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise MiniGPT4Error(f"{path}: invalid JSON ({e})") from e
    return MiniGPT4Config.from_json(data, source=path)
