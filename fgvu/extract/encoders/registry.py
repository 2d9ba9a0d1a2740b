"""Encoders by name, and the encoder sets.

Names:
- video: `videoprism-base`, `videoprism-large` (official weights: `videoprism-base:/path/file.npz`
  or `videoprism-base=/path/file.npz`, else the Hugging Face cache or hub), `videoprism-tiny`;
- image/text: `clip:<open_clip model>[:<pretrained tag or local file>]` (`clip:ViT-L-14` means
  `clip:ViT-L-14:openai`), `clip-tiny`;
- captioner: `captioner:<local transformers model dir>`, `captioner:minigpt4:<converted dir>`,
  `captioner-tiny`;
- audio: `audio:wavlm-base-plus` (the default), `audio:wav2vec2-base`, `audio:hubert-base` (hub
  checkpoints; `audio:wavlm-base-plus:/path/to/dir` for a local copy), `audio:<local model dir>`,
  `audio-tiny`; `none` for no audio.

Sets: `paper` (the paper's three encoders, no audio), `paper+audio` (the same plus WavLM-base+),
`tiny` (every role, audio included, with small random weights).

Heavy modules (JAX, open_clip, transformers) are imported only when an encoder is built.
"""

from __future__ import annotations

import re

from fgvu.extract.encoders.base import (
    CAPTION_BATCH, AudioEncoder, Captioner, EncoderError, ImageTextEncoder, VideoEncoder,
)

DEFAULT_AUDIO_ENCODER = "audio:wavlm-base-plus"
NO_AUDIO = "none"
_PAPER = {"video": "videoprism-base", "image": "clip:ViT-L-14:openai",
          "captioner": "captioner:minigpt4:models/minigpt4"}
ENCODER_SETS: dict[str, dict[str, str]] = {
    "tiny": {"video": "videoprism-tiny", "image": "clip-tiny", "captioner": "captioner-tiny", "audio": "audio-tiny"},
    "paper": dict(_PAPER),
    "paper+audio": {**_PAPER, "audio": DEFAULT_AUDIO_ENCODER},
}
# Torch math threads each set runs with when --threads is not given; a set not listed keeps
# torch's default (every core), which large encoders on a CPU need. The tiny encoders' small
# matrices run faster on one thread than on two (1.2x) with a third less CPU time (the rest is
# OpenMP threads spinning): measured with benchmarks/bench_extract.py --threads 1,2.
THREADS: dict[str, int] = {"tiny": 1}

VIDEO_ENCODERS = {
    "videoprism-base": "videoprism-base[:/path/to/flax_base_f16r288_repeated.npz]",
    "videoprism-large": "videoprism-large[:/path/to/flax_large_f8r288_repeated.npz]",
    "videoprism-tiny": "videoprism-tiny",
}
IMAGE_TEXT_ENCODERS = (
    "clip:<open_clip model>[:<pretrained tag or local file>] (default clip:ViT-L-14:openai)",
    "clip-tiny",
)
CAPTIONERS = ("captioner:<local transformers model dir>", "captioner:minigpt4:<converted dir>", "captioner-tiny")
AUDIO_ENCODERS = ("audio:wavlm-base-plus[:<local dir>]", "audio:wav2vec2-base[:<local dir>]",
                  "audio:hubert-base[:<local dir>]", "audio:<local transformers model dir>", "audio-tiny", NO_AUDIO)


def _unknown(kind: str, name: str, known) -> EncoderError:
    return EncoderError(f"unknown {kind} {name!r}; known: {', '.join(known)}")


def build_video_encoder(name: str, device: str = "auto", *, dtype: str = "auto", batch_size: int = 8) -> VideoEncoder:
    """A video encoder by name (see the module docstring); `dtype` "auto" is fp32 on CPU, bf16 on GPU."""
    match = re.fullmatch(r"([\w.-]+?)(?:[:=](.*))?", name, flags=re.DOTALL)
    variant, path = (match.group(1), match.group(2) or "") if match else (name, "")
    if variant not in VIDEO_ENCODERS:
        raise _unknown("video encoder", name, VIDEO_ENCODERS.values())
    from fgvu.extract.encoders.videoprism import VideoPrismEncoder
    from fgvu.extract.encoders.videoprism_checkpoint import find_checkpoint

    if variant == "videoprism-tiny":
        if path:
            raise EncoderError(f"{name!r}: videoprism-tiny has random weights and takes no checkpoint file")
        return VideoPrismEncoder.random(variant, device=device, dtype=dtype, batch_size=batch_size)
    return VideoPrismEncoder.from_npz(
        path or find_checkpoint(variant), variant, device=device, dtype=dtype, batch_size=batch_size
    )


def build_image_text_encoder(
    name: str, device: str = "auto", *, dtype: str = "auto", normalize: bool = True, batch_size: int = 64,
    resize: str = "pad",
) -> ImageTextEncoder:
    """A CLIP-style image and text encoder by name (see the module docstring); `resize` is how images
    are fitted into its square input (pad | squash | center-crop)."""
    from_name = name == "clip-tiny" or name.startswith("clip:")
    if not from_name:
        raise _unknown("image/text encoder", name, IMAGE_TEXT_ENCODERS)
    from fgvu.extract.encoders.clip import TINY_MODEL_NAME, OpenClipEncoder

    options = dict(device=device, dtype=dtype, normalize=normalize, batch_size=batch_size, resize=resize)
    if name == "clip-tiny":
        return OpenClipEncoder(TINY_MODEL_NAME, None, variant="clip-tiny", **options)
    model_name, _, pretrained = name[len("clip:") :].partition(":")
    if not model_name:
        raise _unknown("image/text encoder", name, IMAGE_TEXT_ENCODERS)
    return OpenClipEncoder(model_name, pretrained or "openai", **options)


def build_captioner(
    name: str,
    device: str = "auto",
    max_new_tokens: int = 30,
    num_beams: int = 1,
    temperature: float | None = None,
    batch_size: int = CAPTION_BATCH,
) -> Captioner:
    """A captioner by name (see the module docstring)."""
    options = dict(
        device=device,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        temperature=temperature,
        batch_size=batch_size,
    )
    if name == "captioner-tiny":
        from fgvu.extract.encoders.hf_captioner import TINY_SEED, TransformersCaptioner, tiny_captioner_dir

        return TransformersCaptioner(
            tiny_captioner_dir(), variant="captioner-tiny", checkpoint=f"random-init:{TINY_SEED}", **options
        )
    if name.startswith("captioner:minigpt4:"):
        from fgvu.extract.encoders.minigpt4 import MiniGPT4Captioner

        return MiniGPT4Captioner(name[len("captioner:minigpt4:") :], **options)
    if name.startswith("captioner:") and len(name) > len("captioner:"):
        from fgvu.extract.encoders.hf_captioner import TransformersCaptioner

        return TransformersCaptioner(name[len("captioner:") :], **options)
    raise _unknown("captioner", name, CAPTIONERS)


def audio_encoder_name(encoder_set: str, override: str | None, needed: bool = False) -> str | None:
    """The audio encoder a run uses: `override` (`none`: no audio), else the set's; None means no audio.

    `needed` (adding audio to a cache) falls back on the default audio encoder for sets without one.
    """
    if override is not None:
        return None if override == NO_AUDIO else override
    name = ENCODER_SETS.get(encoder_set, {}).get("audio")
    return name or (DEFAULT_AUDIO_ENCODER if needed else None)


def build_audio_encoder(name: str, device: str = "auto", *, dtype: str = "auto", batch_size: int = 8) -> AudioEncoder:
    """An audio encoder by name (see the module docstring; `none` is the caller's to handle)."""
    from fgvu.extract.encoders.audio import HUB_MODELS, TINY_SEED, SpeechEncoder, hub_model_dir, tiny_audio_dir

    options = dict(device=device, dtype=dtype, batch_size=batch_size)
    if name == "audio-tiny":
        # shorter chunks: the attention's T x T relative-position terms, not the 32-wide layers, set its cost
        return SpeechEncoder(tiny_audio_dir(), variant="audio-tiny", checkpoint=f"random-init:{TINY_SEED}",
                             chunk_seconds=10.0, context_seconds=1.0, **options)
    if not name.startswith("audio:") or len(name) == len("audio:"):
        raise _unknown("audio encoder", name, AUDIO_ENCODERS)
    model, _, folder = name[len("audio:"):].partition(":")
    if model in HUB_MODELS:
        return SpeechEncoder(folder or hub_model_dir(model), variant=model, **options)
    from pathlib import Path

    path = name[len("audio:"):]
    if not Path(path).is_dir():
        raise EncoderError(f"audio encoder {name!r}: {path} is neither a known model "
                           f"({', '.join(HUB_MODELS)}) nor a local model directory")
    return SpeechEncoder(path, **options)
