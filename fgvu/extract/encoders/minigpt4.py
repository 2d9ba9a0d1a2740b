"""MiniGPT-4 as a stage-1 captioner: `captioner:minigpt4:<converted dir>`.

The MiniGPT-4 modules: `minigpt4_config` (the converted directory and its `minigpt4.json`),
`minigpt4_conversation` (the official prompt templates and decoding settings), `minigpt4_model`
(the model rebuilt from transformers components), `minigpt4_loading` (`load_minigpt4`),
`minigpt4_convert` (the official files -> a converted directory) and this wrapper, which puts the
model behind the `Captioner` interface and records its cache fingerprint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from fgvu.extract.encoders.base import CAPTION_BATCH, Captioner, check_frames, make_fingerprint
from fgvu.extract.encoders.minigpt4_config import MiniGPT4Error
from fgvu.extract.encoders.minigpt4_conversation import TEMPLATES, GenerationSettings
from fgvu.extract.encoders.minigpt4_loading import load_minigpt4


class MiniGPT4Captioner(Captioner):
    """`captioner:minigpt4:<converted dir>`: captions in batches of `batch_size`."""

    def __init__(
        self,
        directory: str | Path,
        device: str = "auto",
        max_new_tokens: int = 30,
        num_beams: int = 1,
        temperature: float | None = None,
        batch_size: int = CAPTION_BATCH,
        load_in_8bit: bool = False,
    ) -> None:
        if batch_size < 1:
            raise MiniGPT4Error(f"batch_size must be positive, got {batch_size}")
        self.settings = GenerationSettings(max_new_tokens=max_new_tokens, num_beams=num_beams, temperature=temperature)
        self.batch_size = batch_size
        self.model = load_minigpt4(directory, device=device, load_in_8bit=load_in_8bit)
        config = self.model.config
        self.fingerprint = make_fingerprint(
            name="captioner:minigpt4",
            variant=config.variant,
            dim=0,  # captions are text; the text encoder's fingerprint carries the dimension
            preprocessing={
                "image": {
                    "size": config.vision.image_size,
                    "interpolation": "bicubic",
                    "mean": list(config.image_mean),
                    "std": list(config.image_std),
                },
                "prompt_format": TEMPLATES[config.variant].render("{prompt}"),
                "generation": dataclasses.asdict(self.settings),
                "precision": "int8" if load_in_8bit else str(self.model.dtype).removeprefix("torch."),
            },
            checkpoint=config.checkpoint_digest(),
        )

    def caption(self, images: np.ndarray, prompt: str) -> list[str]:
        """(B,H,W,3) uint8 or float [0,1] + the dataset's question -> B captions."""
        check_frames(images, 4, "MiniGPT-4 images")
        captions: list[str] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            captions += self.model.caption(chunk, prompt, **dataclasses.asdict(self.settings))
        return captions
